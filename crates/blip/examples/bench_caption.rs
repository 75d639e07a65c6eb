//! Captioning throughput on the CPU: `cargo run -p pipe-blip --example bench_caption -- DIR
//! [--batch 8] [--beams 3] [--tokens 20] [--repeats 3]`.
//!
//! Reads `DIR/reference/reference.safetensors`'s pixel_values (made by
//! shared/tools/make_blip_fixture.py, the same tensors transformers is fed in
//! bench/blip/hf_bench.py), tiles them to the batch size, and generates exactly `--tokens` new
//! tokens per image (min = max). Prints one JSON line: captions per second and peak RSS.

use std::time::Instant;

use burn::store::{ModuleStore, SafetensorsStore};
use burn::tensor::{DType, Tensor};
use pipe_backend::CpuBackend as B;
use pipe_blip::{Captioner, GenerationConfig};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: bench_caption DIR [--batch N]"));
    let (batch, beams, tokens, repeats) = (
        arg(&args, "--batch", 8),
        arg(&args, "--beams", 3),
        arg(&args, "--tokens", 20),
        arg(&args, "--repeats", 3),
    );
    let device = Default::default();
    let t0 = Instant::now();
    let captioner = Captioner::<B>::load(&dir, &device).expect("load model");
    let load_s = t0.elapsed().as_secs_f64();

    let mut store = SafetensorsStore::from_file(dir.join("reference/reference.safetensors"));
    let snap = store
        .get_snapshot("pixel_values")
        .expect("read")
        .expect("pixel_values");
    let pixels: Tensor<B, 4> = Tensor::from_data(
        snap.to_data().expect("data").convert_dtype(DType::F32),
        &device,
    );
    let n = pixels.dims()[0];
    let tiles: Vec<Tensor<B, 4>> = (0..batch)
        .map(|i| pixels.clone().narrow(0, i % n, 1))
        .collect();
    let pixels = Tensor::cat(tiles, 0);

    let g = GenerationConfig {
        num_beams: beams,
        max_new_tokens: tokens,
        min_new_tokens: tokens,
        ..Default::default()
    };
    // Warm-up (allocator, thread pool), then timed repeats.
    let caps = captioner.caption(pixels.clone(), &g).expect("caption");
    let mut times = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        let _ = captioner.caption(pixels.clone(), &g).expect("caption");
        times.push(t.elapsed().as_secs_f64());
    }
    // Where the time goes: the vision encoder alone on the same batch.
    let t = Instant::now();
    let embeds = captioner.model.encode_images(pixels.clone());
    let _ = embeds.into_data(); // wait for the backend
    let encode_s = t.elapsed().as_secs_f64();
    times.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let median = times[times.len() / 2];
    let out = serde_json::json!({
        "impl": "pipe-blip (burn flex, cpu)",
        "batch": batch, "num_beams": beams, "new_tokens": tokens,
        "seconds_per_batch": median, "captions_per_s": batch as f64 / median,
        "peak_rss_mb": peak_rss_mb(), "load_s": load_s, "encode_s": encode_s,
        "first_caption": caps[0].text, "first_tokens": caps[0].tokens,
    });
    println!("{out}");
}
