//! PTB tokenization exactly as coco-caption (pycocoevalcap) applies it.
//!
//! pycocoevalcap's `PTBTokenizer.tokenize` joins all captions with `\n`
//! (after replacing newlines inside a caption by spaces), runs
//! `java edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase` from
//! Stanford CoreNLP 3.4.1 over that text, and drops the tokens
//! `'' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;` from each output
//! line. This module reimplements that pipeline natively:
//!
//! * [`rules`] is a transcription of CoreNLP 3.4.1's `PTBLexer.flex`; the
//!   lexer here applies it with JFlex semantics (longest match, earliest rule
//!   on ties, trailing context, push-back), so contractions (`don't` →
//!   `do n't`, `it's` → `it 's`, `cannot` → `can not`), quotes (`"` → `` `` ``
//!   or `''`), brackets (`(` → `-LRB-`), hyphenated words (kept whole),
//!   numbers (`3.5`, `1/2`), abbreviations (`etc.`, `mr.`) and non-ASCII text
//!   come out as the Java tokenizer writes them.
//! * Tokens are lower-cased *after* normalisation, so brackets become
//!   `-lrb-`/`-rrb-`/`-lsb-`/... which the (upper-case) punctuation list does
//!   not remove: pycocoevalcap keeps them, and so do we.
//! * Characters outside the Basic Multilingual Plane (emoji) are
//!   "untokenizable" for the JFlex 1.4 lexer and deleted.
//! * The lexer sees the next caption through the newline, as the Java one
//!   does (it changes e.g. whether `a.` at the end of a caption stays one
//!   token when the next caption starts with `A `); [`tokenize_stream`] keeps
//!   that context, [`tokenize`] treats its caption as the last line.
//!
//! Deliberate deviation: Java also breaks lines at `\r`, U+2028, U+2029,
//! U+000B and U+000C, which makes pycocoevalcap silently misalign every
//! following caption with its image. We treat those characters as spaces.

mod jflex_classes;
mod rules;

use std::sync::OnceLock;

use regex_automata::hybrid::dfa::{Cache, DFA, OverlappingState};
use regex_automata::{Anchored, Input, MatchKind};

use crate::error::MetricsError;
use rules::{Action, Rule};

/// How much following text (bytes) the lexer gets to see past a caption.
const LOOKAHEAD: usize = 64;

/// Tokens that pycocoevalcap removes after tokenization.
pub const PUNCTUATIONS: [&str; 17] = [
    "''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
    "...", ";",
];

/// Whitespace as Python's `str.split()` / `str.rstrip()` understand it.
pub(crate) fn is_py_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n'
            | '\x0B'
            | '\x0C'
            | '\r'
            | '\x1C'..='\x1F'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// Python's `str.split()` (no argument): runs of whitespace separate words.
pub(crate) fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|w| !w.is_empty())
}

/// A compiled PTB lexer. Build once (see [`PtbTokenizer::global`]) and reuse.
pub struct PtbTokenizer {
    dfa: DFA,
    rules: Vec<Rule>,
    /// For rules with trailing context: full-match regexes for head and tail.
    splits: Vec<Option<(regex::Regex, regex::Regex)>>,
}

impl std::fmt::Debug for PtbTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtbTokenizer")
            .field("rules", &self.rules.len())
            .finish()
    }
}

static GLOBAL: OnceLock<Result<PtbTokenizer, String>> = OnceLock::new();

impl PtbTokenizer {
    /// Compiles the lexer rules.
    pub fn new() -> Result<Self, MetricsError> {
        let rules = rules::rules();
        let patterns: Vec<String> = rules
            .iter()
            .map(|r| match &r.trail {
                Some(t) => format!("(?:{})(?:{})", r.pattern, t),
                None => r.pattern.clone(),
            })
            .collect();
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .cache_capacity(8 * 1024 * 1024),
            )
            .build_many(&patterns)
            .map_err(|e| MetricsError::Tokenizer(e.to_string()))?;
        let mut splits = Vec::with_capacity(rules.len());
        for r in &rules {
            splits.push(match &r.trail {
                Some(t) => {
                    let head = regex::Regex::new(&format!("^(?:{})$", r.pattern))
                        .map_err(|e| MetricsError::Tokenizer(e.to_string()))?;
                    let tail = regex::Regex::new(&format!("^(?:{t})$"))
                        .map_err(|e| MetricsError::Tokenizer(e.to_string()))?;
                    Some((head, tail))
                }
                None => None,
            });
        }
        Ok(Self { dfa, rules, splits })
    }

    /// The process-wide tokenizer (compiled on first use).
    pub fn global() -> Result<&'static PtbTokenizer, MetricsError> {
        GLOBAL
            .get_or_init(|| PtbTokenizer::new().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| MetricsError::Tokenizer(e.clone()))
    }

    /// Tokenizes one caption as pycocoevalcap would if it were the last
    /// caption of its batch.
    pub fn tokenize(&self, caption: &str) -> Result<String, MetricsError> {
        let mut cache = self.dfa.create_cache();
        self.tokenize_with(&mut cache, caption, None)
    }

    /// Tokenizes a batch of captions the way one pycocoevalcap
    /// `PTBTokenizer.tokenize` call does (one Java run over the captions
    /// joined by newlines, in this order).
    pub fn tokenize_stream<S: AsRef<str>>(
        &self,
        captions: &[S],
    ) -> Result<Vec<String>, MetricsError> {
        let mut cache = self.dfa.create_cache();
        let cleaned: Vec<String> = captions.iter().map(|c| clean(c.as_ref())).collect();
        let mut out = Vec::with_capacity(cleaned.len());
        for (i, c) in cleaned.iter().enumerate() {
            // The lexer's trailing contexts can look through the newline into
            // the following captions (through blank ones, too): give it enough.
            let mut parts: Vec<&str> = Vec::new();
            let mut seen = 0;
            for following in cleaned.iter().skip(i + 1) {
                parts.push(following);
                seen += following.trim().len();
                if seen >= LOOKAHEAD {
                    break;
                }
            }
            let next = (!parts.is_empty()).then(|| parts.join("\n"));
            out.push(self.tokenize_cleaned(&mut cache, c, next.as_deref())?);
        }
        Ok(out)
    }

    fn tokenize_with(
        &self,
        cache: &mut Cache,
        caption: &str,
        next: Option<&str>,
    ) -> Result<String, MetricsError> {
        let c = clean(caption);
        let n = next.map(clean);
        self.tokenize_cleaned(cache, &c, n.as_deref())
    }

    fn tokenize_cleaned(
        &self,
        cache: &mut Cache,
        caption: &str,
        next: Option<&str>,
    ) -> Result<String, MetricsError> {
        let tokens = match next {
            Some(n) => {
                let hay = format!("{caption}\n{n}");
                match self.lex(cache, &hay, caption.len())? {
                    Some(t) => t,
                    // A token ran across the line break (only SGML with a
                    // quoted attribute can): lex the caption on its own.
                    None => self.lex(cache, caption, caption.len())?.unwrap_or_default(),
                }
            }
            None => self.lex(cache, caption, caption.len())?.unwrap_or_default(),
        };
        Ok(finish_line(&tokens))
    }

    /// Lexes `hay[..limit]` (with `hay[limit..]` visible as lookahead).
    /// Returns `None` if a token would extend past `limit`.
    fn lex(
        &self,
        cache: &mut Cache,
        hay: &str,
        limit: usize,
    ) -> Result<Option<Vec<String>>, MetricsError> {
        let mut tokens = Vec::new();
        let mut pos = 0usize;
        while pos < limit {
            let (rule_idx, end) = self.longest_match(cache, hay, pos)?;
            let rule = &self.rules[rule_idx];
            // The token proper (without trailing context).
            let tok_end = match &self.splits[rule_idx] {
                Some((head, tail)) => split_point(hay, pos, end, head, tail).unwrap_or(end),
                None => end,
            };
            let text = &hay[pos..tok_end];
            let (token, consumed) = apply(rule.action, text);
            let consumed = consumed.max(1).min(text.len().max(1));
            // Advance by whole chars.
            let mut next_pos = pos + consumed;
            while !hay.is_char_boundary(next_pos) {
                next_pos += 1;
            }
            if token.is_some() && next_pos > limit {
                return Ok(None);
            }
            if let Some(t) = token {
                tokens.push(t);
            }
            pos = next_pos;
        }
        Ok(Some(tokens))
    }

    /// The longest match at `pos` over all rules; ties go to the earliest rule.
    fn longest_match(
        &self,
        cache: &mut Cache,
        hay: &str,
        pos: usize,
    ) -> Result<(usize, usize), MetricsError> {
        let input = Input::new(hay).range(pos..).anchored(Anchored::Yes);
        let mut state = OverlappingState::start();
        let mut best: Option<(usize, usize)> = None; // (rule, end)
        loop {
            self.dfa
                .try_search_overlapping_fwd(cache, &input, &mut state)
                .map_err(|e| MetricsError::Tokenizer(e.to_string()))?;
            let Some(hm) = state.get_match() else { break };
            let (p, e) = (hm.pattern().as_usize(), hm.offset());
            if e == pos {
                continue;
            }
            best = match best {
                None => Some((p, e)),
                Some((bp, be)) if e > be || (e == be && p < bp) => Some((p, e)),
                keep => keep,
            };
        }
        match best {
            Some(b) => Ok(b),
            // Only a bare '\n' can fail every rule; it is a line break.
            None => {
                let len = hay[pos..].chars().next().map_or(1, char::len_utf8);
                Ok((self.rules.len() - 2, pos + len))
            }
        }
    }
}

/// Where the head `r1` of a trailing-context match `r1/r2` ends: the longest
/// head such that the rest is matched by the tail.
fn split_point(
    hay: &str,
    start: usize,
    end: usize,
    head: &regex::Regex,
    tail: &regex::Regex,
) -> Option<usize> {
    let mut p = end;
    while p > start {
        p -= 1;
        while p > start && !hay.is_char_boundary(p) {
            p -= 1;
        }
        if p > start && head.is_match(&hay[start..p]) && tail.is_match(&hay[p..end]) {
            return Some(p);
        }
    }
    None
}

/// pycocoevalcap replaces `\n` inside captions by a space; we do the same for
/// the other characters Java treats as line breaks (see the module docs).
fn clean(caption: &str) -> String {
    caption
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '\u{2028}' | '\u{2029}' | '\x0B' | '\x0C' => ' ',
            c => c,
        })
        .collect()
}

/// Java lower-cases each token, joins with spaces; Python strips the line and
/// drops the punctuation tokens.
fn finish_line(tokens: &[String]) -> String {
    let line: Vec<String> = tokens.iter().map(|t| java_lowercase(t)).collect();
    let line = line.join(" ");
    let line = line.trim_end_matches(is_py_space);
    line.split(' ')
        .filter(|w| !PUNCTUATIONS.contains(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Java's `String.toLowerCase(Locale.ENGLISH)`. It differs from Rust's
/// `to_lowercase` only for capital sigma: Java writes final `ς` when a cased
/// letter precedes and none follows *within the same word* of its (legacy)
/// word break iterator, where words run through letters, digits, marks, `_`
/// and the mid-word characters dashes, soft hyphen, `'`, `"`, `.`, U+2027,
/// but not through CJK ideographs or kana.
fn java_lowercase(token: &str) -> String {
    if !token.contains('\u{3A3}') {
        return token.to_lowercase();
    }
    let chars: Vec<char> = token.chars().collect();
    let in_word = |c: char| {
        (c.is_alphanumeric() && !is_cjk(c))
            || is_mark(c)
            || matches!(
                c,
                '_' | '-' | '\u{AD}' | '\'' | '"' | '.' | '\u{2027}' | '\u{2010}'..='\u{2015}'
            )
    };
    let cased = |c: char| c.is_lowercase() || c.is_uppercase();
    let mut out = String::with_capacity(token.len());
    for (i, &c) in chars.iter().enumerate() {
        if c != '\u{3A3}' {
            out.extend(c.to_lowercase());
            continue;
        }
        let before = chars[..i]
            .iter()
            .rev()
            .take_while(|&&d| in_word(d))
            .any(|&d| cased(d));
        let after = chars[i + 1..]
            .iter()
            .take_while(|&&d| in_word(d))
            .any(|&d| cased(d));
        out.push(if before && !after {
            '\u{3C2}'
        } else {
            '\u{3C3}'
        });
    }
    out
}

/// Combining marks in the common blocks.
fn is_mark(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Ideographs and kana, which Java's word iterator treats as separate words.
fn is_cjk(c: char) -> bool {
    matches!(c, '\u{3040}'..='\u{30FF}' | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}')
}

/// Applies a rule's action: the token produced (if any) and how many bytes
/// of `text` were consumed.
fn apply(action: Action, text: &str) -> (Option<String>, usize) {
    let all = text.len();
    let prefix_bytes = |n: usize| text.char_indices().nth(n).map_or(all, |(i, _)| i);
    match action {
        Action::Text => (Some(text.to_string()), all),
        Action::Prefix(n) => {
            let b = prefix_bytes(n);
            (Some(text[..b].to_string()), b)
        }
        Action::SpaceToNbsp => (Some(text.replace(' ', "\u{A0}")), all),
        Action::Phone => (
            Some(
                text.replace(' ', "\u{A0}")
                    .replace('(', "-LRB-")
                    .replace(')', "-RRB-"),
            ),
            all,
        ),
        Action::Parens => (Some(text.replace('(', "-LRB-").replace(')', "-RRB-")), all),
        Action::MDash => (Some("--".to_string()), all),
        Action::NormAmp => (Some(normalize_amp(text)), all),
        Action::SoftHyphen => (Some(remove_soft_hyphens(text)), all),
        Action::Quotes(left) => (Some(latex_quotes(text, left)), all),
        Action::Fraction => (
            Some(
                text.replace('\u{BC}', "1/4")
                    .replace('\u{BD}', "1/2")
                    .replace('\u{BE}', "3/4")
                    .replace('\u{2153}', "1/3")
                    .replace('\u{2154}', "2/3"),
            ),
            all,
        ),
        Action::Currency => (
            Some(
                text.replace('\u{A2}', "cents")
                    .replace('\u{A3}', "#")
                    .replace(['\u{80}', '\u{A4}', '\u{20A0}', '\u{20AC}'], "$"),
            ),
            all,
        ),
        Action::Acronym => {
            let t = text.trim_end_matches([' ', '\t', '\n', '\x0B', '\x0C', '\r', '\u{85}']);
            if t.chars().count() == 2 {
                let b = prefix_bytes(1);
                (Some(text[..b].to_string()), b)
            } else {
                // Token with the period, and the period again next time.
                let last = t.char_indices().last().map_or(0, |(i, _)| i);
                (Some(t.to_string()), last)
            }
        }
        Action::StripSpace => {
            let t = text.trim_end_matches([' ', '\t', '\n', '\x0B', '\x0C', '\r', '\u{85}']);
            (Some(t.to_string()), t.len())
        }
        Action::ReLexLast => {
            let last = text.char_indices().last().map_or(0, |(i, _)| i);
            (Some(text.to_string()), last)
        }
        Action::Fixed(s) => (Some(s.to_string()), all),
        Action::Hyphens => {
            let n = text.chars().count();
            if (3..=4).contains(&n) {
                (Some("--".to_string()), all)
            } else {
                (Some(text.to_string()), all)
            }
        }
        Action::Ellipsis => (Some("...".to_string()), all),
        Action::Skip => (None, all),
        Action::Newline => (None, all),
    }
}

fn remove_soft_hyphens(s: &str) -> String {
    if !s.contains('\u{AD}') {
        return s.to_string();
    }
    let out: String = s.chars().filter(|&c| c != '\u{AD}').collect();
    if out.is_empty() { "-".to_string() } else { out }
}

/// Java `(?i:&amp;)` → `&`.
fn normalize_amp(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    if !lower.contains("&amp;") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if lower[i..].starts_with("&amp;") {
            out.push('&');
            i += 5;
        } else {
            let c = s[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// PTBLexer's `latexQuotes`.
fn latex_quotes(s: &str, probably_left: bool) -> String {
    let s = if probably_left {
        s.replace("&apos;", "`")
            .replace('\'', "`")
            .replace("&quot;", "``")
            .replace('"', "``")
    } else {
        s.replace("&apos;", "'")
            .replace("&quot;", "''")
            .replace('"', "''")
    };
    s.replace(['\u{91}', '\u{2018}', '\u{201B}', '\u{2039}'], "`")
        .replace(['\u{92}', '\u{2019}', '\u{203A}'], "'")
        .replace(['\u{93}', '\u{201C}', '\u{AB}'], "``")
        .replace(['\u{94}', '\u{201D}', '\u{BB}'], "''")
}

/// Tokenizes one caption (as the last line of a pycocoevalcap batch).
pub fn tokenize(caption: &str) -> Result<String, MetricsError> {
    PtbTokenizer::global()?.tokenize(caption)
}

/// Tokenizes captions as one pycocoevalcap batch (see
/// [`PtbTokenizer::tokenize_stream`]).
pub fn tokenize_stream<S: AsRef<str>>(captions: &[S]) -> Result<Vec<String>, MetricsError> {
    PtbTokenizer::global()?.tokenize_stream(captions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caseless_expands_literals_only() {
        assert_eq!(rules::caseless("ab[cd]\\p{L}"), "[aA][bB][cd]\\p{L}");
    }

    #[test]
    fn java_sigma_rules() {
        for (input, want) in [
            ("a-Σ", "a-ς"),
            ("ΣΑΣ10KM", "σασ10km"),
            ("ΣΑΣ1懱", "σας1懱"),
            ("Σ", "σ"),
            ("aΣ.b", "aσ.b"),
            ("aΣ5", "aς5"),
            ("aΣ5b", "aσ5b"),
            ("5Σ", "5σ"),
            ("aΣ:b", "aς:b"),
            ("aΣ_b", "aσ_b"),
        ] {
            assert_eq!(java_lowercase(input), want, "{input}");
        }
    }

    #[test]
    fn basic_sentences() {
        let t = PtbTokenizer::new().expect("compiles");
        let got = t
            .tokenize_stream(&[
                "A dog (brown) runs, don't it? I cannot.",
                "\"Hello\" world--it's 3.5 m. e-mail U.S. co-ed",
                "",
                "étude Ça 😀x [a] {b} etc.",
                "The end a.",
                "A dog ",
            ])
            .expect("tokenizes");
        assert_eq!(
            got,
            vec![
                "a dog -lrb- brown -rrb- runs do n't it i can not",
                "hello world it 's 3.5 m. e-mail u.s. co-ed",
                "",
                "étude ça x -lsb- a -rsb- -lcb- b -rcb- etc.",
                "the end a",
                "a dog",
            ]
        );
    }
}
