#!/usr/bin/env python3
"""Writes the golden files of the pipe-metrics tests, computed by pycocoevalcap.

    pip install pycocoevalcap   # needs Java for the tokenizer and METEOR
    python3 crates/metrics/tests/golden/make_golden.py

Deterministic: every caption set comes from a seeded generator. Outputs, in
this directory:

* ``tokenizer.json``: odd strings and their tokenization by pycocoevalcap's
  PTBTokenizer (one batch, in order, so the lexer's look-ahead into the next
  line is part of the expectation).
* ``set_<name>.json`` for the caption sets ``odd``, ``fuzz`` and
  ``realistic``: inputs, pycocoevalcap's tokenized captions, and its BLEU-1..4,
  METEOR (official jar), ROUGE-L and CIDEr, multi-reference (all references
  of an image) and single-reference (each reference as its own pair), with
  per-image CIDEr.

Images are processed in sorted id order and single-reference pairs in
(image, reference index) order, which is how pipe-metrics orders them.
The realistic caption generator is also used by bench/metrics.
"""
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------------------
# Realistic captions: a latent scene per image, realised several ways.
# ---------------------------------------------------------------------------
SUBJECTS = [
    (["a dog", "a black dog", "a brown dog", "a white dog", "a small dog", "a puppy"], "dog"),
    (["two dogs", "two brown dogs", "a pair of dogs", "two puppies"], "dogs"),
    (["a man", "a young man", "an older man", "a guy", "a person"], "man"),
    (["a woman", "a young woman", "a lady", "a girl", "a person"], "woman"),
    (["a boy", "a little boy", "a young boy", "a child", "a kid"], "boy"),
    (["a girl", "a little girl", "a young girl", "a child", "a kid"], "girl"),
    (["two children", "two kids", "a couple of children", "two young children"], "children"),
    (["a group of people", "several people", "a crowd", "many people"], "people"),
    (["a biker", "a cyclist", "a man on a bike", "a bicyclist"], "biker"),
    (["a skier", "a snowboarder", "a person on skis"], "skier"),
]
ACTIONS = {
    "dog": [["runs through", "is running through", "running through", "races across"],
            ["plays in", "is playing in", "playing in"],
            ["jumps over", "is jumping over", "leaps over"],
            ["carries a stick through", "is carrying a stick across", "with a stick in its mouth runs through"]],
    "dogs": [["run through", "are running through", "running through"],
             ["play in", "are playing in", "playing together in"],
             ["chase each other across", "are chasing each other in"]],
    "man": [["climbs", "is climbing", "climbing"], ["walks along", "is walking down", "walking on"],
            ["stands on", "is standing on", "standing in"], ["sits on", "is sitting on", "sitting by"]],
    "woman": [["walks along", "is walking down", "walking on"], ["sits on", "is sitting on", "sitting in"],
              ["stands in", "is standing in", "standing on"]],
    "boy": [["jumps into", "is jumping into", "jumping in"], ["plays in", "is playing in", "playing on"],
            ["runs on", "is running on", "running across"]],
    "girl": [["jumps into", "is jumping into", "jumping in"], ["plays in", "is playing in", "playing on"],
             ["swings on", "is swinging on", "swinging at"]],
    "children": [["play in", "are playing in", "playing on"], ["run across", "are running across"],
                 ["splash in", "are splashing in", "splashing around in"]],
    "people": [["walk down", "are walking down", "walking along"], ["stand in", "are standing in", "gathered in"],
               ["sit on", "are sitting on", "sitting at"]],
    "biker": [["rides down", "is riding down", "riding on"], ["jumps over", "is jumping over", "in the air over"]],
    "skier": [["skis down", "is skiing down", "going down"], ["jumps over", "is jumping off", "in the air above"]],
}
PLACES = [
    ["the grass", "a grassy field", "the green grass", "a field", "the lawn"],
    ["the snow", "a snowy hill", "the snow covered field", "deep snow"],
    ["the water", "a lake", "the river", "the ocean", "a pool"],
    ["the beach", "the sand", "a sandy beach", "the shore"],
    ["a street", "the road", "a busy street", "the sidewalk", "a city street"],
    ["a rock", "a large rock", "a cliff", "a rock wall", "the rocks"],
    ["a park", "the playground", "a park bench", "the park"],
    ["a dirt path", "a trail", "a dirt road", "the woods", "a forest"],
]
TAILS = ["", "", "", " .", " .", " on a sunny day", " in the background", " while another watches",
         " near a fence", " at night", " with trees behind", ","]
MODEL_TAILS = ["", "", " .", " ."]


def scene(rng):
    subj_forms, kind = rng.choice(SUBJECTS)
    action = rng.choice(ACTIONS[kind])
    place = rng.choice(PLACES)
    return subj_forms, action, place


ADJ = ["", "", "", "", "happy ", "large ", "little ", "young ", "wet "]
CLAUSES = ["", "", "", "", " while another watches", " with his arms raised", " in the sunshine",
           " as people watch", " near some trees", " next to a fence", " in front of a building"]
GENERIC = ["is outside", "is in the picture", "is standing", "is playing"]


def realise(rng, sc, model=False):
    subj_forms, action, place = sc
    if model:
        subj = rng.choice(subj_forms[:3])
        verb = rng.choice(action[:2])
        where = rng.choice(place[:2])
        r = rng.random()
        if r < 0.25:
            # Typical model failures: wrong place, wrong subject, generic.
            where = rng.choice(rng.choice(PLACES)[:2])
        elif r < 0.35:
            subj = rng.choice(rng.choice(SUBJECTS)[0][:2])
        elif r < 0.42:
            return f"{subj} {rng.choice(GENERIC)}"
        return f"{subj} {verb} {where}"
    subj = rng.choice(subj_forms)
    if subj.startswith("a ") and rng.random() < 0.3:
        subj = "a " + rng.choice(ADJ) + subj[2:]
    cap = f"{subj} {rng.choice(action)} {rng.choice(place)}{rng.choice(CLAUSES)}{rng.choice(TAILS)}"
    if rng.random() < 0.1:
        # Humans sometimes describe something else entirely.
        other_subj, other_kind = rng.choice(SUBJECTS)
        cap = f"{rng.choice(other_subj)} {rng.choice(rng.choice(ACTIONS[other_kind]))} {rng.choice(rng.choice(PLACES))}"
    if rng.random() < 0.6:
        cap = cap[0].upper() + cap[1:]
    return cap


def realistic_set(n_images, n_refs, seed):
    rng = random.Random(seed)
    preds, refs = {}, {}
    for i in range(n_images):
        sc = scene(rng)
        img = f"{i:06d}.jpg"
        refs[img] = [realise(rng, sc) for _ in range(n_refs)]
        preds[img] = realise(rng, sc, model=True)
    return preds, refs


# ---------------------------------------------------------------------------
# Odd text.
# ---------------------------------------------------------------------------
ODD = [
    ("apostrophes", "A dog's ball isn't red; it's the boy's.", ["The dog's ball is red .", "it is n't red", "A boy's dog can't play, won't play."]),
    ("contractions", "They're gonna play 'cause it's fun, y'all.", ["they are going to play", "We'll see: I'd go, you'd go, she'd've gone.", "'Twas the night"]),
    ("hyphens", "A well-known x-ray of a t-shirt -- and a co-ed.", ["a t-shirt with an x-ray", "well - known co-ed ---- group", "A state-of-the-art 3-D TV"]),
    ("digits", "3 dogs, 2.5 cats and 1,000 birds at 12:30 on 1/2/2015.", ["three dogs and 1/2 cat", "10km run by 2 men in the 1990s", "No. 5 at 4th st. $5 or 3.5%"]),
    ("quotes", "A sign says \"STOP\" and 'go' near ``here''.", ["a \"stop\" sign", "“Curly” quotes and ‘single’ ones", "a sign 'says' go"]),
    ("brackets", "A man (in red) holds [a sign] {with text} <b>bold</b>.", ["a man -LRB- in red -RRB-", "a man in red (smiling)", "[a] {b} (c)"]),
    ("non_ascii", "Un café près de l'école, naïve Ça über Straße.", ["a café", "日本 の 犬 😀 🐶", "ΣΑΣ éèê ñ ø å"]),
    ("empty_pred", "", ["a dog runs", "", "a cat sleeps on a mat"]),
    ("empty_refs", "a dog", ["", ""]),
    ("punct_only", "... !!! ??? , ; :", ["- -- ---", "a dog ."]),
    ("one_ref", "a man rides a horse on the beach", ["a man riding a horse along the beach"]),
    ("seven_refs", "a kid in a pool", ["a child swims", "a kid swims in a pool", "kids in the water", "a boy in a swimming pool",
                                         "a young boy splashes in a pool .", "A child is in the pool.", "swimming"]),
    ("abbrev", "Mr. Smith and Dr. Jones at St. Mary's etc. vs. U.S. Inc. a.m.", ["mr smith and dr jones", "U.S.A. e.g. i.e. p.m.", "Calif. Ltd. Co. Jan. ca. 5"]),
    ("acronym_end", "a letter a.", ["A dog is here.", "the letter I.", "An x."]),
    ("urls", "see http://example.com/a_b or www.x.org and foo@bar.com #tag @user", ["a web page", "http://x.y/z.", "email a@b.co"]),
    ("symbols", "a + b = c & d * e / f % g ^ h ~ i | j \\ k", ["a & b", "c++ and C# code", "x = 5 * 3"]),
    ("whitespace", "  a\tdog\u00a0runs \u2009 fast\u200b  ", ["a dog runs fast", "a\u3000dog"]),
    ("newlines", "a dog\nruns\nfast", ["a dog runs\nfast", "a\n\ndog"]),
    ("dashes", "a dog—runs–fast – very ‐ fast", ["a dog - runs", "a dog -- runs --- fast"]),
    ("fractions", "½ of a pizza and ¼ cake at 3 ¾ o'clock", ["half a pizza", "1 1/2 pizzas"]),
    ("currency", "£5 and €3 and ¢50 and ¥100 and $2", ["5 pounds", "US$ 5"]),
    ("repeated", "a a a a a a a a", ["a a a a", "a a a a a a a a a a a a"]),
    ("case", "A DOG RUNS IN THE GRASS", ["a dog runs in the grass", "A Dog Runs In The Grass"]),
    ("smileys", "a happy dog :) ;-) :D ^_^", ["a dog :(", "happy"]),
]


def long_caption(rng, n):
    words = "a the dog man runs through grass red big small in on with near beach water ball".split()
    return " ".join(rng.choice(words) for _ in range(n))


def odd_set():
    rng = random.Random(7)
    preds, refs = {}, {}
    for name, pred, rs in ODD:
        preds[f"odd_{name}"] = pred
        refs[f"odd_{name}"] = rs
    preds["odd_long"] = long_caption(rng, 300) + "."
    refs["odd_long"] = [long_caption(rng, 250), long_caption(rng, 40), long_caption(rng, 5)]
    preds["odd_long_ref"] = "a dog runs"
    refs["odd_long_ref"] = [long_caption(rng, 120), "a dog runs on the beach"]
    return preds, refs


def fuzz_set(n, seed):
    sys.path.insert(0, HERE)
    from fuzz_tokenizer import rand_caption, rand_chars
    rng = random.Random(seed)
    preds, refs = {}, {}
    for i in range(n):
        gen = rand_chars if i % 3 == 0 else rand_caption
        preds[f"f{i:04d}"] = gen(rng)
        refs[f"f{i:04d}"] = [gen(rng) for _ in range(rng.randint(1, 6))]
    return preds, refs


# ---------------------------------------------------------------------------
# pycocoevalcap runs.
# ---------------------------------------------------------------------------
def coco_scores(gts_raw, res_raw):
    """gts_raw/res_raw: ordered dict id -> list of captions (res: one)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in gts_raw.items()})
    res = tok.tokenize({k: [{"caption": c} for c in v] for k, v in res_raw.items()})
    out = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for i in range(4):
        out[f"BLEU-{i + 1}"] = bleu[i]
    out["METEOR"], _ = Meteor().compute_score(gts, res)
    out["ROUGE-L"], _ = Rouge().compute_score(gts, res)
    cider, per = Cider().compute_score(gts, res)
    out["CIDEr"] = cider
    return out, gts, res, dict(zip(gts.keys(), (float(x) for x in per)))


def golden_for(name, preds, refs):
    ids = sorted(refs)
    gts = {i: refs[i] for i in ids}
    res = {i: [preds[i]] for i in ids}
    multi, gts_tok, res_tok, per_cider = coco_scores(gts, res)
    s_gts, s_res = {}, {}
    for i in ids:
        for k, r in enumerate(refs[i]):
            s_gts[f"{i}#{k}"] = [r]
            s_res[f"{i}#{k}"] = [preds[i]]
    single, _, _, _ = coco_scores(s_gts, s_res)
    multi["per_image_cider"] = per_cider
    doc = {
        "name": name,
        "generator": "make_golden.py (pycocoevalcap 1.2, Stanford CoreNLP 3.4.1, METEOR 1.5)",
        "predictions": {i: preds[i] for i in ids},
        "references": {i: refs[i] for i in ids},
        "tokenized": {
            "predictions": {i: res_tok[i][0] for i in ids},
            "references": {i: gts_tok[i] for i in ids},
        },
        "multi_ref": multi,
        "single_ref": single,
    }
    path = os.path.join(HERE, f"set_{name}.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0, sort_keys=True)
    print(f"{path}: {len(ids)} images; multi {fmt(multi)}; single {fmt(single)}")


def fmt(s):
    return ", ".join(f"{k} {v:.4f}" for k, v in s.items() if isinstance(v, float))


def tokenizer_golden():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    sys.path.insert(0, HERE)
    from fuzz_tokenizer import rand_caption, rand_chars
    rng = random.Random(11)
    lines = [p for _, p, rs in ODD] + [r for _, _, rs in ODD for r in rs]
    lines += [rand_caption(rng) for _ in range(500)] + [rand_chars(rng) for _ in range(500)]
    # Newline characters other than \n make Java misalign lines (we document
    # that we treat them as spaces), so keep them out of the expectation.
    bad = "\r\u2028\u2029\x0b\x0c"
    lines = ["".join(" " if c in bad else c for c in l) for l in lines]
    out = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(lines)})
    doc = {"input": lines, "tokenized": [out[i][0] for i in range(len(lines))]}
    path = os.path.join(HERE, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=0)
    print(f"{path}: {len(lines)} lines")


def main():
    tokenizer_golden()
    golden_for("odd", *odd_set())
    golden_for("fuzz", *fuzz_set(60, 5))
    golden_for("realistic", *realistic_set(300, 5, 2024))


if __name__ == "__main__":
    main()
