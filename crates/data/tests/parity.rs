//! Parity with transformers 5.24 on the BLIP fixture in ../shared (skipped when absent):
//! token ids identical, pixel values within a stated tolerance.

use pipe_data::collate::{
    Arithmetic, CaptionTokenizer, Filter, Normalizer, PreprocessorConfig, pad_batch,
    preprocess_file, resize_rgb8_with,
};
use pipe_data::images::{DecodeLimits, decode_rgb8};
use pipe_test_support::reference_fixture;
use safetensors::{Dtype, SafeTensors};

fn tensor_f32(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).expect("tensor present");
    assert_eq!(t.dtype(), Dtype::F32, "{name}");
    let v = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (t.shape().to_vec(), v)
}

fn tensor_i64(st: &SafeTensors<'_>, name: &str) -> (Vec<usize>, Vec<i64>) {
    let t = st.tensor(name).expect("tensor present");
    let v = match t.dtype() {
        Dtype::I64 => t
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect(),
        Dtype::I32 => t
            .data()
            .chunks_exact(4)
            .map(|b| i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes"))))
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    };
    (t.shape().to_vec(), v)
}

#[test]
fn input_ids_match_transformers() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let bytes = std::fs::read(dir.join("reference/reference.safetensors")).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let (shape, ids) = tensor_i64(&st, "input_ids");
    let (_, mask) = tensor_i64(&st, "attention_mask");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference/reference.json")).expect("read"))
            .expect("json");
    let captions: Vec<String> = reference["captions"]
        .as_array()
        .expect("captions")
        .iter()
        .map(|c| c.as_str().expect("str").to_string())
        .collect();
    assert_eq!(shape[0], captions.len());

    let tok = CaptionTokenizer::from_model_dir(&dir, 512, "").expect("tokenizer");
    let encoded: Vec<_> = captions
        .iter()
        .map(|c| tok.encode(c).expect("encode"))
        .collect();
    let refs: Vec<_> = encoded.iter().collect();
    let batch = pad_batch(&refs, tok.special().pad, None);
    assert_eq!(batch.seq_len, shape[1]);
    assert_eq!(batch.input_ids, ids, "input_ids differ from transformers");
    assert_eq!(
        batch.attention_mask, mask,
        "attention_mask differs from transformers"
    );
    // Labels: the ids, -100 on [DEC] and padding.
    assert_eq!(batch.labels[0], -100);
    assert!(
        batch
            .labels
            .iter()
            .zip(&mask)
            .all(|(&l, &m)| m == 1 || l == -100)
    );
}

#[test]
fn pixel_values_match_transformers() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let bytes = std::fs::read(dir.join("reference/reference.safetensors")).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let (shape, reference) = tensor_f32(&st, "pixel_values");
    let cfg = PreprocessorConfig::from_model_dir(&dir).expect("preprocessor config");
    assert_eq!(
        &shape[1..],
        &[3, cfg.size.height as usize, cfg.size.width as usize]
    );
    let per = shape[1] * shape[2] * shape[3];
    let (mut sum, mut max, mut n, mut differ) = (0f64, 0f32, 0usize, 0usize);
    for i in 0..shape[0] {
        let ours = preprocess_file(&dir.join(format!("reference/images/probe{i}.png")), &cfg)
            .expect("preprocess");
        let theirs = &reference[i * per..(i + 1) * per];
        assert_eq!(ours.len(), per);
        let mut img_max = 0f32;
        for (a, b) in ours.iter().zip(theirs) {
            let d = (a - b).abs();
            sum += f64::from(d);
            img_max = img_max.max(d);
            n += 1;
            differ += usize::from(d > 1e-4);
        }
        eprintln!("probe{i}: max abs diff {img_max:.6}");
        max = max.max(img_max);
    }
    let mean = sum / n as f64;
    eprintln!(
        "pixel_values vs transformers: mean abs diff {mean:.1e}, max abs diff {max:.1e} \
         (normalised units); {differ} of {n} values differ"
    );
    assert!(mean < 0.01, "mean abs diff {mean}");
    // The resize reproduces torch's uint8 kernel bit for bit: only f32 rounding remains.
    assert!(max < 1e-5, "max abs diff {max}");

    // For the record: Pillow's arithmetic moves a few values by one 8-bit level (≈ 0.015).
    let norm = Normalizer::new(&cfg);
    let (mut pil_max, mut pil_differ) = (0f32, 0usize);
    for i in 0..shape[0] {
        let bytes =
            std::fs::read(dir.join(format!("reference/images/probe{i}.png"))).expect("read");
        let rgb = decode_rgb8(&bytes, &DecodeLimits::default()).expect("decode");
        let resized = resize_rgb8_with(
            &rgb,
            cfg.size.width,
            cfg.size.height,
            Filter::Bicubic,
            Arithmetic::Pil,
        );
        let ours = norm.to_chw(resized.as_raw());
        for (a, b) in ours.iter().zip(&reference[i * per..(i + 1) * per]) {
            pil_max = pil_max.max((a - b).abs());
            pil_differ += usize::from((a - b).abs() > 1e-4);
        }
    }
    eprintln!(
        "with Pillow's arithmetic instead: max abs diff {pil_max:.6}; {pil_differ} of {n} values differ"
    );
    assert!(pil_max < 0.016, "Pillow arithmetic max abs diff {pil_max}");
}
