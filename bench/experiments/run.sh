#!/usr/bin/env bash
# `pipe exp show` against `dvc exp show` on the same number of tries (DVC: experiments), each a
# one-stage pipeline whose command writes a metric from its `lr` parameter. Both tables are
# asked for as JSON (every parameter and metric). Runs alternate, 7 rounds; prints median and
# min of each and the ratio, with the load average.
#
#   bash bench/experiments/run.sh [TRIES]          # needs `dvc` on PATH (pip install dvc) and git
#   PIPE_BIN=target/debug/pipe bash bench/experiments/run.sh   # skip the release build
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
n="${1:-300}"
rounds=7
command -v dvc > /dev/null || { echo "dvc not found: pip install dvc" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/pipe-exp-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if [[ -z "${PIPE_BIN:-}" ]]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin pipe
  PIPE_BIN="$root/target/release/pipe"
fi
pipe="$(cd "$(dirname "$PIPE_BIN")" && pwd)/$(basename "$PIPE_BIN")"
lr() { printf '0.%04d' "$1"; }

echo "pipe: $n named tries ..."
mkdir -p "$work/pipe" && cd "$work/pipe"
cat > pipeline.toml <<'TOML'
[stages.train]
kind = "command"
params = { lr = 0.5 }
cmd = '''printf '{"loss": %s}' $PIPE_PARAM_LR > $PIPE_OUT/metrics.json'''
TOML
"$pipe" run -q
for i in $(seq 1 "$n"); do "$pipe" run -q --set "train.params.lr=$(lr "$i")" --name "t$i"; done
rows=$("$pipe" exp show --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tries"]))')

echo "dvc: $n experiments (dvc exp run, one at a time) ..."
mkdir -p "$work/dvc" && cd "$work/dvc"
git init -q && git config user.email bench@example.com && git config user.name bench
dvc init -q
echo "lr: 0.5" > params.yaml
cat > train.sh <<'SH'
printf '{"loss": %s}' "$(sed -n 's/^lr: //p' params.yaml)" > metrics.json
SH
cat > dvc.yaml <<'YAML'
stages:
  train:
    cmd: sh train.sh
    deps: [train.sh]
    params: [lr]
    metrics:
      - metrics.json:
          cache: false
YAML
dvc repro -q && git add -A && git commit -qm base
for i in $(seq 1 "$n"); do dvc exp run -q -S "lr=$(lr "$i")" -n "t$i" > /dev/null; done
exps=$(dvc exp show --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(len(r.get("experiments") or []) for r in d))')
echo "rows: pipe $rows (workspace + tries), dvc $exps experiments"

# Making the tries loaded the machine: wait (up to 2 min) for the 1-minute load to settle.
for _ in $(seq 1 24); do
  awk '{ exit !($1 < 0.3) }' /proc/loadavg && break
  sleep 5
done
ms() { local s e; s=$(date +%s%N); "$@" > /dev/null; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
p=() d=()
for _ in $(seq 1 "$rounds"); do
  p+=("$(cd "$work/pipe" && ms "$pipe" exp show --json)")
  d+=("$(cd "$work/dvc" && ms dvc exp show --json)")
done
python3 - "${p[*]}" "${d[*]}" "$(cut -d' ' -f1-3 /proc/loadavg)" "$n" <<'PY'
import statistics, sys
p = [int(x) for x in sys.argv[1].split()]
d = [int(x) for x in sys.argv[2].split()]
print(f"exp show --json, {sys.argv[4]} tries, {len(p)} alternated rounds, load average {sys.argv[3]}")
print(f"  pipe: median {statistics.median(p):7.0f} ms  min {min(p):7d} ms")
print(f"  dvc:  median {statistics.median(d):7.0f} ms  min {min(d):7d} ms")
print(f"  dvc / pipe: median {statistics.median(d) / statistics.median(p):.1f}x  min {min(d) / min(p):.1f}x")
PY
