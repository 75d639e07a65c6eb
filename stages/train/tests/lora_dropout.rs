//! LoRA dropout: active in the training forward pass (on the autodiff backend) and only there;
//! without it the unmerged branches compute exactly what the merged weights do; gradients reach
//! the adapter alone.

use std::path::PathBuf;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::optim::GradientsParams;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use pipe_backend::{CpuBackend, CpuDevice};
use pipe_blip::loss::summed_loss;
use pipe_blip::{Blip, BlipConfig};
use pipe_train::data::{BatchImages, ImageBatch};
use pipe_train::lora::{LoraAdapter, LoraSpec, Trainable, targeted};
use pipe_train::loss::batch_logits;

type Ad = Autodiff<CpuBackend>;

fn setup(dropout: f64) -> (Trainable<Ad>, LoraSpec, ImageBatch<Ad>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart/model");
    let config = BlipConfig::from_file(&dir.join("config.json")).expect("config");
    let device = CpuDevice::default();
    let model = pipe_train::init::random_init(Blip::<Ad>::new(&config, &device), 0.02, 1);
    let model = model.no_grad();
    let targets = vec!["query".to_string(), "value".to_string()];
    let layers = targeted(&model, &targets);
    let shapes: Vec<[usize; 2]> = layers.iter().map(|(_, s)| *s).collect();
    let mut lora = LoraAdapter::<Ad>::new(&shapes, 4, 7, &device);
    // A non-zero B, so the branch contributes from the start.
    for l in &mut lora.layers {
        let dims = l.b.val().dims();
        let b = Tensor::<Ad, 2>::ones(dims, &device).mul_scalar(0.05);
        l.b = burn::module::Param::initialized(l.b.id, b.require_grad());
    }
    let spec = LoraSpec {
        names: layers.into_iter().map(|(n, _)| n).collect(),
        r: 4,
        alpha: 8.0,
        dropout,
    };
    let s = config.vision_config.image_size;
    let pixels = Tensor::<Ad, 4>::random(
        [2, 3, s, s],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let ids: Vec<i64> = vec![
        1, 5, 6, 7, 2, 1, 8, 9, 2, 0, 1, 10, 11, 12, 2, 1, 13, 2, 0, 0,
    ];
    let mask: Vec<i64> = ids
        .iter()
        .enumerate()
        .map(|(k, &t)| i64::from(t != 0 || k % 5 == 0))
        .collect();
    let labels: Vec<i64> = ids
        .iter()
        .zip(&mask)
        .enumerate()
        .map(|(k, (&t, &m))| if k % 5 == 0 || m == 0 { -100 } else { t })
        .collect();
    let int = |v: Vec<i64>| Tensor::<Ad, 2, Int>::from_data(TensorData::new(v, [4, 5]), &device);
    let batch = ImageBatch {
        images: BatchImages::Pixels(pixels),
        input_ids: int(ids),
        attention_mask: int(mask),
        labels: int(labels),
        row_image: vec![0, 0, 1, 1],
    };
    (Trainable { model, lora }, spec, batch)
}

fn max_diff<B: Backend>(a: Tensor<B, 3>, b: Tensor<B, 3>) -> f32 {
    (a - b).abs().max().into_scalar().elem()
}

use burn::tensor::ElementConversion;

#[test]
fn dropout_acts_while_training_and_only_then() {
    let (t, spec, batch) = setup(0.5);
    let merged = batch_logits(&t.merged(&spec), &batch);
    let a = batch_logits(&t.training_model(&spec, 1), &batch);
    let b = batch_logits(&t.training_model(&spec, 2), &batch);
    let (d_merged, d_draws) = (max_diff(a.clone(), merged), max_diff(a.clone(), b));
    assert!(
        d_merged > 1e-3,
        "dropout changes the training forward: {d_merged}"
    );
    assert!(d_draws > 1e-3, "another seed draws another mask: {d_draws}");
    // The mask is the seed's, whatever else drew from the backend's generator meanwhile.
    let _ = Tensor::<Ad, 2>::random(
        [7, 7],
        burn::tensor::Distribution::Default,
        &CpuDevice::default(),
    );
    let again = batch_logits(&t.training_model(&spec, 1), &batch);
    assert_eq!(max_diff(a, again), 0.0, "the same seed draws the same mask");

    // Without autodiff (validation, evaluation, export) there is no dropout: the unmerged
    // branches equal the merged weights.
    let valid = t.valid();
    let inner = ImageBatch {
        images: match &batch.images {
            BatchImages::Pixels(p) => BatchImages::Pixels(p.clone().inner()),
            BatchImages::Embeds(e) => BatchImages::Embeds(e.clone().inner()),
        },
        input_ids: batch.input_ids.clone().inner(),
        attention_mask: batch.attention_mask.clone().inner(),
        labels: batch.labels.clone().inner(),
        row_image: batch.row_image.clone(),
    };
    let d = max_diff(
        batch_logits(&valid.training_model(&spec, 1), &inner),
        batch_logits(&valid.merged(&spec), &inner),
    );
    assert!(d < 1e-5, "unmerged branches equal merged weights: {d}");
}

#[test]
fn with_dropout_the_gradients_reach_the_adapter_only() {
    let (t, spec, batch) = setup(0.3);
    let logits = batch_logits(&t.training_model(&spec, 1), &batch);
    let (sum, count) = summed_loss(logits, batch.labels.clone(), 0.0);
    let grads = GradientsParams::from_grads((sum / count).backward(), &t);
    let mut with_grad = 0;
    for l in &t.lora.layers {
        for p in [&l.a, &l.b] {
            let g = grads.get::<CpuBackend, 2>(p.id).expect("adapter gradient");
            let n: f32 = g.abs().sum().into_scalar().elem();
            assert!(n > 0.0);
            with_grad += 1;
        }
    }
    assert_eq!(with_grad, 16);
    let w = &t.model.text_decoder.bert.encoder.layer[0]
        .attention
        .projections
        .query
        .base
        .weight;
    assert!(
        grads.get::<CpuBackend, 2>(w.id).is_none(),
        "the base stays frozen"
    );
}
