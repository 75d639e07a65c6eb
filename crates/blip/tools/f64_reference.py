#!/usr/bin/env python3
"""transformers' BLIP on the blip-tiny fixture in float64: the exact-arithmetic reference.

The fixture's f32 reference (../shared/fixtures/blip-tiny/reference) cannot separate an
implementation error from f32 rounding: its random weights (initializer_range 0.5) make the
decoder ill-conditioned, and transformers' own f32 logits are 2.1e-4 from its f64 logits. In
float64 rounding is ~1e-13, so ours and transformers' must agree to ~1e-9 if, and only if,
they compute the same function. crates/blip/tests/parity.rs runs our model on Burn's f64
backend against this file.

Writes crates/blip/tests/fixtures/f64_reference.safetensors (f64): image_embeds [4, 17, 32]
and the teacher-forced logits [4, 12, V] at every 31st vocabulary column (logits_cols,
with their indices in columns) to keep the file small.

    python3 crates/blip/tools/f64_reference.py [--fixture DIR] [--out FILE]
"""

import argparse
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import BlipForConditionalGeneration

ROOT = Path(__file__).resolve().parents[3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixture", type=Path, default=ROOT / "../shared/fixtures/blip-tiny")
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "crates/blip/tests/fixtures/f64_reference.safetensors",
    )
    args = ap.parse_args()

    ref = load_file(str(args.fixture / "reference/reference.safetensors"))
    model = BlipForConditionalGeneration.from_pretrained(args.fixture).double().eval()
    pixels = ref["pixel_values"].double()
    with torch.no_grad():
        embeds = model.vision_model(pixel_values=pixels)[0]
        out = model(
            pixel_values=pixels,
            input_ids=ref["input_ids"],
            attention_mask=ref["attention_mask"],
        )
    logits = out.logits
    columns = torch.arange(0, logits.shape[-1], 31)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "image_embeds": embeds.contiguous(),
            "logits_cols": logits[:, :, columns].contiguous(),
            "columns": columns.to(torch.int64),
        },
        str(args.out),
        metadata={"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    )
    f32 = ref["logits"].double()[:, :, columns]
    print(f"wrote {args.out}; transformers f32 vs f64 on these columns: "
          f"max |Δ| {(f32 - logits[:, :, columns]).abs().max().item():.3e}")


if __name__ == "__main__":
    main()
