//! The `infer` stage on the tiny fixture, and preprocessing parity: the probe PNGs through the
//! collate stage's preprocessing give transformers' greedy tokens.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use pipe_blip::{Captioner, GenerationConfig};
use pipe_data::collate::{PreprocessorConfig, preprocess_file};
use pipe_infer::Infer;
use pipe_stage_api::{BackendChoice, Silent, StageContext, StageKind};
use pipe_test_support::reference_fixture;

type Cpu = pipe_backend::CpuBackend;

#[test]
fn probe_pngs_through_our_preprocessing_give_the_reference_greedy_tokens() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let device = Default::default();
    let captioner = Captioner::<Cpu>::load(&dir, &device).expect("load");
    let pre = PreprocessorConfig::from_file(&dir.join("preprocessor_config.json")).expect("pre");
    let mut pixels = Vec::new();
    for i in 0..4 {
        pixels.extend(
            preprocess_file(&dir.join(format!("reference/images/probe{i}.png")), &pre)
                .expect("png"),
        );
    }
    let s = captioner.image_size();
    let pixels = Tensor::<Cpu, 4>::from_data(TensorData::new(pixels, [4, 3, s, s]), &device);
    let g = GenerationConfig {
        max_new_tokens: 12,
        ..Default::default()
    };
    let got: Vec<Vec<u32>> = captioner
        .caption(pixels, &g)
        .expect("caption")
        .into_iter()
        .map(|c| c.tokens)
        .collect();
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("reference/reference.json")).expect("json"),
    )
    .expect("parse");
    let want: Vec<Vec<u32>> =
        serde_json::from_value(reference["greedy_max_new_tokens_12"].clone()).expect("ids");
    assert_eq!(got, want);
}

fn run_stage(
    pipeline_dir: &Path,
    out: &Path,
    params: &str,
) -> Result<pipe_stage_api::Outcome, String> {
    let params: toml::Table = toml::from_str(params).expect("toml");
    Infer.check(&params).map_err(|e| e.to_string())?;
    let work = tempfile::tempdir().expect("work");
    let deps = BTreeMap::new();
    let ctx = StageContext {
        stage: "infer",
        pipeline_dir,
        out_dir: out,
        work_dir: work.path(),
        deps: &deps,
        params: &params,
        seed: 0,
        backend: BackendChoice::Cpu,
        devices: &[],
        progress: &Silent,
    };
    Infer.run(&ctx).map_err(|e| e.to_string())
}

#[test]
fn infer_writes_jsonl_csv_and_gallery() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let root = tempfile::tempdir().expect("root");
    let photos = root.path().join("photos");
    std::fs::create_dir(&photos).expect("mkdir");
    for i in 0..3 {
        std::fs::copy(
            dir.join(format!("reference/images/probe{i}.png")),
            photos.join(format!("p{i}.png")),
        )
        .expect("cp");
    }
    std::fs::write(photos.join("notes.txt"), "not an image").expect("txt");
    let out = root.path().join("out");
    std::fs::create_dir(&out).expect("out");
    let params = format!(
        "model = {:?}\nimages = \"photos\"\nnum_beams = 2\nmax_new_tokens = 5\nbatch_size = 2\ngallery = 2",
        dir.display().to_string()
    );
    let inputs = Infer
        .inputs(&toml::from_str(&params).expect("toml"), root.path())
        .expect("inputs");
    assert!(inputs.contains(&photos), "{inputs:?}");
    let outcome = run_stage(root.path(), &out, &params).expect("run");
    assert_eq!(outcome.metrics["images"], 3);

    let jsonl = std::fs::read_to_string(out.join("captions.jsonl")).expect("jsonl");
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["image"], "photos/p0.png");
    assert!(!lines[0]["caption"].as_str().expect("caption").is_empty());
    let csv = std::fs::read_to_string(out.join("captions.csv")).expect("csv");
    assert!(csv.starts_with("image,caption\nphotos/p0.png,"), "{csv}");
    let html = std::fs::read_to_string(out.join("gallery.html")).expect("html");
    assert_eq!(html.matches("<figure>").count(), 2);
    assert!(out.join("gallery/00001.png").is_file());

    // A glob works too.
    let out2 = root.path().join("out2");
    std::fs::create_dir(&out2).expect("out2");
    let params = format!(
        "model = {:?}\nimages = \"photos/p1*.png\"\nnum_beams = 1\nmax_new_tokens = 3",
        dir.display().to_string()
    );
    let outcome = run_stage(root.path(), &out2, &params).expect("glob run");
    assert_eq!(outcome.metrics["images"], 1);
}

#[test]
fn a_corrupt_image_is_named() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let root = tempfile::tempdir().expect("root");
    std::fs::create_dir(root.path().join("photos")).expect("mkdir");
    std::fs::write(
        root.path().join("photos/broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .expect("write");
    let out = root.path().join("out");
    std::fs::create_dir(&out).expect("out");
    let params = format!(
        "model = {:?}\nimages = \"photos\"",
        dir.display().to_string()
    );
    let e = run_stage(root.path(), &out, &params).expect_err("corrupt");
    assert!(e.contains("broken.png"), "{e}");
}

#[test]
fn no_model_and_no_images_are_clear() {
    let root = tempfile::tempdir().expect("root");
    let out = root.path().join("out");
    std::fs::create_dir(&out).expect("out");
    let e = run_stage(root.path(), &out, "images = \"nothing/*.jpg\"").expect_err("no images");
    assert!(e.contains("matches no image"), "{e}");
}
