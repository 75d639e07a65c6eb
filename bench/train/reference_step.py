#!/usr/bin/env python3
"""transformers + PEFT side of bench/train/run.sh: LoRA training steps of
BlipForConditionalGeneration on the CPU, the seed notebook's recipe (one pixel_values row per
caption, so the vision encoder runs once per caption row).

    reference_step.py MODEL_DIR [--steps 10] [--warmup 2] [--images 4] [--captions 5]

The batch has the same shapes as stages/train/examples/train_step_bench.rs: IMAGES x CAPTIONS
rows, row r a caption of 12 + (3r mod 5) tokens ([DEC], random ids, [SEP]) padded to the
batch's longest (attention_mask 0, labels -100 on padding; label 0, the [DEC], is -100 too).
Prints one JSON line."""
import argparse, json, os, resource, subprocess, sys, time

try:
    import peft  # noqa: F401
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "peft"])
import torch
from peft import LoraConfig, get_peft_model
from transformers import BlipForConditionalGeneration

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--steps", type=int, default=10)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--images", type=int, default=4)
ap.add_argument("--captions", type=int, default=5)
ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
a.steps = max(a.steps, 1)
torch.set_num_threads(a.threads or os.cpu_count() or 1)
torch.manual_seed(a.seed)


def caption_len(r):
    """Tokens of row r including [DEC] and [SEP]: Flickr8k-like 12..16 (shared with the Rust side)."""
    return 12 + (3 * r) % 5


model = BlipForConditionalGeneration.from_pretrained(a.dir, dtype=torch.float32)
cfg = model.config.text_config
model = get_peft_model(
    model,
    LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["query", "value"]),
)
model.train()
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
total = sum(p.numel() for p in model.parameters())

size = model.config.vision_config.image_size
rows = a.images * a.captions
images = torch.randn(a.images, 3, size, size)
# The seed's recipe: every caption row carries its own copy of its image's pixels.
pixel_values = images.repeat_interleave(a.captions, dim=0)  # [R, 3, S, S], image-major
lens = [caption_len(r) for r in range(rows)]
L = max(lens)
input_ids = torch.full((rows, L), cfg.pad_token_id, dtype=torch.long)
attention_mask = torch.zeros((rows, L), dtype=torch.long)
labels = torch.full((rows, L), -100, dtype=torch.long)
low = min(1000, cfg.vocab_size // 2)
high = min(cfg.vocab_size - 2, 30000)
for r, n in enumerate(lens):
    ids = torch.randint(low, high, (n,))
    ids[0], ids[n - 1] = cfg.bos_token_id, cfg.sep_token_id
    input_ids[r, :n] = ids
    attention_mask[r, :n] = 1
    labels[r, 1:n] = ids[1:]

optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)


def step():
    out = model(pixel_values=pixel_values, input_ids=input_ids, attention_mask=attention_mask,
                labels=labels)
    loss = out.loss
    loss.backward()
    optim.step()
    optim.zero_grad(set_to_none=True)
    return loss.item()


for _ in range(a.warmup):
    step()
t = time.perf_counter()
for _ in range(a.steps):
    loss = step()
elapsed = time.perf_counter() - t
s_per_step = elapsed / max(a.steps, 1)
print(json.dumps({
    "impl": "transformers+peft",
    "steps_per_s": 1.0 / s_per_step,
    "s_per_step": s_per_step,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rows": rows,
    "images": a.images,
    "seq_len": L,
    "loss": loss,
    "trainable_params": trainable,
    "total_params": total,
    "threads": torch.get_num_threads(),
    "versions": f"transformers {__import__('transformers').__version__}, "
                f"peft {__import__('peft').__version__}, torch {torch.__version__}",
}))
