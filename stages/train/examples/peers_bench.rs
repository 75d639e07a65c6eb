//! Data-parallel training throughput: optimizer steps per second of the train stage's own step
//! ([`Peers`]: shares, forward and backward, Burn's collective all-reduce, clipping, AdamW) for
//! each peer count, alternating rounds so load drifts hit every count alike.
//!
//! `cargo run --release -p pipe-train --example peers_bench -- MODEL_DIR COLLATE_DIR
//! [--devices 1,2] [--rounds 3] [--steps 5] [--warmup 1] [--batch 8] [--backend cpu|cuda|wgpu|auto]`
//!
//! MODEL_DIR is an HF BLIP directory (config.json, model.safetensors; without the weights, random
//! ones for its config); COLLATE_DIR a collate artifact made with that model's tokenizer and
//! image size. LoRA r 16 / alpha 32 on
//! query/value, as the stage's defaults, no dropout; BATCH training images per step (their
//! captions with them). Prints one JSON line per peer count: steps/s of every round.

use std::time::Instant;

use burn::backend::Autodiff;
use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use pipe_backend::{OnDevices, resolve_on};
use pipe_blip::weights::load_model;
use pipe_blip::{Blip, BlipConfig};
use pipe_data::collate::Collated;
use pipe_data::prep::Split;
use pipe_hub::ModelDir;
use pipe_stage_api::BackendChoice;
use pipe_train::lora::{LoraAdapter, LoraSpec, Trainable, targeted};
use pipe_train::optim::GroupedAdamW;
use pipe_train::peers::{Peers, Shared};

const USAGE: &str = "usage: peers_bench MODEL_DIR COLLATE_DIR [--devices 1,2] [--rounds 3] \
                     [--steps 5] [--warmup 1] [--batch 8] [--backend cpu|cuda|wgpu|auto]";

fn arg(args: &[String], name: &str, default: &str) -> String {
    match args.iter().position(|a| a == name) {
        None => default.to_string(),
        Some(i) => args
            .get(i + 1)
            .cloned()
            .unwrap_or_else(|| panic!("{name}: a value expected\n{USAGE}")),
    }
}

fn num(args: &[String], name: &str, default: usize) -> usize {
    arg(args, name, &default.to_string())
        .parse()
        .unwrap_or_else(|_| panic!("{name}: a number expected\n{USAGE}"))
}

struct Bench {
    model: String,
    collate: String,
    counts: Vec<usize>,
    rounds: usize,
    steps: usize,
    warmup: usize,
    batch: usize,
}

impl OnDevices for &Bench {
    type Output = ();

    fn run<B: Backend>(self, devices: Vec<B::Device>) {
        bench::<Autodiff<B>>(self, devices);
    }
}

fn bench<B: AutodiffBackend>(b: &Bench, devices: Vec<B::Device>) {
    let device = devices[0].clone();
    let dir = std::path::Path::new(&b.model);
    let model = if dir.join("model.safetensors").is_file() {
        let model_dir = ModelDir::open(dir).expect("model dir");
        load_model::<B>(&model_dir, &device).expect("load model").1
    } else {
        // An architecture without weights: random ones, as `model = "scratch"` makes them.
        let config = BlipConfig::from_file(&dir.join("config.json")).expect("config.json");
        pipe_train::init::random_init(Blip::<B>::new(&config, &device), 0.02, 0)
    };
    let model = model.no_grad();
    let targets = vec!["query".to_string(), "value".to_string()];
    let layers = targeted(&model, &targets);
    let shapes: Vec<[usize; 2]> = layers.iter().map(|(_, s)| *s).collect();
    let lora = LoraAdapter::new(&shapes, 16, 0, &device);
    let spec = LoraSpec {
        names: layers.into_iter().map(|(n, _)| n).collect(),
        r: 16,
        alpha: 32.0,
        dropout: 0.0,
    };
    let trainable = Trainable { model, lora };
    let col = Collated::open(std::path::Path::new(&b.collate)).expect("collate artifact");
    let train = col.split_indices(Split::Train);
    assert!(
        train.len() >= b.batch,
        "the collate artifact has {} training images, fewer than --batch {}",
        train.len(),
        b.batch
    );
    let shared = Shared {
        col: &col,
        features: None,
        spec: Some(&spec),
        label_smoothing: 0.0,
        grad_accum: 1,
    };
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); b.counts.len()];
    for _ in 0..b.rounds {
        for (k, &n) in b.counts.iter().enumerate() {
            let peers_devices: Vec<B::Device> =
                (0..n).map(|i| devices[i % devices.len()].clone()).collect();
            let rate = std::thread::scope(|scope| {
                let mut peers = Peers::start(
                    scope,
                    peers_devices,
                    trainable.clone(),
                    GroupedAdamW::<B>::new(0.01),
                    shared,
                )
                .expect("peers");
                let mut started = Instant::now();
                for s in 0..b.warmup + b.steps {
                    if s == b.warmup {
                        B::sync(&device).expect("sync");
                        started = Instant::now();
                    }
                    let at = (s * b.batch) % (train.len() - b.batch + 1);
                    peers
                        .micro_batch(&train[at..at + b.batch], s as u64)
                        .expect("step");
                    peers.reduce().expect("all-reduce");
                    peers.step(1e-4, 1.0).expect("optimizer step");
                }
                B::sync(&device).expect("sync");
                let rate = b.steps as f64 / started.elapsed().as_secs_f64();
                peers.finish().expect("finish");
                rate
            });
            runs[k].push(rate);
        }
    }
    for (n, rates) in b.counts.iter().zip(runs) {
        println!(
            "{}",
            serde_json::json!({"devices": n, "steps_per_s": rates, "batch": b.batch})
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let positional: Vec<&String> = args
        .iter()
        .skip(1)
        .take_while(|a| !a.starts_with("--"))
        .collect();
    let [model, collate] = positional[..] else {
        panic!("{USAGE}")
    };
    let counts: Vec<usize> = arg(&args, "--devices", "1,2")
        .split(',')
        .map(|d| d.trim().parse().expect("--devices: numbers"))
        .collect();
    let choice = match arg(&args, "--backend", "cpu").as_str() {
        "cpu" => BackendChoice::Cpu,
        "cuda" => BackendChoice::Cuda,
        "wgpu" => BackendChoice::Wgpu,
        "auto" => BackendChoice::Auto,
        other => panic!("--backend {other}\n{USAGE}"),
    };
    let bench = Bench {
        model: model.clone(),
        collate: collate.clone(),
        rounds: num(&args, "--rounds", 3).max(1),
        steps: num(&args, "--steps", 5).max(1),
        warmup: num(&args, "--warmup", 1),
        batch: num(&args, "--batch", 8).max(1),
        counts,
    };
    let most = bench.counts.iter().copied().max().unwrap_or(1);
    let devices = pipe_backend::device_count(choice).max(1).min(most);
    let ordinals: Vec<usize> = (0..devices).collect();
    let backend = resolve_on(choice, None).expect("backend");
    eprintln!("backend {backend}, {devices} device(s) for up to {most} peers");
    backend.run_on(&ordinals, most, &bench);
}
