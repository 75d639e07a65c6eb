//! A native approximation of METEOR 1.5 (English): exact and Snowball-stem
//! matching, METEOR's weighted precision/recall with function-word
//! discounting, fragmentation penalty, best reference per segment and
//! corpus score from the summed statistics, as the jar aggregates them.
//! Missing compared to the jar: WordNet synonyms, the paraphrase table and
//! the exact alignment search (a greedy, chunk-extending alignment is used).

use rust_stemmers::{Algorithm, Stemmer};

/// METEOR 1.5 English parameters.
const ALPHA: f64 = 0.85;
const BETA: f64 = 0.2;
const GAMMA: f64 = 0.6;
const DELTA: f64 = 0.75;
/// Module weights: exact, stem.
const WEIGHTS: [f64; 2] = [1.0, 0.6];

/// Common English function words (determiners, pronouns, prepositions,
/// conjunctions, auxiliaries) and punctuation-like tokens, which METEOR
/// weighs by `1 - delta` instead of `delta`.
const FUNCTION_WORDS: &[&str] = &[
    "a", "an", "the", "this", "that", "these", "those", "of", "in", "on", "at", "to", "for",
    "with", "by", "from", "into", "over", "up", "out", "about", "after", "as", "and", "or", "but",
    "if", "than", "so", "no", "not", "is", "are", "was", "were", "be", "been", "has", "have",
    "had", "will", "would", "can", "could", "it", "its", "he", "she", "his", "her", "they",
    "their", "we", "you", "i", "who", "which", "what", "when", "there", "all", "some", "other",
    "also", "one", "two", "'s", "s", "'t", "-lrb-", "-rrb-", "$", "'",
];

/// Sufficient statistics of one segment (as METEOR's `MeteorStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    test_len: f64,
    ref_len: f64,
    test_func: f64,
    ref_func: f64,
    /// Per module: matched content / function words on each side.
    test_content: [f64; 2],
    test_function: [f64; 2],
    ref_content: [f64; 2],
    ref_function: [f64; 2],
    test_matches: f64,
    ref_matches: f64,
    chunks: f64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.test_len += o.test_len;
        self.ref_len += o.ref_len;
        self.test_func += o.test_func;
        self.ref_func += o.ref_func;
        for m in 0..2 {
            self.test_content[m] += o.test_content[m];
            self.test_function[m] += o.test_function[m];
            self.ref_content[m] += o.ref_content[m];
            self.ref_function[m] += o.ref_function[m];
        }
        self.test_matches += o.test_matches;
        self.ref_matches += o.ref_matches;
        // The jar adds no fragmentation for perfectly matched segments
        // (checked against its EVAL answers).
        if !o.is_perfect() {
            self.chunks += o.chunks;
        }
    }

    fn is_perfect(&self) -> bool {
        self.test_matches == self.test_len && self.ref_matches == self.ref_len && self.chunks == 1.0
    }

    /// METEOR's score from the statistics.
    pub fn score(&self) -> f64 {
        let mut tw = 0.0;
        let mut rw = 0.0;
        for (m, w) in WEIGHTS.iter().enumerate() {
            tw += w * (DELTA * self.test_content[m] + (1.0 - DELTA) * self.test_function[m]);
            rw += w * (DELTA * self.ref_content[m] + (1.0 - DELTA) * self.ref_function[m]);
        }
        let tl = DELTA * (self.test_len - self.test_func) + (1.0 - DELTA) * self.test_func;
        let rl = DELTA * (self.ref_len - self.ref_func) + (1.0 - DELTA) * self.ref_func;
        let p = if tl > 0.0 { tw / tl } else { 0.0 };
        let r = if rl > 0.0 { rw / rl } else { 0.0 };
        if p <= 0.0 || r <= 0.0 {
            return 0.0;
        }
        let fmean = p * r / (ALPHA * p + (1.0 - ALPHA) * r);
        let frag = if self.is_perfect() {
            0.0
        } else {
            self.chunks / ((self.test_matches + self.ref_matches) / 2.0)
        };
        let pen = GAMMA * frag.powf(BETA);
        fmean * (1.0 - pen)
    }
}

/// A reusable scorer (holds the stemmer).
pub struct Approx {
    stemmer: Stemmer,
}

impl std::fmt::Debug for Approx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Approx")
    }
}

impl Default for Approx {
    fn default() -> Self {
        Self::new()
    }
}

struct Words<'a> {
    words: Vec<&'a str>,
    stems: Vec<String>,
    function: Vec<bool>,
}

impl Approx {
    /// A scorer with the English Snowball stemmer.
    pub fn new() -> Self {
        Self {
            stemmer: Stemmer::create(Algorithm::English),
        }
    }

    fn words<'a>(&self, s: &'a str) -> Words<'a> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let stems = words
            .iter()
            .map(|w| self.stemmer.stem(w).into_owned())
            .collect();
        let function = words.iter().map(|w| FUNCTION_WORDS.contains(w)).collect();
        Words {
            words,
            stems,
            function,
        }
    }

    /// Statistics of the hypothesis against one reference.
    fn stats(&self, h: &Words<'_>, r: &Words<'_>) -> Stats {
        let mut h_align: Vec<Option<(usize, usize)>> = vec![None; h.words.len()];
        let mut r_used = vec![false; r.words.len()];
        for module in 0..2 {
            let eq = |i: usize, j: usize| {
                if module == 0 {
                    h.words[i] == r.words[j]
                } else {
                    h.stems[i] == r.stems[j]
                }
            };
            let mut last_j: Option<usize> = None;
            for (i, slot) in h_align.iter_mut().enumerate() {
                if let Some((j, _)) = *slot {
                    last_j = Some(j);
                    continue;
                }
                let want = last_j.map_or(0, |j| j + 1);
                let best = (0..r.words.len())
                    .filter(|&j| !r_used[j] && eq(i, j))
                    .min_by_key(|&j| (j != want, j.abs_diff(want)));
                if let Some(j) = best {
                    *slot = Some((j, module));
                    r_used[j] = true;
                    last_j = Some(j);
                }
            }
        }
        let mut s = Stats {
            test_len: h.words.len() as f64,
            ref_len: r.words.len() as f64,
            test_func: h.function.iter().filter(|&&f| f).count() as f64,
            ref_func: r.function.iter().filter(|&&f| f).count() as f64,
            ..Stats::default()
        };
        let mut prev: Option<usize> = None;
        for (i, a) in h_align.iter().enumerate() {
            match a {
                Some((j, m)) => {
                    if h.function[i] {
                        s.test_function[*m] += 1.0;
                    } else {
                        s.test_content[*m] += 1.0;
                    }
                    if r.function[*j] {
                        s.ref_function[*m] += 1.0;
                    } else {
                        s.ref_content[*m] += 1.0;
                    }
                    s.test_matches += 1.0;
                    s.ref_matches += 1.0;
                    if prev.is_none_or(|p| *j != p + 1) {
                        s.chunks += 1.0;
                    }
                    prev = Some(*j);
                }
                None => prev = None,
            }
        }
        s
    }

    /// Best-reference statistics of one hypothesis (METEOR's multi-reference
    /// rule: keep the reference with the highest score).
    pub fn segment(&self, hyp: &str, refs: &[String]) -> Stats {
        let h = self.words(hyp);
        let mut best: Option<(f64, Stats)> = None;
        for r in refs {
            let st = self.stats(&h, &self.words(r));
            let sc = st.score();
            if best.as_ref().is_none_or(|(b, _)| sc > *b) {
                best = Some((sc, st));
            }
        }
        best.map(|(_, s)| s).unwrap_or_default()
    }

    /// Corpus score (from summed statistics) and per-pair scores.
    pub fn score(&self, pairs: &[(&str, &[String])]) -> (f64, Vec<f64>) {
        let mut total = Stats::default();
        let mut per = Vec::with_capacity(pairs.len());
        for (hyp, refs) in pairs {
            let s = self.segment(hyp, refs);
            per.push(s.score());
            total.add(&s);
        }
        (total.score(), per)
    }
}
