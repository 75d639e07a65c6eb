//! Train/val/test: the split names, the fractions a dataset without official lists is cut by,
//! and the cut itself — a hash of the image id and a seed, so it is decided per image (never
//! per caption row), stable when images are added, and the same on every machine.

use std::fmt;

use pipe_stage_api::ParamError;
use serde::{Deserialize, Serialize};

/// One of the three splits. `dev` (Flickr8k) and `validation` (Hugging Face) map to `val`,
/// Karpathy's `restval` to `train`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// Parse a split name as datasets write it (case-insensitive).
    pub fn parse(name: &str) -> Option<Split> {
        match name.trim().to_ascii_lowercase().as_str() {
            "train" | "training" | "restval" => Some(Split::Train),
            "val" | "valid" | "validation" | "dev" => Some(Split::Val),
            "test" | "testing" => Some(Split::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `split = { train = 0.8, val = 0.1, test = 0.1 }`: the share of images per split when the
/// dataset has no split of its own. Shares may sum to less than 1 (the rest is left out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitFractions {
    pub train: f64,
    pub val: f64,
    pub test: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        Self {
            train: 0.8,
            val: 0.1,
            test: 0.1,
        }
    }
}

impl SplitFractions {
    pub fn check(&self) -> Result<(), ParamError> {
        for (name, v) in [
            ("train", self.train),
            ("val", self.val),
            ("test", self.test),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ParamError::new(
                    ["split", name],
                    format!("split fraction must be within 0..=1, got {v}"),
                ));
            }
        }
        let sum = self.train + self.val + self.test;
        if sum > 1.0 + 1e-9 {
            return Err(ParamError::new(
                ["split"],
                format!("split fractions sum to {sum}, more than 1"),
            ));
        }
        if self.train <= 0.0 {
            return Err(ParamError::new(
                ["split", "train"],
                "the train fraction must be above 0",
            ));
        }
        Ok(())
    }

    /// The share of a split.
    pub fn get(&self, split: Split) -> f64 {
        match split {
            Split::Train => self.train,
            Split::Val => self.val,
            Split::Test => self.test,
        }
    }
}

/// The split of an image by a hash of its id and the seed; `None` when the fractions sum to
/// less than 1 and the image falls in the remainder.
pub fn hash_split(image_id: &str, seed: u64, fractions: &SplitFractions) -> Option<Split> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"pipe-split-v1\0");
    hasher.update(&seed.to_le_bytes());
    hasher.update(image_id.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    // 53 random bits → a uniform f64 in [0, 1).
    let x = (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    let mut edge = 0.0;
    for split in Split::ALL {
        edge += fractions.get(split);
        if x < edge {
            return Some(split);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_split_follows_fractions() {
        let f = SplitFractions::default();
        let mut counts = [0usize; 3];
        for i in 0..10_000 {
            let s = hash_split(&format!("img{i}.jpg"), 7, &f).expect("fractions sum to 1");
            counts[s as usize] += 1;
        }
        assert!((7700..8300).contains(&counts[0]), "{counts:?}");
        assert!((800..1200).contains(&counts[1]), "{counts:?}");
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn names_parse() {
        assert_eq!(Split::parse("dev"), Some(Split::Val));
        assert_eq!(Split::parse("restval"), Some(Split::Train));
        assert_eq!(Split::parse("Validation"), Some(Split::Val));
        assert_eq!(Split::parse("holdout"), None);
    }
}
