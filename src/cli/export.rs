//! `pipe export STAGE DIR`: the stage's current artifact as plain files; for a model (an
//! artifact with `model/config.json`), also a model card and the evaluation's decoding settings
//! in `model/generation_config.json`.

use std::fmt::Write as _;
use std::path::Path;

use pipe::cache::{Artifact, Cache, short};
use pipe::export::{self, ExportError, Exported};
use pipe::plan::{Planner, StageStatus, State};
use pipe::spec::{Spec, StageSpec};

use super::{CliError, Exit};

pub fn run(spec: &Spec, stage: &str, dir: &Path, json: bool) -> Result<Exit, CliError> {
    pipe::dag::check_stage(spec, stage)?;
    let cache = Cache::for_reading(&spec.cache_dir);
    let planner = Planner::new(spec, &cache);
    let statuses = planner.status();
    planner.finish();
    let status = statuses.iter().find(|s| s.name == stage);
    let Some(artifact) = status
        .filter(|s| s.state == State::Fresh)
        .and_then(|s| s.artifact.as_ref())
    else {
        let state = status.map_or("missing", |s| s.state.as_str());
        return Err(CliError::Usage(format!(
            "stage `{stage}` is {state}: nothing to export (run `pipe run {stage}`, or `pipe pull {stage}`)"
        )));
    };
    let card = artifact.out().join("model/config.json").is_file();
    let evaluation = card
        .then(|| evaluation_of(spec, &statuses, stage))
        .flatten();
    let done = export::export(artifact, dir, |staging| {
        if card {
            let text = model_card(spec, stage, artifact, evaluation.as_ref());
            write(&staging.join("README.md"), text.as_bytes())?;
            if let Some(e) = &evaluation {
                decoding_into(&staging.join("model/generation_config.json"), e)?;
            }
        }
        Ok(())
    })?;
    report(stage, dir, artifact, done, card, json);
    Ok(Exit::Ok)
}

fn report(stage: &str, dir: &Path, artifact: &Artifact, done: Exported, card: bool, json: bool) {
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "stage": stage,
                "key": artifact.manifest.key,
                "dir": dir,
                "files": done.files,
                "bytes": done.bytes,
                "model_card": card,
            })
        );
    } else {
        outln!(
            "exported {stage} ({}) to {}: {} files, {}{}",
            short(&artifact.manifest.key),
            dir.display(),
            done.files,
            pipe::disk::human_bytes(done.bytes),
            if card {
                ", with a model card (README.md)"
            } else {
                ""
            }
        );
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    std::fs::write(path, bytes).map_err(|source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The first fresh stage that reads `stage` and scored it (its artifact has `metrics.md`).
struct Evaluation<'a> {
    spec: &'a StageSpec,
    artifact: &'a Artifact,
}

fn evaluation_of<'a>(
    spec: &'a Spec,
    statuses: &'a [StageStatus],
    stage: &str,
) -> Option<Evaluation<'a>> {
    spec.stages
        .iter()
        .filter(|s| s.deps.iter().any(|d| d == stage))
        .find_map(|s| {
            let st = statuses.iter().find(|st| st.name == s.name)?;
            let artifact = st.artifact.as_ref().filter(|_| st.state == State::Fresh)?;
            artifact
                .out()
                .join("metrics.md")
                .is_file()
                .then_some(Evaluation { spec: s, artifact })
        })
}

/// Set the evaluation's `num_beams` and `max_new_tokens` in generation_config.json, so
/// `model.generate(**inputs)` decodes as the reported metrics were decoded.
fn decoding_into(path: &Path, e: &Evaluation<'_>) -> Result<(), ExportError> {
    let mut config = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Map<_, _>>(&b).ok())
        .unwrap_or_default();
    for key in ["num_beams", "max_new_tokens"] {
        if let Some(v) = e.spec.params.get(key).and_then(toml::Value::as_integer) {
            config.insert(key.into(), v.into());
        }
    }
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    write(path, text.as_bytes())
}

/// `README.md` for a model export: what it was fine-tuned from, on what, how (the stages'
/// tables, enough to rerun it), its training and evaluation numbers, and how to load it.
fn model_card(
    spec: &Spec,
    stage: &str,
    artifact: &Artifact,
    evaluation: Option<&Evaluation<'_>>,
) -> String {
    let base = spec
        .stage(stage)
        .and_then(|s| s.params.get("model"))
        .and_then(toml::Value::as_str)
        .unwrap_or("");
    let hub_id = pipe_hub::HubId::parse(base).is_some() && !spec.dir.join(base).is_dir();
    let adapter = artifact.out().join("adapter/adapter_config.json").is_file();
    let mut card = String::from("---\n");
    if hub_id {
        let _ = writeln!(card, "base_model: {base}");
    }
    card.push_str("pipeline_tag: image-to-text\nlibrary_name: transformers\ntags:\n- image-captioning\n- blip\n");
    if adapter {
        card.push_str("- lora\n- peft\n");
    }
    card.push_str("- pipe\n---\n\n");
    let _ = writeln!(card, "# {} · {stage}\n", spec.name);
    let _ = writeln!(
        card,
        "Image captioner fine-tuned from `{base}` by the `{stage}` stage of the pipeline `{}` \
         (pipe {}, artifact key `{}`).\n",
        spec.name, artifact.manifest.pipe_version, artifact.manifest.key
    );

    card.push_str("## Training\n\n");
    let metrics = &artifact.manifest.metrics;
    for (key, label) in [
        ("best_val_loss", "best validation loss"),
        ("epochs", "epochs run"),
        ("stopped_early", "stopped early"),
        ("trainable_params", "trainable parameters"),
        ("total_params", "parameters in all"),
    ] {
        if let Some(v) = metrics.get(key) {
            let shown = match v.as_f64() {
                Some(x) if v.is_f64() => super::output::significant(x),
                _ => v.to_string(),
            };
            let _ = writeln!(card, "- {label}: {shown}");
        }
    }
    card.push_str(
        "\nThe recipe: the stage and every stage it reads, as in `pipeline.toml` (run it again \
         with `pipe run`):\n\n```toml\n",
    );
    let wanted = pipe::dag::select(spec, &[stage.to_string()]).unwrap_or_default();
    let _ = writeln!(
        card,
        "[pipeline]\nname = {:?}\nseed = {}",
        spec.name, spec.seed
    );
    for s in spec.stages.iter().filter(|s| wanted.contains(&s.name)) {
        let mut table = toml::Table::new();
        table.insert("kind".into(), s.kind.name().into());
        if !s.deps.is_empty() {
            table.insert(
                "deps".into(),
                toml::Value::Array(s.deps.iter().map(|d| d.as_str().into()).collect()),
            );
        }
        table.extend(s.params.clone());
        let mut outer = toml::Table::new();
        let mut stages = toml::Table::new();
        stages.insert(s.name.clone(), table.into());
        outer.insert("stages".into(), stages.into());
        let _ = write!(card, "\n{}", toml::to_string(&outer).unwrap_or_default());
    }
    card.push_str("```\n\n");

    match evaluation {
        Some(e) => {
            let _ = writeln!(card, "## Evaluation (stage `{}`)\n", e.spec.name);
            let md = std::fs::read_to_string(e.artifact.out().join("metrics.md")).unwrap_or_default();
            for line in md.lines() {
                // Below the card's own section.
                if line.starts_with('#') {
                    card.push_str("##");
                }
                card.push_str(line);
                card.push('\n');
            }
            card.push('\n');
        }
        None => card.push_str(
            "## Evaluation\n\nNo fresh evaluation of this model was found when it was exported.\n\n",
        ),
    }

    card.push_str("## Use\n\n```python\nfrom PIL import Image\nfrom transformers import BlipForConditionalGeneration, BlipProcessor\n\n");
    card.push_str("processor = BlipProcessor.from_pretrained(\"model\")\nmodel = BlipForConditionalGeneration.from_pretrained(\"model\")\n");
    card.push_str("inputs = processor(images=Image.open(\"photo.jpg\").convert(\"RGB\"), return_tensors=\"pt\")\n");
    card.push_str(
        "print(processor.decode(model.generate(**inputs)[0], skip_special_tokens=True))\n```\n\n",
    );
    if adapter {
        let _ = writeln!(
            card,
            "`adapter/` holds the LoRA weights alone, in PEFT's format, for the base model \
             (`PeftModel.from_pretrained(base, \"adapter\")`); `model/` has them merged.\n"
        );
    }
    card.push_str("Or with pipe: `pipe caption --model model photo.jpg`.\n");
    card
}
