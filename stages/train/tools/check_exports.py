#!/usr/bin/env python3
"""Load a train artifact's exports with the Python stack and check they agree.

    python3 stages/train/tools/check_exports.py ARTIFACT BASE_MODEL [IMAGE]

ARTIFACT is a LoRA train stage's artifact directory (`pipe show train --json` → path) and
BASE_MODEL the checkpoint it started from. Checks that
  1. transformers' BlipForConditionalGeneration loads ARTIFACT/model (the merged checkpoint);
  2. PEFT loads ARTIFACT/adapter onto BASE_MODEL, and merge_and_unload() gives the same weights
     as the merged checkpoint (max |Δ| printed; fails above 1e-5);
  3. both caption IMAGE (if given) identically with greedy decoding.
Needs: pip install torch transformers peft safetensors pillow.
"""

import sys
from pathlib import Path

import torch
from peft import PeftModel
from transformers import BlipForConditionalGeneration, BlipProcessor


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    art, base_dir = Path(sys.argv[1]), Path(sys.argv[2])
    merged = BlipForConditionalGeneration.from_pretrained(art / "model").eval()
    base = BlipForConditionalGeneration.from_pretrained(base_dir).eval()
    peft = PeftModel.from_pretrained(base, art / "adapter").merge_and_unload().eval()
    ours, theirs = merged.state_dict(), peft.state_dict()
    assert ours.keys() == theirs.keys(), set(ours) ^ set(theirs)
    worst = max(((ours[k] - theirs[k]).abs().max().item(), k) for k in ours)
    print(f"merged checkpoint vs PEFT merge_and_unload: max |Δ| {worst[0]:.2e} ({worst[1]})")
    # PEFT merged into `base` in place: compare with a fresh copy.
    fresh = BlipForConditionalGeneration.from_pretrained(base_dir).state_dict()
    changed = sum(1 for k in ours if (ours[k] - fresh[k]).abs().max().item() > 0)
    print(f"tensors that differ from the base: {changed}")
    if len(sys.argv) > 3:
        from PIL import Image

        processor = BlipProcessor.from_pretrained(art / "model")
        pixels = processor(images=Image.open(sys.argv[3]).convert("RGB"), return_tensors="pt")
        with torch.no_grad():
            a = merged.generate(**pixels, max_new_tokens=20)
            b = peft.generate(**pixels, max_new_tokens=20)
        print("captions:", processor.batch_decode(a, skip_special_tokens=True),
              processor.batch_decode(b, skip_special_tokens=True))
        assert a.tolist() == b.tolist(), "captions differ"
    assert worst[0] < 1e-5, "the merged checkpoint is not base + adapter"
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
