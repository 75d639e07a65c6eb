//! Parity with transformers 5.24 on ../shared/fixtures/blip-tiny (skipped when absent):
//! image embeddings and loss within 1e-4, teacher-forced logits within f32's noise floor (see
//! below) and, in f64, within 1e-9 of transformers' f64 forward; greedy and beam-3 token ids
//! and texts identical.

mod common;

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor};
use common::{Cpu, max_abs_diff, reference_tensor};
use pipe_backend::OnBackend;
use pipe_stage_api::BackendChoice;
use pipe_test_support::reference_fixture;

use pipe_blip::loss::summed_loss;
use pipe_blip::{Captioner, GenerationConfig};

fn ref_json(dir: &std::path::Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(dir.join("reference/reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("reference.json parses")
}

fn ids(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|row| {
            row.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect()
        })
        .collect()
}

fn texts(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("text").to_string())
        .collect()
}

#[test]
fn image_embeds_logits_and_loss_match_transformers() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    check_forward::<Cpu>(&dir, &Default::default());
}

#[test]
fn greedy_and_beam3_match_transformers() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    check_decoding::<Cpu>(&dir, &Default::default());
}

/// The same forward and decoding checks, with the same tolerances, on Burn's wgpu backend
/// through `pipe_backend::resolve` (CI: lavapipe, `cargo test -p pipe-blip --test parity
/// --features pipe-backend/wgpu` with `PIPE_REQUIRE_WGPU=1`). Without the feature or an
/// adapter it says so and returns, unless `PIPE_REQUIRE_WGPU=1` makes that a failure.
#[test]
fn on_wgpu_image_embeds_logits_loss_and_captions_match_transformers() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let backend = match pipe_backend::resolve(BackendChoice::Wgpu) {
        Ok(b) => b,
        Err(e) if std::env::var_os("PIPE_REQUIRE_WGPU").is_some_and(|v| v == "1") => {
            panic!("PIPE_REQUIRE_WGPU=1 but wgpu is not usable: {e}")
        }
        Err(e) => {
            eprintln!("skipping the wgpu parity test: {e}");
            return;
        }
    };
    eprintln!("wgpu parity on {backend}");
    struct Checks<'a>(&'a std::path::Path);
    impl OnBackend for Checks<'_> {
        type Output = ();
        fn run<B: Backend>(self, device: B::Device) {
            check_forward::<B>(self.0, &device);
            check_decoding::<B>(self.0, &device);
        }
    }
    backend.run(Checks(&dir));
}

/// The base-size architecture (random weights, ~900 MB; never in the repository): run with
/// `PIPE_BLIP_BASE_DIR=DIR` after `python3 ../shared/tools/make_blip_fixture.py --size base
/// --out DIR`. Skipped otherwise.
#[test]
fn base_size_matches_transformers() {
    let Some(dir) = std::env::var_os("PIPE_BLIP_BASE_DIR").map(std::path::PathBuf::from) else {
        eprintln!("skipping: PIPE_BLIP_BASE_DIR is not set");
        return;
    };
    check_forward::<Cpu>(&dir, &Default::default());
    check_decoding::<Cpu>(&dir, &Default::default());
}

fn check_forward<B: Backend>(dir: &std::path::Path, device: &B::Device) {
    let dir = dir.to_path_buf();
    let captioner = Captioner::<B>::load(&dir, device).expect("load fixture");
    let pixels: Tensor<B, 4> = reference_tensor(&dir, "pixel_values", device);

    let embeds = captioner.model.encode_images(pixels);
    let ref_embeds: Tensor<B, 3> = reference_tensor(&dir, "image_embeds", device);
    let d = max_abs_diff(embeds.clone(), ref_embeds);
    eprintln!("image_embeds max |Δ| = {d:e}");
    assert!(d < 1e-4, "image_embeds differ by {d}");

    let input_ids: Tensor<B, 2, Int> = reference_tensor::<B, 2>(&dir, "input_ids", device).int();
    let mask: Tensor<B, 2, Int> = reference_tensor::<B, 2>(&dir, "attention_mask", device).int();
    let logits =
        captioner
            .model
            .teacher_forced_logits(embeds, input_ids.clone(), Some(mask.clone()));
    let ref_logits: Tensor<B, 3> = reference_tensor(&dir, "logits", device);
    // The 1e-4 target sits below f32's noise floor for this fixture: its random weights
    // (initializer_range 0.5) make the decoder ill-conditioned, and transformers' own f32
    // logits are 2.1e-4 (max) / 7.7e-6 (mean) away from the same model run in f64. Ours are
    // 2.2e-4 / 6.6e-6 from f64 and 2.3e-4 / 5.9e-6 from transformers' f32 — as close as
    // transformers is to itself in exact arithmetic. So: max 5e-4, mean 1e-5. That the
    // implementation is exact is checked in f64 below (2.8e-13 from transformers' f64).
    let diff = (logits.clone() - ref_logits).abs();
    let (max, mean): (f32, f32) = (
        diff.clone().max().into_scalar().elem(),
        diff.mean().into_scalar().elem(),
    );
    eprintln!("logits |Δ| max = {max:e}, mean = {mean:e}");
    assert!(max < 5e-4, "logits differ by {max}");
    assert!(mean < 1e-5, "logits differ by {mean} on average");

    // transformers' labels: the input ids, -100 on padding.
    let labels = input_ids.mask_fill(mask.equal_elem(0), -100);
    let (sum, count) = summed_loss(logits, labels, 0.0);
    let loss: f32 = (sum / count).into_scalar().elem();
    let ref_loss = ref_json(&dir)["loss"].as_f64().expect("loss");
    eprintln!("loss {loss} vs {ref_loss}");
    assert!(
        (loss as f64 - ref_loss).abs() < 1e-4,
        "loss {loss} vs {ref_loss}"
    );
}

fn check_decoding<B: Backend>(dir: &std::path::Path, device: &B::Device) {
    let dir = dir.to_path_buf();
    let captioner = Captioner::<B>::load(&dir, device).expect("load fixture");
    let reference = ref_json(&dir);
    let pixels: Tensor<B, 4> = reference_tensor(&dir, "pixel_values", device);

    for (beams, ids_key, text_key) in [
        (1, "greedy_max_new_tokens_12", "greedy_text"),
        (3, "beam3_max_new_tokens_12", "beam3_text"),
    ] {
        let g = GenerationConfig {
            num_beams: beams,
            max_new_tokens: 12,
            ..Default::default()
        };
        let caps = captioner.caption(pixels.clone(), &g).expect("caption");
        let got_ids: Vec<Vec<u32>> = caps.iter().map(|c| c.tokens.clone()).collect();
        let got_text: Vec<String> = caps.iter().map(|c| c.text.clone()).collect();
        assert_eq!(got_ids, ids(&reference[ids_key]), "{ids_key}");
        assert_eq!(got_text, texts(&reference[text_key]), "{text_key}");
    }
}

#[test]
fn batching_does_not_change_captions() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let device = Default::default();
    let captioner = Captioner::<Cpu>::load(&dir, &device).expect("load fixture");
    let pixels: Tensor<Cpu, 4> = reference_tensor(&dir, "pixel_values", &device);
    let g = GenerationConfig {
        num_beams: 3,
        max_new_tokens: 8,
        ..Default::default()
    };
    let batched = captioner.caption(pixels.clone(), &g).expect("batch");
    for (i, want) in batched.iter().enumerate() {
        let one = captioner
            .caption(pixels.clone().narrow(0, i, 1), &g)
            .expect("single");
        assert_eq!(&one[0], want, "image {i}");
    }
}

#[test]
fn wrong_pixel_size_is_an_error() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let device = Default::default();
    let captioner = Captioner::<Cpu>::load(&dir, &device).expect("load fixture");
    let pixels = Tensor::<Cpu, 4>::zeros([1, 3, 32, 32], &device);
    let e = captioner
        .caption(pixels, &GenerationConfig::default())
        .expect_err("32 px");
    assert!(e.to_string().contains("64"), "{e}");
}

#[test]
fn prompt_is_tokenized_like_transformers() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let device = Default::default();
    let captioner = Captioner::<Cpu>::load(&dir, &device).expect("load fixture");
    // "a picture of" → a(1037) picture(3861) of(1997)
    assert_eq!(
        captioner.prompt_ids("a picture of").expect("encode"),
        vec![1037, 3861, 1997]
    );
}

/// A tensor of the safetensors file `path` on backend `B`, converted to `dtype`.
fn tensor_from<B: burn::tensor::backend::Backend, const D: usize>(
    path: &std::path::Path,
    name: &str,
    dtype: burn::tensor::DType,
    device: &B::Device,
) -> Tensor<B, D> {
    use burn::store::{ModuleStore, SafetensorsStore};
    let mut store = SafetensorsStore::from_file(path);
    let snap = store
        .get_snapshot(name)
        .expect("read")
        .unwrap_or_else(|| panic!("{name} present in {}", path.display()));
    Tensor::from_data(snap.to_data().expect("data").convert_dtype(dtype), device)
}

/// In float64 rounding hides nothing: our model on Burn's f64 backend must equal
/// transformers' f64 forward (written by `tools/f64_reference.py`) to ~1e-9 if, and only if,
/// both compute the same function. This separates implementation errors from the f32 noise
/// that the 5e-4 tolerance above has to allow on this ill-conditioned fixture.
#[test]
fn in_f64_embeddings_and_logits_equal_transformers() {
    use burn::tensor::DType;
    type F64 = burn::backend::NdArray<f64>;
    let Some(dir) = reference_fixture() else {
        return;
    };
    let device = Default::default();
    let captioner = Captioner::<F64>::load(&dir, &device).expect("load fixture in f64");
    let reference = dir.join("reference/reference.safetensors");
    let exact = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/f64_reference.safetensors");

    let pixels: Tensor<F64, 4> = tensor_from(&reference, "pixel_values", DType::F64, &device);
    let embeds = captioner.model.encode_images(pixels);
    let want: Tensor<F64, 3> = tensor_from(&exact, "image_embeds", DType::F64, &device);
    let d: f64 = (embeds.clone() - want).abs().max().into_scalar();
    eprintln!("f64 image_embeds max |Δ| = {d:e}");
    assert!(d < 1e-9, "image_embeds differ by {d} in f64");

    let ids: Tensor<F64, 2, Int> =
        tensor_from::<F64, 2>(&reference, "input_ids", DType::F64, &device).int();
    let mask: Tensor<F64, 2, Int> =
        tensor_from::<F64, 2>(&reference, "attention_mask", DType::F64, &device).int();
    let logits = captioner
        .model
        .teacher_forced_logits(embeds, ids, Some(mask));
    let columns: Tensor<F64, 1, Int> =
        tensor_from::<F64, 1>(&exact, "columns", DType::F64, &device).int();
    let want: Tensor<F64, 3> = tensor_from(&exact, "logits_cols", DType::F64, &device);
    let got = logits.select(2, columns);
    let scale: f64 = want.clone().abs().max().into_scalar();
    let d: f64 = (got - want).abs().max().into_scalar();
    eprintln!("f64 logits max |Δ| = {d:e} (max |logit| {scale:.1})");
    assert!(d < 1e-9, "logits differ by {d} in f64");
}
