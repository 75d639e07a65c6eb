#!/usr/bin/env python3
"""Reference decodes for crates/blip/tests/decode_options.rs: transformers' generate() on the tiny
fixture with `text_decoder.cls.predictions.bias[SEP] += SEP_BIAS`, so captions end at different
lengths and beam search's finishing, length penalty and early stopping are exercised.

    python3 bench/blip/make_decode_reference.py ../shared/fixtures/blip-tiny SEP_BIAS

prints one run as JSON; crates/blip/tests/data/decode_reference.json holds
{"runs": [run(SEP_BIAS=9), run(SEP_BIAS=11)]} (trailing fill after [SEP] trimmed).
"""
import json, sys
import torch
from safetensors.torch import load_file
from transformers import BlipForConditionalGeneration

SEP_BIAS = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
CASES = [
    dict(num_beams=1, max_new_tokens=12),
    dict(num_beams=1, max_new_tokens=12, repetition_penalty=1.5),
    dict(num_beams=1, max_new_tokens=12, no_repeat_ngram_size=2),
    dict(num_beams=1, max_new_tokens=12, min_new_tokens=6),
    dict(num_beams=3, max_new_tokens=12),
    dict(num_beams=3, max_new_tokens=12, length_penalty=0.0),
    dict(num_beams=3, max_new_tokens=12, length_penalty=2.0),
    dict(num_beams=3, max_new_tokens=12, early_stopping=True),
    dict(num_beams=3, max_new_tokens=12, early_stopping="never", length_penalty=1.5),
    dict(num_beams=4, max_new_tokens=10, min_new_tokens=4, no_repeat_ngram_size=2, repetition_penalty=1.3),
    dict(num_beams=2, max_new_tokens=8, min_new_tokens=8),
]

d = sys.argv[1]
model = BlipForConditionalGeneration.from_pretrained(d).eval()
sep = model.config.text_config.sep_token_id
with torch.no_grad():
    model.text_decoder.cls.predictions.bias[sep] += SEP_BIAS
pixels = load_file(f"{d}/reference/reference.safetensors")["pixel_values"]

def trim(seq):
    # generate() pads finished captions in a batch; a caption ends at its first [SEP].
    seq = seq.tolist()
    return seq[: seq.index(sep, 1) + 1] if sep in seq[1:] else seq

out = []
with torch.no_grad():
    for case in CASES:
        seqs = model.generate(pixel_values=pixels, **case)
        out.append(dict(options=case, tokens=[trim(s) for s in seqs]))
print(json.dumps(dict(sep_bias=SEP_BIAS, transformers=__import__("transformers").__version__, cases=out)))
