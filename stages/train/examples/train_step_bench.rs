//! Training-step throughput of the train stage's LoRA step on the CPU:
//! `cargo run --release -p pipe-train --example train_step_bench -- DIR [--mode vision|encode]
//! [--steps 10] [--warmup 2] [--images 4] [--captions 5] [--seed 0]`.
//!
//! The step is `fit.rs`'s: the training model (unmerged LoRA branches on query/value),
//! teacher-forced logits of an [`ImageBatch`], the summed loss over the scored tokens divided by
//! their count, backward, AdamW. LoRA is set up as `stage.rs` does (r 16, alpha 32, targets
//! query/value). The batch has IMAGES images with CAPTIONS captions each, image-major, row r a
//! caption of 12 + (3r mod 5) tokens padded to the longest, as bench/train/reference_step.py
//! builds it for transformers + PEFT.
//!
//! - `--mode vision`: pixels in the batch, the vision encoder runs every step, once per image.
//! - `--mode encode`: the vision output computed once before timing (the `encode` stage's
//!   cache), the step starts from the embeddings.
//!
//! Prints one JSON line: steps per second and peak RSS.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::{AutodiffModule, Module};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use pipe_backend::CpuBackend;
use pipe_blip::loss::summed_loss;
use pipe_blip::weights::load_model;
use pipe_hub::ModelDir;
use pipe_train::data::{BatchImages, ImageBatch};
use pipe_train::lora::{LoraAdapter, LoraSpec, Trainable, count_params, targeted};
use pipe_train::loss::batch_logits;
use pipe_train::optim::adamw;
use rand::{Rng, SeedableRng, rngs::StdRng};

type Ad = Autodiff<CpuBackend>;

const USAGE: &str = "usage: train_step_bench DIR [--mode vision|encode] [--steps N] [--warmup N] \
                     [--images N] [--captions N] [--seed N]";

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    match args.iter().position(|a| a == name) {
        None => default,
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name}: a value expected\n{USAGE}")),
    }
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Tokens of row `r` including [DEC] and [SEP]: Flickr8k-like 12..=16 (as reference_step.py).
fn caption_len(r: usize) -> usize {
    12 + (3 * r) % 5
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .filter(|a| !a.starts_with("--"))
        .unwrap_or_else(|| panic!("{USAGE}"));
    let mode: String = arg(&args, "--mode", "vision".to_string());
    let cached = match mode.as_str() {
        "vision" => false,
        "encode" => true,
        other => panic!("--mode {other}: vision or encode\n{USAGE}"),
    };
    let steps: usize = arg(&args, "--steps", 10).max(1);
    let warmup: usize = arg(&args, "--warmup", 2);
    let n_images: usize = arg(&args, "--images", 4);
    let captions: usize = arg(&args, "--captions", 5);
    let seed: u64 = arg(&args, "--seed", 0);

    let device = Default::default();
    <Ad as Backend>::seed(&device, seed);
    let model_dir = ModelDir::open(dir).expect("model dir");
    let t0 = Instant::now();
    let (config, model) = load_model::<Ad>(&model_dir, &device).expect("load model");
    let load_s = t0.elapsed().as_secs_f64();

    // LoRA as the train stage sets it up.
    let targets = vec!["query".to_string(), "value".to_string()];
    let model = model.no_grad();
    let layers = targeted(&model, &targets);
    assert!(!layers.is_empty(), "no query/value layers");
    let shapes: Vec<[usize; 2]> = layers.iter().map(|(_, s)| *s).collect();
    let lora = LoraAdapter::new(&shapes, 16, seed, &device);
    let spec = LoraSpec {
        names: layers.into_iter().map(|(n, _)| n).collect(),
        r: 16,
        alpha: 32.0,
        dropout: 0.0,
    };
    let mut trainable = Trainable { model, lora };
    let (trainable_params, total_params) = count_params(&trainable);

    // The batch: random pixels and token ids, the reference's shapes.
    let mut rng = StdRng::seed_from_u64(seed);
    let size = config.vision_config.image_size;
    let text = &config.text_config;
    let pixels: Vec<f32> = (0..n_images * 3 * size * size)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let pixels = Tensor::<CpuBackend, 4>::from_data(
        TensorData::new(pixels, [n_images, 3, size, size]),
        &device,
    );
    let rows = n_images * captions;
    let l = (0..rows).map(caption_len).max().unwrap_or(2);
    let (low, high) = (
        1000.min(text.vocab_size as i64 / 2),
        (text.vocab_size as i64 - 2).min(30000),
    );
    let mut input_ids = vec![i64::from(text.pad_token_id); rows * l];
    let mut mask = vec![0i64; rows * l];
    let mut labels = vec![-100i64; rows * l];
    for r in 0..rows {
        let n = caption_len(r);
        for t in 0..n {
            let id = match t {
                0 => i64::from(text.bos_token_id),
                t if t == n - 1 => i64::from(text.sep_token_id),
                _ => rng.random_range(low..high),
            };
            input_ids[r * l + t] = id;
            mask[r * l + t] = 1;
            if t > 0 {
                labels[r * l + t] = id;
            }
        }
    }
    let ints =
        |v: Vec<i64>| Tensor::<Ad, 2, Int>::from_data(TensorData::new(v, [rows, l]), &device);

    let t0 = Instant::now();
    let images = if cached {
        // The encode stage's cache: the frozen encoder's output, computed once, no autodiff.
        let embeds = trainable.model.valid().encode_images(pixels);
        let embeds = Tensor::<Ad, 3>::from_inner(embeds);
        let _ = embeds.clone().into_data(); // wait for the backend
        BatchImages::Embeds(embeds)
    } else {
        BatchImages::Pixels(Tensor::from_inner(pixels))
    };
    let encode_s = cached.then(|| t0.elapsed().as_secs_f64());
    let batch = ImageBatch {
        images,
        input_ids: ints(input_ids),
        attention_mask: ints(mask),
        labels: ints(labels),
        row_image: (0..rows).map(|r| r / captions).collect(),
    };
    assert_eq!(batch.rows_per_image(), Some(captions));

    // fit.rs's step (grad_accum 1, no clipping: the reference does not clip either).
    let mut optim = adamw(0.01).init::<Ad, Trainable<Ad>>();
    let lr = 1e-4;
    let mut step = |trainable: Trainable<Ad>| -> (Trainable<Ad>, f32) {
        let model = trainable.training_model(&spec, 0);
        let logits = batch_logits(&model, &batch);
        let (sum, count) = summed_loss(logits, batch.labels.clone(), 0.0);
        let loss = sum / count.clamp_min(1.0);
        let value: f32 = loss.clone().into_scalar().elem();
        assert!(value.is_finite(), "loss {value}");
        let grads = GradientsParams::from_grads(loss.backward(), &trainable);
        (optim.step(lr, trainable, grads), value)
    };

    let mut loss = f32::NAN;
    for _ in 0..warmup {
        (trainable, loss) = step(trainable);
    }
    let t = Instant::now();
    for _ in 0..steps {
        (trainable, loss) = step(trainable);
    }
    <Ad as Backend>::sync(&device).expect("sync");
    let s_per_step = t.elapsed().as_secs_f64() / steps as f64;

    let out = serde_json::json!({
        "impl": if cached { "pipe (encode cache)" } else { "pipe (vision)" },
        "steps_per_s": 1.0 / s_per_step,
        "s_per_step": s_per_step,
        "peak_rss_mb": peak_rss_mb(),
        "rows": rows,
        "images": n_images,
        "seq_len": l,
        "loss": loss,
        "trainable_params": trainable_params,
        "total_params": total_params,
        "load_s": load_s,
        "encode_s": encode_s,
    });
    println!("{out}");
}
