#!/usr/bin/env bash
# Benchmark: pipe-metrics vs pycocoevalcap on a Flickr8k-test-sized caption set
# (1,000 predictions x 5 references). One command:
#
#     bench/metrics/run.sh            # needs python3 + pycocoevalcap (+ Java)
#     RUNS=5 bench/metrics/run.sh     # more repetitions of the Rust timing
#     METEOR=1 bench/metrics/run.sh   # also time the official METEOR jar
#
# Prints the times of both scorers, their ratio and the scores side by side.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs="${RUNS:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 "$here/gen_input.py" "$work" 1000 5
P="$work/predictions.jsonl"
R="$work/references.jsonl"

(cd "$root" && cargo build --release -q -p pipe-metrics --example score_bench)
target="${CARGO_TARGET_DIR:-$root/target}"
bin="$target/release/examples/score_bench"

# Wall time of a whole process (includes start-up and the lexer's compilation).
wall() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
best() { # best of $runs wall times of a command
  local b=999999 t
  for _ in $(seq "$runs"); do t=$(wall "$@"); b=$(echo "if ($t < $b) $t else $b" | bc -l); done
  printf '%.3f' "$b"
}

echo "== pipe-metrics (release build; best of $runs runs, whole process) =="
rust_multi=$(best "$bin" "$P" "$R" --meteor skip --no-single)
rust_all=$(best "$bin" "$P" "$R" --meteor approx)
echo "multi-ref BLEU+ROUGE-L+CIDEr:                         ${rust_multi} s"
echo "multi+single-ref BLEU+METEOR~approx+ROUGE-L+CIDEr:    ${rust_all} s   (target < 0.5 s)"
"$bin" "$P" "$R" --meteor approx --json > "$work/rust.json" 2>/dev/null

echo "== pycocoevalcap (same input, same machine) =="
py_multi_json=$(python3 "$here/pycoco_bench.py" "$P" "$R" 2>/dev/null)
py_all_json=$(python3 "$here/pycoco_bench.py" "$P" "$R" --single 2>/dev/null)
py_multi=$(python3 -c 'import json,sys; print("%.3f" % json.loads(sys.argv[1])["seconds"])' "$py_multi_json")
py_all=$(python3 -c 'import json,sys; print("%.3f" % json.loads(sys.argv[1])["seconds"])' "$py_all_json")
echo "multi-ref BLEU+ROUGE-L+CIDEr (incl. Java PTB tokenizer):  ${py_multi} s"
echo "multi+single-ref BLEU+ROUGE-L+CIDEr:                      ${py_all} s"

echo "== ratio (pycocoevalcap / pipe-metrics) =="
echo "multi-ref:           $(echo "$py_multi / $rust_multi" | bc -l | xargs printf '%.1f')x"
echo "multi+single-ref:    $(echo "$py_all / $rust_all" | bc -l | xargs printf '%.1f')x  (ours also computes METEOR~approx)"

echo "== scores (multi-ref; pipe-metrics vs pycocoevalcap) =="
python3 - "$work/rust.json" "$py_all_json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = json.loads(sys.argv[2])
for k in ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"]:
    print(f"{k:8} multi {r[k]:.6f} vs {p['multi_ref'][k]:.6f}   single {r['single_ref'][k]:.6f} vs {p['single_ref'][k]:.6f}")
print(f"METEOR~approx multi {r['METEOR~approx']:.4f}  single {r['single_ref']['METEOR~approx']:.4f}")
PY

if [[ "${METEOR:-0}" == "1" ]]; then
  echo "== official METEOR jar =="
  s=$(date +%s.%N); "$bin" "$P" "$R" --meteor official --json > "$work/rust_official.json" 2>/dev/null; e=$(date +%s.%N)
  echo "pipe-metrics with the jar (multi+single): $(echo "$e - $s" | bc -l | xargs printf '%.2f') s"
  py_m=$(python3 "$here/pycoco_bench.py" "$P" "$R" --single --meteor 2>/dev/null)
  python3 - "$work/rust_official.json" "$py_m" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = json.loads(sys.argv[2])
print(f"pycocoevalcap with METEOR (multi+single): {p['seconds']:.2f} s")
print(f"METEOR multi {r['METEOR']:.6f} vs {p['multi_ref']['METEOR']:.6f}; single {r['single_ref']['METEOR']:.6f} vs {p['single_ref']['METEOR']:.6f}")
PY
fi
