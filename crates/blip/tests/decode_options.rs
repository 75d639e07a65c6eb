//! Decoding options against transformers: greedy and beam search with repetition penalty,
//! no-repeat n-grams, min_new_tokens, length penalty and every early_stopping mode, on the tiny
//! fixture with the [SEP] logit raised so captions finish at different lengths (and beams finish
//! at different steps). Expected tokens: tests/data/decode_reference.json, made by
//! bench/blip/make_decode_reference.py with transformers 5.24.

mod common;

use burn::tensor::Tensor;
use common::{Cpu, reference_tensor, rewrite};
use pipe_blip::{Captioner, GenerationConfig};
use pipe_test_support::reference_fixture;
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    sep_bias: f32,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    options: GenerationConfig,
    tokens: Vec<Vec<u32>>,
}

#[test]
fn decoding_options_match_transformers() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/decode_reference.json"
    ))
    .expect("reference");
    let reference: Reference = serde_json::from_str(&text).expect("parse");
    let device = Default::default();
    let pixels: Tensor<Cpu, 4> = reference_tensor(&dir, "pixel_values", &device);
    for run in reference.runs {
        // The fixture with bias[SEP] += sep_bias.
        let tmp = tempfile::tempdir().expect("tmp");
        for f in ["config.json", "tokenizer.json"] {
            std::fs::copy(dir.join(f), tmp.path().join(f)).expect("copy");
        }
        rewrite(&dir, &tmp.path().join("model.safetensors"), |tensors| {
            let bias = tensors
                .iter_mut()
                .find(|t| t.0 == "text_decoder.cls.predictions.bias")
                .expect("bias");
            let at = 102 * 4;
            let v =
                f32::from_le_bytes(bias.3[at..at + 4].try_into().expect("4 bytes")) + run.sep_bias;
            bias.3[at..at + 4].copy_from_slice(&v.to_le_bytes());
        });
        let captioner = Captioner::<Cpu>::load(tmp.path(), &device).expect("load");
        for case in run.cases {
            let got: Vec<Vec<u32>> = captioner
                .caption(pixels.clone(), &case.options)
                .expect("caption")
                .into_iter()
                .map(|c| c.tokens)
                .collect();
            assert_eq!(
                got, case.tokens,
                "sep_bias {}: {:?}",
                run.sep_bias, case.options
            );
        }
    }
}

/// `do_sample`: the same seed gives the same captions, another seed others (at temperature 2 on
/// the tiny fixture's flat distribution), and top_k = 1 leaves only the argmax to draw: greedy.
#[test]
fn sampling_is_seeded_and_top_k_one_is_greedy() {
    use pipe_blip::decode::Sampling;
    let Some(dir) = reference_fixture() else {
        return;
    };
    let device = Default::default();
    let pixels: Tensor<Cpu, 4> = reference_tensor(&dir, "pixel_values", &device);
    let captioner = Captioner::<Cpu>::load(&dir, &device).expect("load");
    let tokens = |options: &GenerationConfig| -> Vec<Vec<u32>> {
        captioner
            .caption(pixels.clone(), options)
            .expect("caption")
            .into_iter()
            .map(|c| c.tokens)
            .collect()
    };
    let sampled = |seed, temperature, top_k| GenerationConfig {
        max_new_tokens: 12,
        sampling: Some(Sampling {
            temperature,
            top_k,
            top_p: 1.0,
            seed,
        }),
        ..GenerationConfig::default()
    };
    let greedy = GenerationConfig {
        max_new_tokens: 12,
        ..GenerationConfig::default()
    };
    assert_eq!(tokens(&sampled(3, 2.0, 0)), tokens(&sampled(3, 2.0, 0)));
    assert_ne!(tokens(&sampled(3, 2.0, 0)), tokens(&sampled(4, 2.0, 0)));
    assert_ne!(tokens(&sampled(3, 2.0, 0)), tokens(&greedy));
    assert_eq!(tokens(&sampled(3, 2.0, 1)), tokens(&greedy));
    // Beam sampling is refused, naming the option.
    let beams = GenerationConfig {
        num_beams: 3,
        ..sampled(3, 1.0, 50)
    };
    let err = captioner
        .caption(pixels, &beams)
        .expect_err("beam sampling");
    assert!(err.to_string().contains("num_beams = 1"), "{err}");
}
