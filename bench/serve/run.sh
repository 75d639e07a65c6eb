#!/usr/bin/env bash
# Load benchmark of `pipe serve` (loopback only): N concurrent clients caption one image for a
# bounded time, with micro-batching and then one image per model call. Prints, for each: errors,
# p50/p99 latency, captions/s, model calls and mean batch size; then the throughput gain.
#
#   bench/serve/run.sh MODEL_DIR IMAGE     a BLIP checkpoint directory and one image
#   CLIENTS=8 DURATION=30 MAX_BATCH=8 WINDOW_MS=5 BEAMS=1 TOKENS=20 bench/serve/run.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
usage="usage: bench/serve/run.sh MODEL_DIR IMAGE"
model="${1:?$usage}"
image="${2:?$usage}"
clients="${CLIENTS:-8}" seconds="${DURATION:-30}"
max_batch="${MAX_BATCH:-8}" window="${WINDOW_MS:-5}" beams="${BEAMS:-1}" tokens="${TOKENS:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if [ ! -f "$model/model.safetensors" ] || [ ! -f "$image" ]; then
  echo "no checkpoint in $model or no image $image" >&2
  exit 2
fi
# The dev profile optimises every dependency (Burn, axum, tokio): see the root Cargo.toml.
(cd "$root" && cargo build --quiet -p pipe-serve --example bench_serve)
bin="$CARGO_TARGET_DIR/debug/examples/bench_serve"

run() {
  RUST_LOG=warn "$bin" "$model" "$image" --clients "$clients" --seconds "$seconds" \
    --max-batch "$1" --window-ms "$window" --beams "$beams" --tokens "$tokens"
}
echo "model: $model  image: $(basename "$image")  clients: $clients  ${seconds}s each  beams: $beams  tokens: $tokens"
batched="$(run "$max_batch")"
echo "micro-batched (max_batch=$max_batch): $batched"
single="$(run 1)"
echo "one at a time (max_batch=1):  $single"
python3 - "$batched" "$single" <<'PY'
import json, sys
b, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name, r in (("micro-batched", b), ("one at a time", s)):
    print(f"{name:>14}: {r['captions_per_s']:8.2f} captions/s  p50 {r['p50_ms']:8.1f} ms  "
          f"p99 {r['p99_ms']:8.1f} ms  errors {r['errors']}  mean batch {r['mean_batch']}")
gain = b["captions_per_s"] / s["captions_per_s"] if s["captions_per_s"] else float("nan")
print(f"throughput gain of micro-batching: {gain:.2f}x")
sys.exit(1 if b["errors"] or s["errors"] else 0)
PY
