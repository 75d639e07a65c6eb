#!/usr/bin/env bash
# COCO scale (issue 20): a synthetic COCO-sized dataset (Karpathy layout, 32x32 PNGs, 5 captions
# each; bench/scale/gen.py) at 10k / 30k / 120k images.
#  1. prep and collate (the quickstart's 64 px model) on each size: wall time, peak RSS and the
#     artifact's disk, per stage, and the cost per image;
#  2. `pipe status` and a no-op `pipe run` against `dvc status` and a no-op `dvc repro` on the
#     same tree (a DVC stage whose dependency is the same data folder), tools alternated,
#     $ROUNDS rounds, each measured call after one unmeasured call of the same command:
#     median and min, peak RSS, the ratios and the load average.
#
#   bash bench/scale/run.sh [SIZES="10000 30000 120000"]    # needs dvc (pip install dvc) and git
# The data is generated once into $WORK (default target/bench-scale) and reused.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
sizes="${1:-10000 30000 120000}"
rounds="${ROUNDS:-5}"
work="${WORK:-$root/target/bench-scale}"
for tool in dvc git python3 /usr/bin/time; do
  command -v "$tool" > /dev/null || { echo "$tool not found (dvc: pip install dvc)" >&2; exit 2; }
done
cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin pipe
pipe="${CARGO_TARGET_DIR:-$root/target}/release/pipe"
export PIPE_LOG=warn NO_COLOR=1

largest=0
for n in $sizes; do (( n > largest )) && largest=$n; done
big="$work/data-$largest"
if [[ ! -f "$big/dataset_coco.json" ]]; then
  echo "generating $largest images in $big ..."
  rm -rf "$big" && python3 "$root/bench/scale/gen.py" "$big" "$largest"
fi

# One project per size: the data (hard links into the largest tree), the quickstart's model,
# prep + collate for pipe, and a git + DVC repository whose one stage depends on the same data.
setup() {
  local n=$1 p="$work/project-$1"
  [[ -f "$p/.ready" ]] && return
  rm -rf "$p" && mkdir -p "$p"
  if (( n == largest )); then cp -al "$big" "$p/data"
  else python3 "$root/bench/scale/gen.py" "$p/data" "$n" --link-from="$big"; fi
  cp -r "$root/examples/quickstart/model" "$p/model"
  cat > "$p/pipeline.toml" <<'TOML'
[pipeline]
name = "scale"
[stages.prep]
dataset = "karpathy"
file = "data/dataset_coco.json"
[stages.collate]
deps = ["prep"]
model = "model"
TOML
  (cd "$p" && git init -q && dvc init -q \
    && dvc stage add -q -n count -d data -o count.txt 'find data -type f | wc -l > count.txt' \
    && git add -A . > /dev/null && git -c user.name=b -c user.email=b@b commit -qm bench)
  # Files modified long before they are first hashed: both tools trust their stat caches.
  find "$p/data" -type f -exec touch -d '1 hour ago' {} +
  touch "$p/.ready"
}

# "MILLISECONDS PEAK_KB" of a command run in the current directory.
measure() {
  local s e
  s=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$work/.time" "$@" > /dev/null 2> "$work/.err" \
    || { cat "$work/.err" >&2; exit 1; }
  e=$(date +%s%N)
  echo "$(( (e - s) / 1000000 )) $(cat "$work/.time")"
}

# Wait (up to 2 minutes) for the 1-minute load average to fall under 1 (this 2-core VM idles at ~0.8).
quiet() { for _ in $(seq 1 24); do awk '{ exit !($1 < 1.0) }' /proc/loadavg && return; sleep 5; done; }

report="$work/report.txt"
: > "$report"
for n in $sizes; do
  setup "$n"
  p="$work/project-$n"
  cd "$p"
  rm -rf cache results pipe.lock count.txt .dvc/tmp .dvc/cache
  quiet
  # 1. The data stages, cold, one at a time.
  read -r prep_ms prep_kb < <(measure "$pipe" run prep)
  read -r coll_ms coll_kb < <(measure "$pipe" run collate)
  bytes() { "$pipe" show "$1" --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["bytes"])'; }
  prep_disk=$(bytes prep)
  coll_disk=$(bytes collate)
  dvc repro -q > /dev/null
  "$pipe" status > /dev/null # the first look after a run records the stat cache
  dvc status > /dev/null
  # 2. Status and no-op runs, alternated.
  ps=() pr=() ds=() dr=() pkb=0 dkb=0
  quiet
  # Each measured call follows one unmeasured call of the same command: right after a DVC
  # call, pipe's first status took 1.6x its usual time here (and the reverse may hold), so
  # neither tool pays for the other's footprint.
  twice() { "$@" > /dev/null 2>&1; measure "$@"; }
  for _ in $(seq 1 "$rounds"); do
    read -r t kb < <(twice "$pipe" status); ps+=("$t"); (( kb > pkb )) && pkb=$kb
    read -r t kb < <(twice dvc status); ds+=("$t"); (( kb > dkb )) && dkb=$kb
    read -r t kb < <(twice "$pipe" run); pr+=("$t"); (( kb > pkb )) && pkb=$kb
    read -r t kb < <(twice dvc repro); dr+=("$t"); (( kb > dkb )) && dkb=$kb
  done
  python3 - "$n" "$prep_ms $prep_kb $prep_disk" "$coll_ms $coll_kb $coll_disk" \
    "${ps[*]}" "${pr[*]}" "${ds[*]}" "${dr[*]}" "$pkb" "$dkb" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY' | tee -a "$report"
import statistics as st, sys
n = int(sys.argv[1])
print(f"\n{n} images, {len(sys.argv[4].split())} alternated rounds, load average {sys.argv[10]}")
for name, arg in (("prep", sys.argv[2]), ("collate", sys.argv[3])):
    s, kb, disk = arg.split()
    s, kb, disk = float(s) / 1000, int(kb), int(disk)
    print(f"  {name:8} {s:7.2f} s ({s / n * 1e6:6.1f} us/image)  peak RSS {kb / 1024:7.1f} MiB  "
          f"disk {disk / 2**20:8.1f} MiB ({disk / n:7.0f} B/image)")
def ms(a): return [float(x) for x in a.split()]
ps, pr, ds, dr = (ms(sys.argv[i]) for i in (4, 5, 6, 7))
pkb, dkb = int(sys.argv[8]), int(sys.argv[9])
for what, p, d in (("status", ps, ds), ("no-op run / repro", pr, dr)):
    print(f"  {what:18} pipe median {st.median(p):6.0f} ms min {min(p):6.0f} ms "
          f"({st.median(p) / n * 1e3:5.2f} us/file) | dvc median {st.median(d):6.0f} ms "
          f"min {min(d):6.0f} ms | dvc/pipe median {st.median(d) / st.median(p):5.1f}x "
          f"min {min(d) / min(p):5.1f}x")
print(f"  peak RSS of those: pipe {pkb / 1024:.1f} MiB, dvc {dkb / 1024:.1f} MiB")
PY
done
echo "(also in $report)"
