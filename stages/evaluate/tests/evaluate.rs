//! The evaluate stage end to end on the blip-tiny fixture and a small collate artifact built
//! here (skipped when ../shared is absent), and its report in headless Chromium.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::{Int, Tensor, TensorData};
use pipe_backend::{CpuBackend, CpuDevice};
use pipe_blip::Captioner;
use pipe_data::collate::Collated;
use pipe_data::prep::Split;
use pipe_evaluate::{Evaluate, EvaluateError};
use pipe_metrics::{MeteorMode, MeteorOptions, ScoreOptions};
use pipe_stage_api::{
    BackendChoice, Dep, Deps, Outcome, ParamError, Silent, StageContext, StageError, StageKind,
};
use pipe_test_support::fixture;

const SCRIPT: &str = "a <script>alert(\"x\")</script> & dog";

/// (id, split, captions): one train and one val image, six test images.
fn dataset() -> Vec<(String, &'static str, Vec<String>)> {
    let words = [
        "red", "green", "blue", "black", "white", "gray", "orange", "purple",
    ];
    (0..8)
        .map(|i| {
            let split = match i {
                0 => "train",
                1 => "val",
                _ => "test",
            };
            let mut caps = vec![
                format!("a {} square on a plain background", words[i]),
                format!("the picture shows something {}", words[i]),
            ];
            if i == 2 {
                caps.push(SCRIPT.to_string());
            }
            (format!("img{i}.png"), split, caps)
        })
        .collect()
}

struct Setup {
    root: PathBuf,
    model: PathBuf,
    collate: PathBuf,
    /// A fake train artifact: model/ (a copy of the fixture) and loss_history.json.
    train: PathBuf,
}

fn setup() -> Option<&'static Setup> {
    static SETUP: OnceLock<Option<Setup>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let model = fixture()?;
            let root = tempfile::tempdir().expect("tempdir").keep();
            let data = root.join("data");
            std::fs::create_dir_all(&data).expect("mkdir");
            let mut table = String::new();
            for (i, (id, split, caps)) in dataset().into_iter().enumerate() {
                let img = image::RgbImage::from_fn(80, 72, |x, y| {
                    image::Rgb([
                        (i as u32 * 37 + x) as u8,
                        (y * 3) as u8,
                        (i as u32 * 90) as u8,
                    ])
                });
                img.save(data.join(&id)).expect("png");
                for c in caps {
                    table.push_str(
                        &serde_json::json!({"file_name": id, "caption": c, "split": split})
                            .to_string(),
                    );
                    table.push('\n');
                }
            }
            std::fs::write(data.join("metadata.jsonl"), table).expect("table");
            let prep = root.join("prep");
            std::fs::create_dir_all(&prep).expect("mkdir");
            let params: toml::Table = toml::from_str(
                "dataset = \"jsonl\"\nfile = \"data/metadata.jsonl\"\nsplit_column = \"split\"",
            )
            .expect("toml");
            pipe_prep::run(&params, &root, &prep).expect("prep");
            let collate = root.join("collate");
            std::fs::create_dir_all(&collate).expect("mkdir");
            let mut params = toml::Table::new();
            params.insert("model".into(), model.display().to_string().into());
            params.insert("max_length".into(), 16.into());
            pipe_collate::run(&params, &root, &prep, &collate).expect("collate");

            let train = root.join("train");
            std::fs::create_dir_all(train.join("model")).expect("mkdir");
            for e in std::fs::read_dir(&model).expect("fixture") {
                let e = e.expect("entry");
                if e.path().is_file() {
                    std::fs::copy(e.path(), train.join("model").join(e.file_name())).expect("copy");
                }
            }
            // Forty steps, as train records them (the learning rate per step, the validation
            // before the first step), but for the first two: an older history without lr.
            let steps: Vec<serde_json::Value> = (1..=40)
                .map(|step| {
                    let loss = 3.0 * 0.97f64.powi(step) + 0.15 * f64::from(step % 3);
                    let mut p = serde_json::json!({
                        "epoch": 1 + (step - 1) / 20, "step": step, "loss": loss
                    });
                    if step > 2 {
                        p["lr"] = (1e-4 * f64::from(40 - step) / 40.0).into();
                    }
                    p
                })
                .collect();
            let history = serde_json::json!({
                "train": steps,
                "val": [{"epoch": 1, "step": 20, "loss": 2.6}, {"epoch": 2, "step": 40, "loss": 2.2}],
                "initial_val_loss": 3.4,
                "best_epoch": 2,
                "best_step": 40,
                "stopped_early": false
            });
            std::fs::write(train.join("loss_history.json"), history.to_string()).expect("history");
            Some(Setup {
                root,
                model,
                collate,
                train,
            })
        })
        .as_ref()
}

/// Run evaluate with `deps` as (name, kind, artifact dir).
fn run(
    s: &Setup,
    params: &str,
    deps: &[(&str, &str, &Path)],
) -> (PathBuf, Result<Outcome, StageError>) {
    let params: toml::Table = toml::from_str(params).expect("toml");
    let deps: Deps = deps
        .iter()
        .map(|(n, k, d)| (n.to_string(), Dep::new(*k, *d)))
        .collect();
    let out = tempfile::tempdir_in(&s.root).expect("out").keep();
    let work = tempfile::tempdir_in(&s.root).expect("work").keep();
    let ctx = StageContext {
        stage: "evaluate",
        pipeline_dir: &s.root,
        out_dir: &out,
        work_dir: &work,
        deps: &deps,
        params: &params,
        seed: 0,
        backend: BackendChoice::Cpu,
        devices: &[],
        progress: &Silent,
    };
    let result = Evaluate.run(&ctx);
    (out, result)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
}

const PARAMS: &str = "num_beams = 2\nmax_new_tokens = 6\nmeteor = \"approx\"";

/// The train-dep run, shared by the tests that look at its files.
fn train_run() -> Option<(&'static Setup, &'static Path, &'static Outcome)> {
    static RUN: OnceLock<Option<(PathBuf, Outcome)>> = OnceLock::new();
    let s = setup()?;
    let (out, outcome) = RUN
        .get_or_init(|| {
            let (out, r) = run(
                s,
                PARAMS,
                &[
                    ("collate", "collate", &s.collate),
                    ("train", "train", &s.train),
                ],
            );
            Some((out, r.expect("evaluate runs")))
        })
        .as_ref()?;
    Some((s, out.as_path(), outcome))
}

fn test_ids(s: &Setup) -> Vec<String> {
    let c = Collated::open(&s.collate).expect("collate");
    c.split_indices(Split::Test)
        .into_iter()
        .map(|i| c.images[i].id.clone())
        .collect()
}

#[test]
fn files_predictions_references_and_metrics() {
    let Some((s, out, outcome)) = train_run() else {
        eprintln!("skipped: ../shared is absent");
        return;
    };
    for f in [
        "predictions.jsonl",
        "references.jsonl",
        "metrics.json",
        "metrics.md",
        "report.html",
        "train_vs_val_loss.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let results: Vec<String> = outcome
        .results
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    for r in [
        "metrics.md",
        "metrics.json",
        "train_vs_val_loss.png",
        "report.html",
        "report",
    ] {
        assert!(
            results.iter().any(|x| x == r),
            "{r} not in results {results:?}"
        );
        assert!(out.join(r).exists());
    }
    for k in ["test_loss", "BLEU-4", "CIDEr", "METEOR~approx", "ROUGE-L"] {
        assert!(outcome.metrics.contains_key(k), "metric {k} missing");
    }

    // Every test image exactly once (the reader rejects duplicates).
    let preds = pipe_metrics::read_predictions(&out.join("predictions.jsonl")).expect("preds");
    let lines = std::fs::read_to_string(out.join("predictions.jsonl")).expect("read");
    let mut ids = test_ids(s);
    assert_eq!(lines.lines().count(), ids.len());
    ids.sort();
    assert_eq!(preds.keys().cloned().collect::<Vec<_>>(), ids);

    // References: all the original captions of each image.
    let refs = pipe_metrics::read_references(&out.join("references.jsonl")).expect("refs");
    for (id, split, caps) in dataset() {
        if split == "test" {
            assert_eq!(refs[&id], caps, "{id}");
        }
    }

    // metrics.json equals pipe-metrics on the two files.
    let opts = ScoreOptions {
        meteor: MeteorOptions {
            jar: None,
            mode: MeteorMode::Approximate,
        },
        single_ref: true,
    };
    let report = pipe_metrics::score(&preds, &refs, &opts).expect("score");
    let m = json(&out.join("metrics.json"));
    let expected = report.to_json();
    for (k, v) in expected.as_object().expect("object") {
        assert_close(&m[k], v, k);
    }
    assert!(m["test_loss"].as_f64().expect("loss").is_finite());
    assert_eq!(m["decoding"]["num_beams"], 2);

    let md = std::fs::read_to_string(out.join("metrics.md")).expect("md");
    assert!(md.contains("| Metric | Single-ref | Multi-ref |"), "{md}");
    assert!(md.contains("| Test loss |"), "{md}");
    assert!(md.contains("what papers report"), "{md}");

    let png = std::fs::read(out.join("train_vs_val_loss.png")).expect("png");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    let img = image::load_from_memory(&png).expect("decodes");
    assert!(img.width() > 100 && img.height() > 100);
}

/// Equal JSON, numbers within 1e-12 relative (serde_json's float parsing need not round-trip
/// the last bit).
fn assert_close(a: &serde_json::Value, b: &serde_json::Value, at: &str) {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) => {
            let (x, y) = (x.as_f64().expect("f64"), y.as_f64().expect("f64"));
            assert!(
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1e-300),
                "{at}: {x} vs {y}"
            );
        }
        (V::Object(x), V::Object(y)) => {
            assert_eq!(x.len(), y.len(), "{at}");
            for (k, v) in y {
                assert_close(&x[k], v, &format!("{at}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{at}"),
    }
}

#[test]
fn test_loss_matches_an_independent_computation() {
    let Some((s, out, _)) = train_run() else {
        return;
    };
    let c = Collated::open(&s.collate).expect("collate");
    let device = CpuDevice::default();
    let cap = Captioner::<CpuBackend>::load(&s.model, &device).expect("model");
    let (h, w) = c.image_size();
    let (h, w) = (h as usize, w as usize);
    let mut rows = Vec::new();
    let mut embeds = Vec::new();
    for i in c.split_indices(Split::Test) {
        let px = Tensor::<CpuBackend, 4>::from_data(
            TensorData::new(c.pixels(i).expect("pixels"), [1, 3, h, w]),
            &device,
        );
        let e = cap.model.encode_images(px);
        for caption in c.captions(i) {
            rows.push(caption);
            embeds.push(e.clone());
        }
    }
    let b = c.batch(&rows, None);
    let ids = Tensor::<CpuBackend, 2, Int>::from_data(
        TensorData::new(b.input_ids.clone(), [b.batch, b.seq_len]),
        &device,
    );
    let mask = Tensor::<CpuBackend, 2, Int>::from_data(
        TensorData::new(b.attention_mask.clone(), [b.batch, b.seq_len]),
        &device,
    );
    let logits =
        cap.model
            .teacher_forced_logits(Tensor::cat(embeds, 0), ids.clone(), Some(mask.clone()));
    // Labels from the attention mask alone: every non-padding token after [DEC] is scored.
    let labels = ids.mask_fill(mask.equal_elem(0), -100);
    let (sum, count) = pipe_blip::loss::summed_loss(logits, labels, 0.0);
    let loss: f32 = (sum / count).into_scalar();
    let m = json(&out.join("metrics.json"));
    let ours = m["test_loss"].as_f64().expect("loss");
    assert!((ours - f64::from(loss)).abs() < 1e-4, "{ours} vs {loss}");

    // Smaller batches: the same token-weighted mean; a model param: no loss plot.
    let (out2, r) = run(
        s,
        &format!(
            "{PARAMS}\nbatch_size = 2\nmodel = \"{}\"",
            s.model.display()
        ),
        &[("collate", "collate", &s.collate)],
    );
    r.expect("runs with a model param");
    let m2 = json(&out2.join("metrics.json"));
    let small = m2["test_loss"].as_f64().expect("loss");
    assert!((small - ours).abs() < 1e-4, "{small} vs {ours}");
    assert!(!out2.join("train_vs_val_loss.png").exists());
    assert_eq!(
        std::fs::read_to_string(out2.join("predictions.jsonl")).expect("p2"),
        std::fs::read_to_string(out.join("predictions.jsonl")).expect("p1"),
        "batching changes no caption"
    );
}

#[test]
fn report_is_worst_first_and_escaped() {
    let Some((_, out, _)) = train_run() else {
        return;
    };
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(!html.contains("<script>"), "unescaped markup");
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; dog"));
    let cider: Vec<f64> = html
        .split("data-cider=\"")
        .skip(1)
        .map(|s| s.split('"').next().expect("value").parse().expect("f64"))
        .collect();
    let preds = pipe_metrics::read_predictions(&out.join("predictions.jsonl")).expect("preds");
    assert_eq!(cider.len(), preds.len());
    let head = &cider[..cider.len().min(10)];
    assert!(head.windows(2).all(|w| w[0] <= w[1]), "{cider:?}");
    let min = cider.iter().copied().fold(f64::INFINITY, f64::min);
    assert_eq!(cider[0], min);
    let thumbs = std::fs::read_dir(out.join("report"))
        .expect("report dir")
        .count();
    assert_eq!(thumbs, preds.len());
}

#[test]
fn the_report_tables_the_metrics_and_inlines_the_loss_plot() {
    let Some((_, out, _)) = train_run() else {
        return;
    };
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    let m = json(&out.join("metrics.json"));
    assert!(
        html.contains("<table class=\"m\" id=\"metrics\">"),
        "{html}"
    );
    // Every metric of metrics.json in its cell, as metrics.md shows it (four decimals).
    let cell = |metric: &str, protocol: &str, v: f64| {
        format!("<td data-metric=\"{metric}\" data-protocol=\"{protocol}\">{v:.4}</td>")
    };
    for k in ["BLEU-1", "BLEU-4", "ROUGE-L", "CIDEr"] {
        let multi = m[k].as_f64().expect(k);
        assert!(
            html.contains(&cell(k, "multi", multi)),
            "{k} {multi}: {html}"
        );
        let single = m["single_ref"][k].as_f64().expect(k);
        assert!(
            html.contains(&cell(k, "single", single)),
            "{k} single {single}"
        );
    }
    let loss = m["test_loss"].as_f64().expect("loss");
    assert!(html.contains(&cell("Test loss", "multi", loss)));
    let md = std::fs::read_to_string(out.join("metrics.md")).expect("md");
    assert_eq!(
        html.matches("<tr><th scope=\"row\">").count(),
        md.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| Metric"))
            .count(),
        "the same rows as metrics.md"
    );
    // The loss plot inline: the drawing itself, with the learning rate's axis.
    let figure = html
        .split("<figure class=\"loss\" id=\"loss-plot\">")
        .nth(1)
        .expect("the loss plot's figure");
    let svg = &figure[..figure.find("</figure>").expect("closed")];
    assert!(svg.trim_start().starts_with("<svg"), "{svg}");
    assert!(
        svg.contains("<polyline") && svg.contains("learning rate"),
        "{svg}"
    );
    assert!(
        !html.contains("<img src=\"train_vs_val_loss"),
        "inline, not a file"
    );
}

/// The report in headless Chromium: the metrics table, the inline plot and every thumbnail
/// render; the screenshot goes to `target/report-e2e.png` (or `$PIPE_REPORT_SCREENSHOT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_in_chromium() {
    let out = tokio::task::spawn_blocking(|| train_run().map(|(_, out, _)| out.to_path_buf()))
        .await
        .expect("evaluate");
    let Some(out) = out else {
        return;
    };
    let Some((chromium, chromedriver)) = pipe_test_support::browser::binaries() else {
        return;
    };
    let m = json(&out.join("metrics.json"));
    let images = test_ids(setup().expect("set up")).len();
    let page = format!(
        "file://{}",
        out.join("report.html")
            .canonicalize()
            .expect("report")
            .display()
    );
    let driver = pipe_test_support::browser::start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let client =
        pipe_test_support::browser::session(&driver, &chromium, profile.path(), (1100, 1400)).await;

    let result = async {
        use fantoccini::Locator;
        client.goto(&page).await?;
        let title = client.title().await?;
        assert_eq!(title, "Evaluation on the test split");
        let rows = client
            .find_all(Locator::Css("table#metrics tbody tr"))
            .await?;
        assert!(rows.len() >= 7, "{} metric rows", rows.len());
        let cider = client
            .find(Locator::Css(
                "td[data-metric=\"CIDEr\"][data-protocol=\"multi\"]",
            ))
            .await?
            .text()
            .await?;
        assert_eq!(cider, format!("{:.4}", m["CIDEr"].as_f64().expect("CIDEr")));
        // The plot is laid out at a readable size, and its text is drawn.
        let size = client
            .execute(
                "const r = document.querySelector('#loss-plot svg').getBoundingClientRect(); \
                 return [r.width, r.height];",
                vec![],
            )
            .await?;
        let (w, h) = (
            size[0].as_f64().unwrap_or(0.0),
            size[1].as_f64().unwrap_or(0.0),
        );
        assert!(w > 500.0 && h > 300.0, "the plot is {w}×{h}");
        let axis = client
            .find(Locator::XPath(
                "//*[local-name()='svg']//*[local-name()='text'][contains(., 'learning rate')]",
            ))
            .await?;
        assert!(axis.is_displayed().await?);
        // Every thumbnail loaded.
        let loaded = client
            .execute(
                "const imgs = Array.from(document.querySelectorAll('.img img')); \
                 return [imgs.length, imgs.filter(i => i.complete && i.naturalWidth > 0).length];",
                vec![],
            )
            .await?;
        assert_eq!(loaded[0].as_u64(), Some(images as u64));
        assert_eq!(
            loaded[1].as_u64(),
            Some(images as u64),
            "a thumbnail failed to load"
        );

        let png = client.screenshot().await?;
        let shot = image::load_from_memory(&png).expect("the screenshot decodes");
        assert!(
            shot.width() >= 800 && shot.height() >= 800,
            "{}×{}",
            shot.width(),
            shot.height()
        );
        let colours: std::collections::HashSet<[u8; 3]> =
            shot.to_rgb8().pixels().map(|p| p.0).collect();
        assert!(
            colours.len() > 50,
            "a blank page? {} colours",
            colours.len()
        );
        let path =
            pipe_test_support::browser::screenshot_path("PIPE_REPORT_SCREENSHOT", "report-e2e.png");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot dir");
        }
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    let _ = client.close().await;
    drop(driver);
    result.expect("browser steps");
}

fn param_error((_, r): (PathBuf, Result<Outcome, StageError>)) -> Vec<String> {
    let e = r.expect_err("should fail");
    match e.downcast_ref::<EvaluateError>() {
        Some(EvaluateError::Params(p)) => p.path.clone(),
        _ => match e.downcast_ref::<ParamError>() {
            Some(p) => p.path.clone(),
            None => panic!("not a parameter error: {e}"),
        },
    }
}

#[test]
fn dep_and_param_errors_name_their_keys() {
    let Some(s) = setup() else {
        return;
    };
    assert_eq!(
        param_error(run(s, PARAMS, &[("train", "train", &s.train)])),
        ["collate"]
    );
    assert_eq!(
        param_error(run(
            s,
            &format!("{PARAMS}\ncollate = \"nope\""),
            &[
                ("collate", "collate", &s.collate),
                ("train", "train", &s.train)
            ]
        )),
        ["collate"]
    );
    assert_eq!(
        param_error(run(s, PARAMS, &[("collate", "collate", &s.collate)])),
        ["model"]
    );
    assert_eq!(
        param_error(run(
            s,
            PARAMS,
            &[
                ("collate", "collate", &s.collate),
                ("a", "train", &s.train),
                ("b", "train", &s.train)
            ]
        )),
        ["train"]
    );
    assert_eq!(
        param_error(run(
            s,
            &format!("{PARAMS}\ntrain = \"collate\""),
            &[("collate", "collate", &s.collate), ("t", "train", &s.train)]
        )),
        ["train"]
    );
    let check = |t: &str| {
        Evaluate
            .check(&toml::from_str(t).expect("toml"))
            .expect_err("rejected")
            .path
    };
    assert_eq!(check("num_beams = 0"), ["num_beams"]);
    assert_eq!(check("split = \"holdout\""), ["split"]);
    assert_eq!(check("meteor = \"java\""), ["meteor"]);
    assert_eq!(check("beams = 3"), ["beams"]);
}
