#!/usr/bin/env python3
"""Writes a Flickr8k-test-sized caption set (1,000 images x 5 references,
realistic English captions from the golden-set generator) as JSONL.

    python3 gen_input.py OUT_DIR [N_IMAGES] [N_REFS]
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "stages", "metrics", "tests", "golden"))
from make_golden import realistic_set  # noqa: E402


def main():
    out = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    k = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    preds, refs = realistic_set(n, k, 8000)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "predictions.jsonl"), "w", encoding="utf-8") as f:
        for img, cap in preds.items():
            f.write(json.dumps({"image": img, "caption": cap}) + "\n")
    with open(os.path.join(out, "references.jsonl"), "w", encoding="utf-8") as f:
        for img, caps in refs.items():
            f.write(json.dumps({"image": img, "captions": caps}) + "\n")


if __name__ == "__main__":
    main()
