//! Running the official `meteor-1.5.jar` the way pycocoevalcap does:
//! `java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm` in the jar's
//! directory, one `SCORE ||| ref ||| … ||| hyp` line per segment (answered
//! with its statistics), then one `EVAL ||| stats ||| …` line (answered with
//! one score per segment and the corpus score).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::error::MetricsError;

/// A running METEOR jar; reusable for several batches (loading its
/// paraphrase table takes seconds).
pub struct MeteorJar {
    jar: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
}

impl std::fmt::Debug for MeteorJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeteorJar").field("jar", &self.jar).finish()
    }
}

impl MeteorJar {
    /// Starts `java` on the jar.
    pub fn start(jar: &Path) -> Result<Self, MetricsError> {
        let dir = jar.parent().unwrap_or_else(|| Path::new("."));
        let mut child = Command::new("java")
            .args(["-jar", "-Xmx2G"])
            .arg(jar)
            .args(["-", "-", "-stdio", "-l", "en", "-norm"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| MetricsError::Meteor {
                jar: jar.to_path_buf(),
                message: format!("cannot start java: {e}"),
            })?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(MetricsError::Meteor {
                jar: jar.to_path_buf(),
                message: "no pipes to the java process".into(),
            });
        };
        // Drain stderr so the child never blocks on it.
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        tracing::debug!(jar = %jar.display(), "started the METEOR jar");
        Ok(Self {
            jar: jar.to_path_buf(),
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            stderr: Some(stderr),
        })
    }

    fn error(&mut self, message: String) -> MetricsError {
        // On failure, say what the jar printed.
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let message = if stderr.trim().is_empty() {
            message
        } else {
            let lines: Vec<&str> = stderr.lines().collect();
            format!(
                "{message}; stderr: {}",
                lines[lines.len().saturating_sub(5)..].join(" | ")
            )
        };
        MetricsError::Meteor {
            jar: self.jar.clone(),
            message,
        }
    }

    fn write(&mut self, line: &str) -> Result<(), MetricsError> {
        let res = match self.stdin.as_mut() {
            Some(s) => s.write_all(line.as_bytes()).and_then(|()| s.flush()),
            None => Err(std::io::Error::other("stdin closed")),
        };
        res.map_err(|e| self.error(format!("writing to the jar: {e}")))
    }

    fn read_line(&mut self, what: &str) -> Result<String, MetricsError> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err(self.error(format!("the jar exited before answering ({what})"))),
            Ok(_) => Ok(line.trim().to_string()),
            Err(e) => Err(self.error(format!("reading {what}: {e}"))),
        }
    }

    fn read_f64(&mut self, what: &str) -> Result<f64, MetricsError> {
        let s = self.read_line(what)?;
        s.parse::<f64>()
            .map_err(|e| self.error(format!("bad {what} score {s:?}: {e}")))
    }

    /// Scores PTB-tokenized (hypothesis, references) pairs: the corpus score
    /// and one score per pair, as pycocoevalcap's `Meteor.compute_score`.
    pub fn score(&mut self, pairs: &[(&str, &[String])]) -> Result<(f64, Vec<f64>), MetricsError> {
        let mut eval = String::from("EVAL");
        for (hyp, refs) in pairs {
            let hyp = hyp.replace("|||", "").replace("  ", " ");
            self.write(&format!("SCORE ||| {} ||| {}\n", refs.join(" ||| "), hyp))?;
            let stats = self.read_line("SCORE")?;
            eval.push_str(" ||| ");
            eval.push_str(&stats);
        }
        eval.push('\n');
        self.write(&eval)?;
        let mut scores = Vec::with_capacity(pairs.len());
        for _ in pairs {
            scores.push(self.read_f64("segment")?);
        }
        let total = self.read_f64("corpus")?;
        Ok((total, scores))
    }
}

impl Drop for MeteorJar {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
