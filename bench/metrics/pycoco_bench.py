#!/usr/bin/env python3
"""Times pycocoevalcap on a JSONL caption set, as pipe-metrics scores it
(images in sorted id order, multi-reference; optionally single-reference and
the official METEOR jar).

    python3 pycoco_bench.py PREDS.jsonl REFS.jsonl [--single] [--meteor]
Prints one JSON object: scores and seconds.
"""
import json
import sys
import time


def load(preds_path, refs_path):
    preds, refs = {}, {}
    for line in open(preds_path, encoding="utf-8"):
        if line.strip():
            o = json.loads(line)
            preds[str(o["image"])] = o["caption"]
    for line in open(refs_path, encoding="utf-8"):
        if line.strip():
            o = json.loads(line)
            refs[str(o["image"])] = o["captions"]
    return preds, refs


def run(gts_raw, res_raw, meteor):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    out = {}
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in gts_raw.items()})
    res = tok.tokenize({k: [{"caption": c} for c in v] for k, v in res_raw.items()})
    b, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for i in range(4):
        out[f"BLEU-{i + 1}"] = b[i]
    out["ROUGE-L"], _ = Rouge().compute_score(gts, res)
    out["CIDEr"], _ = Cider().compute_score(gts, res)
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor
        out["METEOR"], _ = Meteor().compute_score(gts, res)
    return {k: float(v) for k, v in out.items()}


def main():
    preds, refs = load(sys.argv[1], sys.argv[2])
    single = "--single" in sys.argv
    meteor = "--meteor" in sys.argv
    ids = sorted(refs)
    t = time.perf_counter()
    result = {"multi_ref": run({i: refs[i] for i in ids}, {i: [preds[i]] for i in ids}, meteor)}
    if single:
        s_gts, s_res = {}, {}
        for i in ids:
            for k, r in enumerate(refs[i]):
                s_gts[f"{i}#{k}"] = [r]
                s_res[f"{i}#{k}"] = [preds[i]]
        result["single_ref"] = run(s_gts, s_res, meteor)
    result["seconds"] = time.perf_counter() - t
    print(json.dumps(result))


if __name__ == "__main__":
    main()
