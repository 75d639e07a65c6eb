//! Selecting stages (a target and its ancestors) and drawing the graph.

use std::collections::BTreeSet;

use crate::spec::{Spec, did_you_mean};

#[derive(Debug, thiserror::Error)]
#[error("no stage named `{name}` in {file}{}", .help.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct UnknownStage {
    pub name: String,
    pub file: String,
    pub help: Option<String>,
}

pub fn check_stage(spec: &Spec, name: &str) -> Result<(), UnknownStage> {
    if spec.stage(name).is_some() {
        return Ok(());
    }
    Err(UnknownStage {
        name: name.to_string(),
        file: spec.file.display().to_string(),
        help: did_you_mean(name, spec.stage_names()),
    })
}

/// The named stages and all their ancestors (every stage when none is named).
pub fn select(spec: &Spec, targets: &[String]) -> Result<BTreeSet<String>, UnknownStage> {
    if targets.is_empty() {
        return Ok(spec.stage_names().map(str::to_string).collect());
    }
    let mut selected = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for t in targets {
        check_stage(spec, t)?;
        todo.push(t.clone());
    }
    while let Some(name) = todo.pop() {
        if selected.insert(name.clone())
            && let Some(stage) = spec.stage(&name)
        {
            todo.extend(stage.deps.iter().cloned());
        }
    }
    Ok(selected)
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Mermaid,
    Dot,
}

pub fn render(spec: &Spec, format: Format) -> String {
    let mut out = String::new();
    match format {
        Format::Text => {
            let width = spec.stage_names().map(str::len).max().unwrap_or(0);
            for s in &spec.stages {
                let deps = if s.deps.is_empty() {
                    String::new()
                } else {
                    format!("  ← {}", s.deps.join(", "))
                };
                out.push_str(&format!("{:width$}  [{}]{deps}\n", s.name, s.kind.name()));
            }
        }
        Format::Mermaid => {
            out.push_str("graph TD\n");
            for s in &spec.stages {
                out.push_str(&format!(
                    "  {}[\"{} ({})\"]\n",
                    mermaid_id(&s.name),
                    s.name,
                    s.kind.name()
                ));
            }
            for s in &spec.stages {
                for d in &s.deps {
                    out.push_str(&format!(
                        "  {} --> {}\n",
                        mermaid_id(d),
                        mermaid_id(&s.name)
                    ));
                }
            }
        }
        Format::Dot => {
            out.push_str("digraph pipeline {\n  rankdir=LR;\n");
            for s in &spec.stages {
                out.push_str(&format!(
                    "  \"{}\" [label=\"{}\\n({})\"];\n",
                    s.name,
                    s.name,
                    s.kind.name()
                ));
            }
            for s in &spec.stages {
                for d in &s.deps {
                    out.push_str(&format!("  \"{d}\" -> \"{}\";\n", s.name));
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

fn mermaid_id(name: &str) -> String {
    name.replace('-', "_")
}
