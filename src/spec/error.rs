//! Validation errors of pipeline.toml: each names where (file:line:col, or the command-line
//! flag it came from) and which key, with a "did you mean" where one is close.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// `pipeline.toml:12:1` or `--set train.lr=...`.
    pub at: String,
    /// Dotted key path, e.g. `stages.train.lr`; empty for document-level problems.
    pub key: String,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.at)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read pipeline file {path}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The problems found, and how many more were found beyond those listed.
    #[error("{}", render(.0, *.1))]
    Invalid(Vec<Diagnostic>, usize),
}

impl SpecError {
    /// The problems found, the first [`crate::spec::MAX_PROBLEMS`] of them listed.
    pub fn invalid(diagnostics: Vec<Diagnostic>, more: usize) -> Self {
        Self::Invalid(diagnostics, more)
    }

    /// One problem.
    pub fn one(diagnostic: Diagnostic) -> Self {
        Self::Invalid(vec![diagnostic], 0)
    }
}

fn render(diagnostics: &[Diagnostic], more: usize) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    if lines.len() == 1 && more == 0 {
        return lines.join("");
    }
    let mut text = format!(
        "{} problems in the pipeline:\n  {}",
        lines.len() + more,
        lines.join("\n  ")
    );
    if more > 0 {
        text.push_str(&format!("\n  … and {more} more"));
    }
    text
}

/// "did you mean `x`?" when one candidate is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}
