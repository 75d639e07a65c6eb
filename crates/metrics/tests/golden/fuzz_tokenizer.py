#!/usr/bin/env python3
"""Differential test of the Rust PTB tokenizer against pycocoevalcap's Java one.

Generates random odd captions, tokenizes them with pycocoevalcap's
PTBTokenizer (Stanford CoreNLP 3.4.1 jar) and with
`cargo run --example ptb_tokenize`, and prints every disagreement.

    python3 crates/metrics/tests/golden/fuzz_tokenizer.py [N] [SEED] [pieces|chars]
"""
import os
import random
import subprocess
import sys

from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

PIECES = [
    "a", "dog", "A", "The", "man", "'s", "n't", "don't", "it's", "I'm", "we're", "they'll",
    "can't", "won't", "cannot", "gonna", "'twas", "y'all", "o'clock", "rock'n'roll", "'90s",
    "-", "--", "---", "—", "–", "_", "co-ed", "t-shirt", "well-known", "x-ray", "e-mail",
    "(", ")", "[", "]", "{", "}", "<", ">", "\"", "'", "`", "``", "''", "“", "”", "‘", "’",
    ".", "..", "...", "…", ",", ";", ":", "!", "?", "?!", "&", "&amp;", "@", "#", "$", "%",
    "*", "+", "=", "/", "\\", "|", "~", "^",
    "1", "2", "10", "3.5", "1,000", "1/2", "½", "2-3", "12:30", "4th", "1990s", "$5", "£3",
    "€", "¢", "°", "²", "×", "U.S.", "etc.", "Mr.", "Dr.", "St.", "a.m.", "p.m.", "e.g.",
    "i.e.", "Inc.", "vs.", "No.", "ca.", "fig.", "a.", "I.", "x.", "b.",
    "café", "naïve", "Ça", "über", "Straße", "ﬁ", "İ", "ΣΑΣ", "日本", "한국어", "привет",
    "עברית", "مرحبا", "😀", "🐶", "\u00a0", "\u2009", "\u200b", "\u00ad", "\t",
    "http://example.com/a_b", "www.x.org", "foo.com", "a@b.com", "@user", "#tag",
    "<b>", "</i>", ":)", ";-)", ":D", "^_^", "c++", "C#", "3D", "2x", "10km", "mp3",
    "Ltd.", "Co.", "Pty.", "Jan.", "Calif.", "ft.", "sq.", "so.", "A.B.C.", "U.K.",
]


def rand_caption(rng):
    n = rng.randint(0, 12)
    parts = []
    for _ in range(n):
        p = rng.choice(PIECES)
        if rng.random() < 0.2:
            p = p.upper() if rng.random() < 0.5 else p.capitalize()
        parts.append(p)
        parts.append(rng.choice([" ", " ", " ", "", "  "]))
    return "".join(parts)


def rand_chars(rng):
    """Character soup: ASCII punctuation, letters, Latin-1, random BMP, emoji."""
    out = []
    for _ in range(rng.randint(0, 30)):
        r = rng.random()
        if r < 0.45:
            out.append(rng.choice("abcdefghijklmnopqrstuvwxyzAEIOUSTNXY0123456789     .,;:'\"`-_()[]{}<>!?&#@$%*/\\+=^~|"))
        elif r < 0.6:
            out.append(chr(rng.randint(0xA0, 0x24F)))
        elif r < 0.9:
            c = rng.randint(0x250, 0xFFFD)
            while 0xD800 <= c <= 0xDFFF or c in (0x2028, 0x2029, 0x85):
                c = rng.randint(0x250, 0xFFFD)
            out.append(chr(c))
        elif r < 0.95:
            out.append(rng.choice(PIECES))
        else:
            out.append(chr(rng.randint(0x1F300, 0x1F6FF)))
    return "".join(out)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rng = random.Random(seed)
    mode = sys.argv[3] if len(sys.argv) > 3 else "pieces"
    gen = rand_chars if mode == "chars" else rand_caption
    caps = [gen(rng) for _ in range(n)]
    java = PTBTokenizer().tokenize({i: [{"caption": c}] for i, c in enumerate(caps)})
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(
        ["cargo", "run", "-q", "-p", "pipe-metrics", "--example", "ptb_tokenize"],
        input="\n".join(caps).encode(), capture_output=True, cwd=here, check=True,
    ).stdout.decode().split("\n")
    bad = 0
    for i, c in enumerate(caps):
        j = java[i][0]
        r = out[i] if i < len(out) else None
        if j != r:
            bad += 1
            if bad <= 40:
                print(f"IN   {c!r}\nJAVA {j!r}\nRUST {r!r}\n")
    print(f"{bad} / {n} differ")


if __name__ == "__main__":
    main()
