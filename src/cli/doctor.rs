//! `pipe doctor`: what this build and this machine offer a run, found the way a run finds
//! it — backends and devices, the Hugging Face cache, the METEOR jar, the pipeline and its
//! cache — so a surprise (the CPU chosen on a GPU machine, METEOR approximated, a token
//! missing) is seen before an hour of training, not after.

use std::path::Path;

use pipe_stage_api::BackendChoice;
use serde_json::json;

use super::{Exit, VERSION};

/// One finding: what was looked at, what was found, and whether it is worth acting on.
struct Finding {
    topic: &'static str,
    found: String,
    ok: bool,
}

pub fn run(pipeline: &Path, json: bool) -> Exit {
    let mut findings = vec![Finding {
        topic: "pipe",
        found: VERSION.to_string(),
        ok: true,
    }];
    findings.extend(backends());
    findings.push(hub());
    findings.push(meteor());
    findings.extend(project(pipeline));
    if json {
        let list: Vec<_> = findings
            .iter()
            .map(|f| json!({ "topic": f.topic, "found": f.found, "ok": f.ok }))
            .collect();
        super::output::print_json(&serde_json::Value::Array(list));
    } else {
        let width = findings.iter().map(|f| f.topic.len()).max().unwrap_or(0);
        for f in &findings {
            let mark = if f.ok { " " } else { "!" };
            outln!("{mark} {:width$}  {}", f.topic, f.found);
        }
    }
    Exit::Ok
}

fn backends() -> Vec<Finding> {
    let mut out = Vec::new();
    let auto =
        pipe_backend::resolve(BackendChoice::Auto).map_or_else(|e| e.to_string(), |b| b.describe());
    out.push(Finding {
        topic: "backend auto",
        found: auto,
        ok: true,
    });
    let cuda = if cfg!(feature = "cuda") {
        match pipe_backend::device_count(BackendChoice::Cuda) {
            0 => ("no NVIDIA driver or device found".to_string(), false),
            n => (format!("{n} device(s)"), true),
        }
    } else {
        ("not built (cargo build --features cuda)".to_string(), true)
    };
    out.push(Finding {
        topic: "cuda",
        found: cuda.0,
        ok: cuda.1,
    });
    out.push(wgpu());
    out
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Finding {
    let adapters = pipe_backend::wgpu_adapters();
    let found = if adapters.is_empty() {
        "no Vulkan or Metal adapter (Debian: apt-get install mesa-vulkan-drivers)".to_string()
    } else {
        adapters
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    Finding {
        topic: "wgpu",
        ok: !adapters.is_empty(),
        found,
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Finding {
    Finding {
        topic: "wgpu",
        found: "not built (cargo build --features wgpu)".to_string(),
        ok: true,
    }
}

fn hub() -> Finding {
    let hub = pipe_hub::HubOptions::from_env();
    let cache = hub.cache_dir.as_ref().map_or_else(
        || "no cache directory (set HF_HOME or HF_HUB_CACHE)".to_string(),
        |d| d.display().to_string(),
    );
    let mode = if hub.offline {
        "offline (HF_HUB_OFFLINE)".to_string()
    } else {
        format!("online, {}", hub.endpoint)
    };
    // Whether a token is set, never the token.
    let token = if hub.token.is_some() {
        "token set"
    } else {
        "no token"
    };
    Finding {
        topic: "hugging face",
        found: format!("cache {cache}; {mode}; {token}"),
        ok: hub.cache_dir.is_some(),
    }
}

fn meteor() -> Finding {
    let opts = pipe_metrics::MeteorOptions {
        jar: None,
        mode: pipe_metrics::MeteorMode::Auto,
    };
    match pipe_metrics::meteor::find_jar(&opts) {
        Some(jar) => Finding {
            topic: "meteor",
            found: format!("official jar {} (java found)", jar.display()),
            ok: true,
        },
        None => Finding {
            topic: "meteor",
            found: "no jar and java: METEOR is the labelled native approximation \
                    (pip install pycocoevalcap, and a Java runtime, for the official one)"
                .to_string(),
            ok: false,
        },
    }
}

/// The pipeline file, its cache (artifacts, size) and the free space where the cache is.
fn project(pipeline: &Path) -> Vec<Finding> {
    let spec = match pipe::spec::load(pipeline, &[], &crate::REGISTRY) {
        Ok(spec) => spec,
        Err(e) => {
            return vec![Finding {
                topic: "pipeline",
                found: pipe::error_chain(&e),
                ok: false,
            }];
        }
    };
    let mut out = vec![Finding {
        topic: "pipeline",
        found: format!(
            "{} ({} stages, backend {})",
            spec.file.display(),
            spec.stages.len(),
            json!(spec.backend).as_str().unwrap_or("?")
        ),
        ok: true,
    }];
    let (files, bytes) = walkdir::WalkDir::new(&spec.cache_dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .fold((0u64, 0u64), |(n, b), e| {
            (n + 1, b + e.metadata().map_or(0, |m| m.len()))
        });
    let free = pipe::disk::free_space(&spec.cache_dir);
    out.push(Finding {
        topic: "cache",
        found: format!(
            "{}: {files} files, {}{}",
            spec.cache_dir.display(),
            pipe::disk::human_bytes(bytes),
            free.map_or_else(String::new, |f| format!(
                "; {} free on its filesystem",
                pipe::disk::human_bytes(f)
            ))
        ),
        ok: true,
    });
    out
}
