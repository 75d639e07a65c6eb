//! Load test of the server: `cargo run -p pipe-serve --example bench_serve -- MODEL_DIR IMAGE
//! [--clients 8] [--seconds 30] [--max-batch 8] [--window-ms 5] [--beams 1] [--tokens 20]`.
//!
//! Starts the server in this process on a free loopback port (127.0.0.1 only), runs N clients
//! that each post IMAGE to `/api/caption` back to back until the time is up, and prints one
//! JSON line: requests, errors, p50/p99 latency, captions per second, model calls and the mean
//! batch size.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pipe_serve::{ServeOptions, Server};
use pipe_stage_api::BackendChoice;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(image)) = (args.get(1), args.get(2)) else {
        return Err(
            "usage: bench_serve MODEL_DIR IMAGE [--clients N] [--seconds S] [--max-batch B]".into(),
        );
    };
    let model = PathBuf::from(model);
    let image = std::fs::read(image)?;
    let clients = arg(&args, "--clients", 8) as usize;
    let seconds = arg(&args, "--seconds", 30);
    let max_batch = arg(&args, "--max-batch", 8) as usize;
    let window_ms = arg(&args, "--window-ms", 5);
    let beams = arg(&args, "--beams", 1);
    let tokens = arg(&args, "--tokens", 20);

    let opts = ServeOptions {
        port: 0,
        max_batch,
        batch_window: Duration::from_millis(window_ms),
        queue_capacity: clients * 2,
        request_timeout: Duration::from_secs(120),
        ..ServeOptions::default()
    };
    let server = Server::start(&model, BackendChoice::Cpu, opts)?;
    let url = format!(
        "http://{}/api/caption?num_beams={beams}&max_new_tokens={tokens}",
        server.addr()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (latencies, errors, elapsed) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        // Warm-up: one request, not counted.
        client.post(&url).body(image.clone()).send().await?;
        let start = Instant::now();
        let deadline = start + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let (client, url, image) = (client.clone(), url.clone(), image.clone());
            tasks.push(tokio::spawn(async move {
                let mut ok = Vec::new();
                let mut errors = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match client.post(&url).body(image.clone()).send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            ok.push(t.elapsed().as_secs_f64() * 1000.0);
                        }
                        Ok(r) => errors.push(format!("HTTP {}", r.status())),
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (ok, errors)
            }));
        }
        let mut latencies = Vec::new();
        let mut errors = Vec::new();
        for t in tasks {
            let (ok, err) = t.await?;
            latencies.extend(ok);
            errors.extend(err);
        }
        Ok::<_, Box<dyn std::error::Error>>((latencies, errors, start.elapsed()))
    })?;
    let stats = server.stats();
    server.shutdown()?;

    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let secs = elapsed.as_secs_f64();
    let report = serde_json::json!({
        "clients": clients,
        "max_batch": max_batch,
        "seconds": (secs * 10.0).round() / 10.0,
        "captions": latencies.len(),
        "errors": errors.len(),
        "first_error": errors.first(),
        "p50_ms": (percentile(&sorted, 0.50) * 10.0).round() / 10.0,
        "p99_ms": (percentile(&sorted, 0.99) * 10.0).round() / 10.0,
        "captions_per_s": (latencies.len() as f64 / secs * 100.0).round() / 100.0,
        "model_calls": stats.batches,
        "mean_batch": if stats.batches > 0 { (stats.images as f64 / stats.batches as f64 * 100.0).round() / 100.0 } else { 0.0 },
        "largest_batch": stats.largest_batch,
    });
    println!("{report}");
    Ok(())
}
