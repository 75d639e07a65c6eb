//! Word interning and n-gram counting shared by BLEU and CIDEr.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::tokenize::py_split;

/// An n-gram of interned words (unused positions are `u32::MAX`).
pub(crate) type Ngram = [u32; 4];

/// A small, fast hasher for integer keys (FxHash's multiply-rotate).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `HashMap` with [`FxHasher`].
pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Maps words to dense ids.
#[derive(Debug, Default)]
pub(crate) struct Vocab {
    ids: HashMap<String, u32>,
}

impl Vocab {
    /// Splits like Python's `str.split()` and interns the words.
    pub(crate) fn words(&mut self, s: &str) -> Vec<u32> {
        py_split(s)
            .map(|w| {
                if let Some(&id) = self.ids.get(w) {
                    return id;
                }
                let id = u32::try_from(self.ids.len()).unwrap_or(u32::MAX - 1);
                self.ids.insert(w.to_string(), id);
                id
            })
            .collect()
    }
}

/// Counts of all 1..=`n`-grams of `words` (pycocoevalcap's `precook`),
/// sorted by n-gram.
pub(crate) fn count_ngrams(words: &[u32], n: usize) -> Vec<(Ngram, u32)> {
    let mut all: Vec<Ngram> = Vec::with_capacity(words.len() * n);
    for k in 1..=n.min(4) {
        for w in words.windows(k) {
            let mut g = [u32::MAX; 4];
            g[..k].copy_from_slice(w);
            all.push(g);
        }
    }
    all.sort_unstable();
    let mut out: Vec<(Ngram, u32)> = Vec::with_capacity(all.len());
    for g in all {
        match out.last_mut() {
            Some((last, c)) if *last == g => *c += 1,
            _ => out.push((g, 1)),
        }
    }
    out
}

/// The order (1-based) of an n-gram.
pub(crate) fn order(g: &Ngram) -> usize {
    g.iter().take_while(|&&w| w != u32::MAX).count()
}
