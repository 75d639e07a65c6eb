#!/usr/bin/env python3
"""transformers' side of bench/blip/run.sh: BlipForConditionalGeneration.generate on the same
weights and pixel_values as crates/blip/examples/bench_caption.rs. Prints one JSON line."""
import argparse, json, resource, time

import torch
from safetensors.torch import load_file
from transformers import BlipForConditionalGeneration

ap = argparse.ArgumentParser()
ap.add_argument("dir")
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--beams", type=int, default=3)
ap.add_argument("--tokens", type=int, default=20)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
a = ap.parse_args()
if a.threads:
    torch.set_num_threads(a.threads)

t0 = time.perf_counter()
model = BlipForConditionalGeneration.from_pretrained(a.dir).eval()
load_s = time.perf_counter() - t0
pixels = load_file(f"{a.dir}/reference/reference.safetensors")["pixel_values"]
pixels = torch.cat([pixels[i % pixels.shape[0]:i % pixels.shape[0] + 1] for i in range(a.batch)])
kw = dict(num_beams=a.beams, max_new_tokens=a.tokens, min_new_tokens=a.tokens)
with torch.inference_mode():
    out = model.generate(pixel_values=pixels, **kw)  # warm-up
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        model.generate(pixel_values=pixels, **kw)
        times.append(time.perf_counter() - t)
times.sort()
median = times[len(times) // 2]
print(json.dumps({
    "impl": f"transformers {__import__('transformers').__version__} (torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads)",
    "batch": a.batch, "num_beams": a.beams, "new_tokens": a.tokens,
    "seconds_per_batch": median, "captions_per_s": a.batch / median,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "load_s": load_s,
    "first_tokens": out[0].tolist(),
}))
