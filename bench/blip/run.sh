#!/usr/bin/env bash
# BLIP captioning benchmark: pipe-blip (Burn, CPU) against transformers' generate on the same
# base-size weights and pixels, beam 3, exactly 20 new tokens, batch 8. Prints both results and
# the throughput ratio (ours / transformers; >= 1.0 is parity or better).
#
#   bench/blip/run.sh DIR     DIR: a base-size checkpoint (random weights are fine), e.g. made by
#   the workplace's make_blip_fixture.py --size base --out DIR (outside the repo)
# Needs: pip install torch transformers safetensors  (CPU is fine).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${1:?usage: bench/blip/run.sh DIR (a base-size BLIP checkpoint directory)}"
batch="${BATCH:-8}" beams="${BEAMS:-3}" tokens="${TOKENS:-20}" repeats="${REPEATS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if [ ! -f "$dir/model.safetensors" ]; then
  echo "no model.safetensors in $dir: name a BLIP checkpoint directory (HF layout)" >&2
  exit 2
fi
(cd "$root" && cargo build --quiet ${PROFILE:+--profile "$PROFILE"} -p pipe-blip --example bench_caption)
bin="$CARGO_TARGET_DIR/${PROFILE:-debug}/examples/bench_caption"
[ "${PROFILE:-}" = release ] && bin="$CARGO_TARGET_DIR/release/examples/bench_caption"

ours="$("$bin" "$dir" --batch "$batch" --beams "$beams" --tokens "$tokens" --repeats "$repeats")"
theirs="$(python3 "$here/hf_bench.py" "$dir" --batch "$batch" --beams "$beams" --tokens "$tokens" --repeats "$repeats")"
echo "ours:   $ours"
echo "theirs: $theirs"
python3 - "$ours" "$theirs" <<'PY'
import json, sys
o, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
same = o["first_tokens"] == t["first_tokens"]
print(f"captions/s: ours {o['captions_per_s']:.3f}  transformers {t['captions_per_s']:.3f}  "
      f"ratio {o['captions_per_s'] / t['captions_per_s']:.2f}")
print(f"peak RSS MB: ours {o['peak_rss_mb']:.0f}  transformers {t['peak_rss_mb']:.0f}")
print(f"first caption tokens identical: {same}")
PY
