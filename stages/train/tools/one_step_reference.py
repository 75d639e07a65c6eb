#!/usr/bin/env python3
"""One LoRA training step of transformers' BlipForConditionalGeneration + PEFT on the blip-tiny
fixture: the reference that stages/train/tests/parity.rs checks the Rust train stage against.

Rerun (from the project root; needs torch, transformers, peft, safetensors, blake3):

    python3 stages/train/tools/one_step_reference.py \
        [--fixture ../shared/fixtures/blip-tiny] [--out stages/train/tests/fixtures]

It writes OUT/one_step.safetensors and OUT/one_step.json (rerun it whenever the fixture, the
batch or the recipe below changes; the JSON records the fixture's hashes so the Rust test
notices a changed fixture).

The recipe, in float32 on the CPU:
  * batch: 2 images (the first two pixel_values of the fixture's reference.safetensors, the
    probe images as the fixture's processor prepared them) x 3 captions each, of different
    lengths. Captions are framed as the collate stage frames them (crates/data/src/collate/
    tokenize.rs): [DEC] (text_config.bos_token_id, in place of the tokenizer's [CLS]) +
    WordPiece ids + [SEP], padded with [PAD] = 0 to the longest (attention_mask 0); labels are
    the ids with -100 on the [DEC] and on padding. As the seed notebook did, the model sees one
    pixel_values row per caption (the images repeated, image-major).
  * the loss is the model's own: BlipTextLMHeadModel shifts (logits[:, :-1] score
    labels[:, 1:]), ignores -100 and takes CrossEntropyLoss(reduction="mean",
    label_smoothing=config.text_config.label_smoothing). In transformers 5.x that smoothing is a
    config field (default 0.0, and 0.0 in this fixture); transformers 4.x up to ~4.40 hard-coded
    label_smoothing=0.1 here. The loss with smoothing 0.1 is recorded too.
  * LoRA: PEFT LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query",
    "value"]); every lora_A / lora_B is then overwritten with seeded normal values (B non-zero,
    so A's gradient is non-zero). loss.backward() gives the adapter gradients; one
    torch.optim.AdamW(lr=1e-3, weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8) step (no
    clipping) gives the updated adapters.
  * the full model (no adapter) loss on the same batch.
The same computation in float64 is run too; its results go to the JSON only (how far PyTorch's
own float32 is from exact arithmetic on this ill-conditioned fixture).

Tensors (PEFT names, PyTorch layout: lora_A.weight [r, in], lora_B.weight [out, r]):
  pixel_values [2, 3, S, S] (one per unique image), row_image [6] (image of each row),
  input_ids / attention_mask / labels [6, L] (int64),
  init/<peft name>, grad/<peft name>, step/<peft name> (after the AdamW step).
"""
import argparse
import hashlib
import json
import pathlib

import blake3
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BlipForConditionalGeneration

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent  # the project root

CAPTIONS = [
    # image 0
    [
        "a dog runs on the grass .",
        "a dog",
        "a small brown dog is running across the green grass near a tall tree",
    ],
    # image 1
    [
        "two children play with a red ball",
        "kids playing outside",
        "a boy and a girl kick a ball in the park",
    ],
]
R, ALPHA, LR, WEIGHT_DECAY = 4, 8, 1e-3, 0.01
BETAS, EPS = (0.9, 0.999), 1e-8
TARGETS = ["query", "value"]
# The first AdamW step moves each value by about lr * sign(grad), so the step check is only
# well posed if no gradient element is within float32 noise of zero: SEED is one whose smallest
# |grad| is >= 50x that element's float32-vs-float64 error (asserted below; 1234 gave 14x).
SEED = 6
MIN_SIGN_MARGIN = 50.0
INIT_STD = 0.1  # of the seeded lora_A / lora_B values


def batch(fixture: pathlib.Path, config):
    tok = AutoTokenizer.from_pretrained(fixture)
    text = config.text_config
    rows = [c for caps in CAPTIONS for c in caps]
    row_image = [i for i, caps in enumerate(CAPTIONS) for _ in caps]
    framed = []
    for c in rows:
        ids = tok(c, add_special_tokens=False)["input_ids"]
        framed.append([text.bos_token_id] + ids + [text.sep_token_id])
    L = max(len(x) for x in framed)
    input_ids = torch.full((len(rows), L), text.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), L), dtype=torch.long)
    for r, ids in enumerate(framed):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attention_mask[r, : len(ids)] = 1
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, 0] = -100  # the [DEC]; never scored anyway (the model shifts)
    pixels = load_file(str(fixture / "reference" / "reference.safetensors"))["pixel_values"]
    pixels = pixels[: len(CAPTIONS)].contiguous().float()
    return pixels, torch.tensor(row_image, dtype=torch.long), input_ids, attention_mask, labels


def lora_modules(model):
    """(PEFT module name without the `base_model.model.` prefix, module), in model order."""
    out = []
    for name, m in model.named_modules():
        if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {}):
            out.append((name.removeprefix("base_model.model."), m))
    return out


def run(fixture, dtype, pixels, row_image, input_ids, attention_mask, labels):
    model = BlipForConditionalGeneration.from_pretrained(fixture, dtype=torch.float32)
    model = model.to(dtype)
    model.train()
    text = model.config.text_config
    assert text.hidden_dropout_prob == 0.0 and text.attention_probs_dropout_prob == 0.0
    assert model.config.vision_config.attention_dropout == 0.0
    smoothing = model.text_decoder.label_smoothing
    pv = pixels.to(dtype)[row_image]  # one pixel_values row per caption row
    kw = dict(pixel_values=pv, input_ids=input_ids, attention_mask=attention_mask, labels=labels)

    with torch.no_grad():
        full_loss = model(**kw).loss.item()
        model.text_decoder.label_smoothing = 0.1
        full_loss_ls = model(**kw).loss.item()
        model.text_decoder.label_smoothing = smoothing

    pm = get_peft_model(
        model,
        LoraConfig(r=R, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS),
    )
    pm.train()
    gen = torch.Generator().manual_seed(SEED)
    layers = lora_modules(pm)
    init = {}
    with torch.no_grad():
        for name, m in layers:
            for kind, lin in (("lora_A", m.lora_A["default"]), ("lora_B", m.lora_B["default"])):
                assert lin.weight.dtype == dtype, (name, lin.weight.dtype)
                v = torch.randn(lin.weight.shape, generator=gen, dtype=torch.float32) * INIT_STD
                lin.weight.copy_(v.to(dtype))
                init[f"base_model.model.{name}.{kind}.weight"] = v
            assert m.scaling["default"] == ALPHA / R
    params = {
        f"base_model.model.{name}.{kind}.weight": getattr(m, kind)["default"].weight
        for name, m in layers
        for kind in ("lora_A", "lora_B")
    }
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert len(trainable) == len(params), trainable

    loss = pm(**kw).loss
    loss.backward()
    grads = {k: p.grad.detach().clone() for k, p in params.items()}
    opt = torch.optim.AdamW(
        list(params.values()), lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS, eps=EPS
    )
    opt.step()
    step = {k: p.detach().clone() for k, p in params.items()}
    return dict(
        loss=loss.item(),
        full_loss=full_loss,
        full_loss_ls=full_loss_ls,
        smoothing=smoothing,
        names=[n for n, _ in layers],
        init=init,
        grads=grads,
        step=step,
    )


def rel(a, b):
    """max |a - b| / max |b| over all tensors of two name → tensor maps."""
    num = max((a[k].double() - b[k].double()).abs().max().item() for k in b)
    den = max(b[k].double().abs().max().item() for k in b)
    return num / den


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixture", type=pathlib.Path, default=ROOT / "../shared/fixtures/blip-tiny")
    ap.add_argument("--out", type=pathlib.Path, default=HERE.parent / "tests" / "fixtures")
    a = ap.parse_args()
    torch.manual_seed(0)
    config = transformers.AutoConfig.from_pretrained(a.fixture)
    pixels, row_image, input_ids, attention_mask, labels = batch(a.fixture, config)

    f32 = run(a.fixture, torch.float32, pixels, row_image, input_ids, attention_mask, labels)
    f64 = run(a.fixture, torch.float64, pixels, row_image, input_ids, attention_mask, labels)
    assert f32["names"] == f64["names"]

    g32 = torch.cat([v.double().ravel() for v in f32["grads"].values()])
    g64 = torch.cat([f64["grads"][k].double().ravel() for k in f32["grads"]])
    sign_margin = (g64.abs() / (g32 - g64).abs().clamp_min(1e-30)).min().item()
    assert sign_margin >= MIN_SIGN_MARGIN, (
        f"a gradient element is within {sign_margin:.1f}x its float32 error of zero: "
        "choose another SEED"
    )

    tensors = {
        "pixel_values": pixels,
        "row_image": row_image,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels": labels,
    }
    for kind in ("init", "grads", "step"):
        prefix = {"grads": "grad"}.get(kind, kind)
        for k, v in f32[kind].items():
            tensors[f"{prefix}/{k}"] = v.float().contiguous()
    a.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(a.out / "one_step.safetensors"))

    weights = (a.fixture / "model.safetensors").read_bytes()
    meta = {
        "note": "made by stages/train/tools/one_step_reference.py; checked by stages/train/tests/parity.rs",
        "fixture_model_safetensors": {
            "blake3": blake3.blake3(weights).hexdigest(),
            "sha256": hashlib.sha256(weights).hexdigest(),
            "bytes": len(weights),
        },
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
        },
        "captions": CAPTIONS,
        "r": R,
        "lora_alpha": ALPHA,
        "lora_dropout": 0.0,
        "target_modules": TARGETS,
        "lora_names": f32["names"],
        "init": f"torch.randn(generator=manual_seed({SEED})) * {INIT_STD}, lora_A then lora_B per layer in model order",
        "lr": LR,
        "weight_decay": WEIGHT_DECAY,
        "betas": list(BETAS),
        "eps": EPS,
        "label_smoothing": f32["smoothing"],
        "loss_reduction": "mean over tokens with label != -100 (shifted by one)",
        "loss": f32["loss"],
        "full_loss": f32["full_loss"],
        "full_loss_label_smoothing_0.1": f32["full_loss_ls"],
        "float64": {
            "note": "the same run in float64 (information only: PyTorch f32 vs exact arithmetic)",
            "loss": f64["loss"],
            "full_loss": f64["full_loss"],
            "full_loss_label_smoothing_0.1": f64["full_loss_ls"],
            "grads_rel_diff_f32_vs_f64": rel(f32["grads"], f64["grads"]),
            "step_rel_diff_f32_vs_f64": rel(f32["step"], f64["step"]),
            "min_abs_grad": g32.abs().min().item(),
            "min_over_elements_abs_grad_over_f32_error": sign_margin,
        },
    }
    (a.out / "one_step.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({k: meta[k] for k in ("loss", "full_loss", "full_loss_label_smoothing_0.1", "float64")}, indent=1))


if __name__ == "__main__":
    main()
