//! Reads captions (one per line) from stdin and prints them PTB-tokenized the
//! way one pycocoevalcap `PTBTokenizer.tokenize` call would, one per line.
//! Used by `tests/golden/fuzz_tokenizer.py` to compare with the Java jar.
use std::io::{BufRead, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lines: Vec<String> = std::io::stdin().lock().lines().collect::<Result<_, _>>()?;
    let out = pipe_metrics::tokenize::tokenize_stream(&lines)?;
    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
    for l in out {
        writeln!(w, "{l}")?;
    }
    Ok(())
}
