#!/usr/bin/env bash
# LoRA training-step throughput: the train stage's step (pipe-train, Burn flex, CPU) against a
# transformers + PEFT training step on the same machine, base-size architecture, batch of
# 4 images x 5 captions (20 rows, captions of 12-16 tokens), LoRA r 16 / alpha 32 on
# query/value, AdamW lr 1e-4. transformers follows the seed notebook's recipe (one pixel_values
# row per caption: the vision encoder runs 20 times a step); ours runs it once per image
# ("vision") or not at all, reading the encode stage's cached output ("encode cache").
# Targets: >= 1x transformers+PEFT in vision mode, >= 4x with the encode cache.
#
#   bench/train/run.sh MODEL_DIR [STEPS]    MODEL_DIR: a base-size checkpoint (random weights are
#   fine), e.g. made by the workplace's make_blip_fixture.py --size base --out DIR
#   STEPS timed steps per implementation (default 10), after WARMUP (default 2) untimed ones.
# Needs: pip install torch transformers peft safetensors (CPU is fine; peft is installed by
# reference_step.py when missing). The three runs go one after the other, never concurrently.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${1:?usage: bench/train/run.sh MODEL_DIR [STEPS] (a base-size BLIP checkpoint directory)}"
steps="${2:-10}"
warmup="${WARMUP:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"

if [ ! -f "$dir/model.safetensors" ] || [ ! -f "$dir/config.json" ]; then
  echo "no model.safetensors and config.json in $dir: name a BLIP checkpoint directory (HF layout)" >&2
  exit 2
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "model: $dir; $steps timed steps after $warmup warm-up steps each"
(cd "$root" && cargo build --quiet --release -p pipe-train --example train_step_bench)
bin="$CARGO_TARGET_DIR/release/examples/train_step_bench"

echo "running transformers + PEFT ..." >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
theirs="$(python3 "$here/reference_step.py" "$dir" --steps "$steps" --warmup "$warmup" 2>"$log" | tail -n 1)" \
  || { cat "$log" >&2; exit 1; }
echo "running pipe (vision) ..." >&2
vision="$("$bin" "$dir" --mode vision --steps "$steps" --warmup "$warmup")"
echo "running pipe (encode cache) ..." >&2
encode="$("$bin" "$dir" --mode encode --steps "$steps" --warmup "$warmup")"
echo "theirs: $theirs"
echo "vision: $vision"
echo "encode: $encode"

python3 - "$theirs" "$vision" "$encode" <<'PY'
import json, sys
t, v, e = (json.loads(a) for a in sys.argv[1:])
print(f"batch: {t['images']} images x {t['rows'] // t['images']} captions = {t['rows']} rows, "
      f"seq_len {t['seq_len']}; trainable params ours {v['trainable_params']:,} / theirs "
      f"{t['trainable_params']:,}; {t['versions']}, {t['threads']} threads")
rows = [(t, None), (v, 1.0), (e, 4.0)]
print(f"{'implementation':<22} {'s/step':>9} {'steps/s':>9} {'peak RSS MB':>12} {'ratio':>7}  target")
for r, target in rows:
    ratio = r["steps_per_s"] / t["steps_per_s"]
    if target is None:
        goal = "(baseline)"
    else:
        goal = f">= {target:.0f}x  {'met' if ratio >= target else 'NOT met'}"
    print(f"{r['impl']:<22} {r['s_per_step']:>9.3f} {r['steps_per_s']:>9.3f} "
          f"{r['peak_rss_mb']:>12.0f} {ratio:>6.2f}x  {goal}")
PY
