#!/usr/bin/env bash
# Data-parallel training: optimizer steps/s of the train stage's step with devices = 1 and 2
# (issue 14), alternating rounds, median and min of each, the ratio, and the load average.
# LoRA r 16 / alpha 32 on query/value, BATCH images a step with five captions each.
#
#   bench/train/peers.sh MODEL [BACKEND] [COUNTS]
#     MODEL      an HF BLIP directory (without model.safetensors: random weights for its
#                config.json), or base:DIR, BLIP-base's architecture (12+12 layers of 768,
#                384x384 images) with random weights and the tokenizer of the BLIP directory DIR
#     BACKEND    cpu (default), cuda, wgpu or auto
#     COUNTS     peer counts, default 1,2 (on a 4-GPU machine: 1,2,4)
#   env: ROUNDS (3), STEPS (3 timed per round), WARMUP (1), BATCH (8), IMAGES (64),
#        PROFILE (release; "dev" reuses the test build, whose dependencies are optimised too)
#
# On the CPU the peers share its cores, so expect no speed-up from 2 peers on 2 cores: the
# figure that matters is on a machine with several GPUs (bench/gpu/run.sh runs this there).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
arg="${1:?usage: bench/train/peers.sh MODEL_DIR|base:TOKENIZER_DIR [BACKEND] [COUNTS]}"
if [ "${arg#base:}" != "$arg" ]; then
  tiny="${arg#base:}"
  [ -f "$tiny/tokenizer.json" ] || { echo "no $tiny/tokenizer.json: base:DIR names a BLIP directory" >&2; exit 2; }
  model="$work/blip-base"
  mkdir -p "$model"
  cp "$tiny/tokenizer.json" "$tiny/tokenizer_config.json" "$model/"
  python3 - "$tiny" "$model" <<'PY'
import json, sys
tiny, out = sys.argv[1:]
c = json.load(open(f"{tiny}/config.json"))
base = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12}
c["text_config"].update(base, encoder_hidden_size=768)
c["vision_config"].update(base, image_size=384, patch_size=16)
json.dump(c, open(f"{out}/config.json", "w"), indent=1)
p = json.load(open(f"{tiny}/preprocessor_config.json"))
p["size"] = {"height": 384, "width": 384}
json.dump(p, open(f"{out}/preprocessor_config.json", "w"), indent=1)
PY
else
  model="$(cd "$arg" 2>/dev/null && pwd)" || { echo "no model directory $arg" >&2; exit 2; }
fi
backend="${2:-cpu}"
counts="${3:-1,2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
features=()
case "$backend" in cuda) features=(--features pipe-backend/cuda) ;; wgpu) features=(--features pipe-backend/wgpu) ;; esac

profile="${PROFILE:-release}"
(cd "$root" && cargo build --quiet --profile "$profile" --bin pipe "${features[@]}" &&
  cargo build --quiet --profile "$profile" -p pipe-train --example peers_bench "${features[@]}")
out_dir="$CARGO_TARGET_DIR/$([ "$profile" = dev ] && echo debug || echo "$profile")"
pipe="$out_dir/pipe"
bench="$out_dir/examples/peers_bench"

# The data: synthetic images collated for the model's tokenizer and image size, by pipe itself.
cat >"$work/pipeline.toml" <<TOML
[pipeline]
backend = "cpu"
[stages.prep]
dataset = "synthetic"
images = ${IMAGES:-64}
size = 64
split = { train = 0.8, val = 0.1, test = 0.1 }
[stages.collate]
deps = ["prep"]
model = "$model"
max_length = 24
TOML
(cd "$work" && "$pipe" run collate --quiet >/dev/null)
collate="$(cd "$work" && "$pipe" show collate --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])')"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); backend $backend"
echo "profile: $profile; model: $model; batch ${BATCH:-8} images x 5 captions; ${ROUNDS:-3} rounds of ${STEPS:-3} timed steps after ${WARMUP:-1}"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
out="$("$bench" "$model" "$collate" --backend "$backend" --devices "$counts" \
  --rounds "${ROUNDS:-3}" --steps "${STEPS:-3}" --warmup "${WARMUP:-1}" --batch "${BATCH:-8}")"
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
base = statistics.median(rows[0]["steps_per_s"])
print(f"{'devices':>7} {'median steps/s':>15} {'min':>8} {'vs ' + str(rows[0]['devices']) + ' device(s)':>16}  rounds")
for r in rows:
    s = r["steps_per_s"]
    print(f"{r['devices']:>7} {statistics.median(s):>15.3f} {min(s):>8.3f} "
          f"{statistics.median(s) / base:>15.2f}x  {', '.join(f'{x:.3f}' for x in s)}")
PY
