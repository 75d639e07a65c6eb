"""A synthetic COCO-sized dataset in the Karpathy layout, standard library only.

    python3 gen.py OUT N [SIDE=32]

Writes OUT/train2014/*.png and OUT/val2014/*.png (flat folders, as COCO ships them; two thirds
in train2014) and OUT/dataset_coco.json with five captions per image and Karpathy's split sizes
scaled to N (5,000 val and 5,000 test of 123,287). Image i depends only on i, so a smaller N is
a prefix of a larger one: the 10k and 30k trees are hard links into the 120k one (`--link-from`).
"""

import json
import os
import struct
import sys
import zlib

COLOURS = [("red", (220, 40, 40)), ("green", (40, 180, 60)), ("blue", (40, 70, 220)),
           ("yellow", (230, 210, 40)), ("purple", (140, 50, 170)), ("orange", (240, 140, 30))]
SHAPES = ["square", "bar", "column", "dot"]
PLACES = ["on the left", "on the right", "at the top", "at the bottom", "in the middle"]


def png(side, rgb_rows):
    raw = b"".join(b"\x00" + row for row in rgb_rows)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))


def image(i, side):
    name, fg = COLOURS[i % len(COLOURS)]
    shape = SHAPES[(i // 6) % len(SHAPES)]
    place = PLACES[(i // 24) % len(PLACES)]
    bg = (255 - (i * 7) % 64,) * 3
    q = side // 4
    x0, y0 = {"on the left": (0, q), "on the right": (2 * q, q), "at the top": (q, 0),
              "at the bottom": (q, 2 * q), "in the middle": (q, q)}[place]
    w, h = {"square": (2 * q, 2 * q), "bar": (2 * q, q), "column": (q, 2 * q), "dot": (q, q)}[shape]
    bgpx, fgpx = bytes(bg), bytes(fg)
    rows = []
    for y in range(side):
        if y0 <= y < y0 + h:
            row = bgpx * x0 + fgpx * w + bgpx * (side - x0 - w)
        else:
            row = bgpx * side
        rows.append(row)
    # The image's number in its first pixels, so no two files are equal.
    rows[0] = i.to_bytes(6, "big") + rows[0][6:]
    captions = [
        f"a {name} {shape} {place}",
        f"a {shape} that is {name} {place} of the picture",
        f"{place} there is a {name} {shape}",
        f"a picture with a {name} {shape} {place}",
        f"the {shape} {place} is {name}",
    ]
    return png(side, rows), captions


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    link_from = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--link-from=")),
                     None)
    out, n = args[0], int(args[1])
    side = int(args[2]) if len(args) > 2 else 32
    held_out = max(1, round(n * 5000 / 123287))
    entries = []
    for folder in ("train2014", "val2014"):
        os.makedirs(os.path.join(out, folder), exist_ok=True)
    for i in range(n):
        folder = "train2014" if i % 3 else "val2014"
        filename = f"COCO_{folder}_{i:012d}.png"
        path = os.path.join(out, folder, filename)
        if link_from:
            os.link(os.path.join(link_from, folder, filename), path)
            _, captions = image(i, 4)
        else:
            data, captions = image(i, side)
            with open(path, "wb") as f:
                f.write(data)
        split = "val" if i < held_out else "test" if i < 2 * held_out else "train"
        entries.append({"filepath": folder, "filename": filename, "split": split, "cocoid": i,
                        "sentences": [{"raw": c} for c in captions]})
    with open(os.path.join(out, "dataset_coco.json"), "w") as f:
        json.dump({"dataset": "coco", "images": entries}, f)


if __name__ == "__main__":
    main()
