//! Helpers shared by the test binaries: fixtures the tests generate, and ../shared lookup.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

/// ../shared (the project's read-only material), when present.
pub fn shared() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    dir.is_dir().then_some(dir)
}

pub fn table(text: &str) -> toml::Table {
    toml::from_str(text).expect("valid toml")
}

/// Write a small PNG whose colour depends on `seed`.
pub fn png(path: &Path, w: u32, h: u32, seed: u32) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (seed * 7 + x) as u8,
            (seed / 3 + y) as u8,
            (seed % 251) as u8,
        ])
    });
    img.save(path).expect("save png");
}

/// Run prep into a fresh directory under `tmp`.
pub fn prep(
    params: &str,
    base: &Path,
    tmp: &Path,
) -> (
    PathBuf,
    Result<pipe_stage_api::Outcome, pipe_data::prep::PrepError>,
) {
    let out = tempfile::tempdir_in(tmp).expect("tempdir").keep();
    let result = pipe_prep::run(&table(params), base, &out);
    (out, result)
}

pub fn summary(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("summary.json")).expect("summary.json"))
        .expect("json")
}

/// `summary.json` → (images, captions) of a split.
pub fn counts(summary: &serde_json::Value, split: &str) -> (u64, u64) {
    let s = &summary["splits"][split];
    (
        s["images"].as_u64().expect("images"),
        s["captions"].as_u64().expect("captions"),
    )
}

/// The skip reason recorded for an image, if any.
pub fn skip_reason(summary: &serde_json::Value, image: &str) -> Option<String> {
    summary["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .find(|s| s["image"] == image)
        .map(|s| s["reason"].as_str().expect("reason").to_string())
}

/// A model directory with a tiny hand-made WordPiece tokenizer (whole words of the synthetic
/// captions), BLIP's normalisation constants and a 32×32 image size.
pub fn tiny_model(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let words = "a an the on in at of to with and there is two shapes , large big small little red green blue yellow \
                 purple orange white black gray circle square triangle cross background picture top bottom left right \
                 center corner above below dog runs grass . picture of";
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["[PAD]", "[UNK]", "[CLS]", "[SEP]"].iter().enumerate() {
        vocab.insert(t.to_string(), i.into());
    }
    for w in words.split_whitespace() {
        if !vocab.contains_key(w) {
            let n = vocab.len();
            vocab.insert(w.to_string(), n.into());
        }
    }
    let dec = vocab.len();
    vocab.insert("[DEC]".to_string(), dec.into());
    let special = |id: usize, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": true})
    };
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "[PAD]"), special(1, "[UNK]"), special(2, "[CLS]"), special(3, "[SEP]"), special(dec, "[DEC]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).expect("write");
    let config = serde_json::json!({"text_config": {"bos_token_id": dec, "sep_token_id": 3, "pad_token_id": 0}});
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write");
    let pre = serde_json::json!({
        "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "rescale_factor": 0.00392156862745098, "size": {"height": 32, "width": 32}
    });
    std::fs::write(dir.join("preprocessor_config.json"), pre.to_string()).expect("write");
    dir.to_path_buf()
}
