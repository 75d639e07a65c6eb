//! The embedded dataset: a deterministic generator of captioned images that a tiny captioning
//! model can learn on a CPU in minutes. Each image is a plain background (white, black or gray,
//! with a little noise) holding one shape (circle, square, triangle or cross; one of six
//! colours; small or large; in one of nine positions) or two shapes side by side or one above
//! the other. Each image gets five captions phrased differently, like five human captions.
//!
//! Image `i` depends only on (`seed`, `i`), so a larger `images = N` keeps the first images.
//! The PNGs are written into the artifact (`images/000000.png`, ...).

use std::path::Path;

use image::{ExtendedColorType, ImageEncoder, RgbImage};
use pipe_stage_api::ParamError;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::listing::{Listing, SplitSource};
use pipe_data::prep::PrepError;
use pipe_data::prep::split::SplitFractions;

/// `dataset = "synthetic"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SyntheticParams {
    /// How many images to generate.
    #[serde(default = "default_images")]
    pub images: usize,
    #[serde(default)]
    pub seed: u64,
    /// Side of the square images, in pixels.
    #[serde(default = "default_size")]
    pub size: u32,
    #[serde(default)]
    pub split: SplitFractions,
    /// How captions are phrased.
    #[serde(default)]
    pub style: Style,
}

/// The phrasing of the synthetic captions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Style {
    /// Five sentences per image, phrased differently ("a small red circle in the center").
    #[default]
    Descriptive,
    /// One terse, list-like caption per image ("white background , red circle , center"):
    /// the same content in another style, for adapting a model to a new phrasing.
    Terse,
}

fn default_images() -> usize {
    500
}

fn default_size() -> u32 {
    64
}

impl SyntheticParams {
    pub fn check(&self) -> Result<(), ParamError> {
        if !(1..=1_000_000).contains(&self.images) {
            return Err(ParamError::new(
                ["images"],
                format!("images must be within 1..=1000000, got {}", self.images),
            ));
        }
        if !(16..=1024).contains(&self.size) {
            return Err(ParamError::new(
                ["size"],
                format!("size must be within 16..=1024, got {}", self.size),
            ));
        }
        self.split.check()
    }

    /// Generate the images into `out_dir/images` and list them with their captions.
    pub fn generate(&self, out_dir: &Path) -> Result<Listing, PrepError> {
        let dir = out_dir.join("images");
        std::fs::create_dir_all(&dir).map_err(|source| PrepError::Write {
            path: dir.clone(),
            source,
        })?;
        let made: Vec<(String, Vec<String>)> = (0..self.images)
            .into_par_iter()
            .map(|i| {
                let scene = Scene::random(self.seed, i as u64);
                let img = scene.render(self.size, self.seed, i as u64);
                let id = format!("{i:06}.png");
                let mut png = Vec::new();
                image::codecs::png::PngEncoder::new(&mut png)
                    .write_image(
                        img.as_raw(),
                        img.width(),
                        img.height(),
                        ExtendedColorType::Rgb8,
                    )
                    .map_err(|source| PrepError::Encode {
                        image: id.clone(),
                        source,
                    })?;
                let path = dir.join(&id);
                std::fs::write(&path, png).map_err(|source| PrepError::Write { path, source })?;
                Ok((id, scene.captions(self.style)))
            })
            .collect::<Result<_, PrepError>>()?;
        let source = SplitSource::Hash {
            seed: self.seed,
            fractions: self.split,
        };
        let mut listing = Listing::new("synthetic", dir, source);
        let here = Path::new("synthetic");
        for (id, captions) in made {
            for c in captions {
                listing.add(here, 0, &id, &c, None);
            }
        }
        Ok(listing)
    }
}

/// "a orange" → "an orange".
fn with_articles(caption: &str) -> String {
    let words: Vec<&str> = caption.split(' ').collect();
    let mut out = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let next_vowel = words
            .get(i + 1)
            .and_then(|n| n.chars().next())
            .is_some_and(|c| "aeiou".contains(c));
        out.push(if *w == "a" && next_vowel { "an" } else { w });
    }
    out.join(" ")
}

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, index: u64, stream: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"pipe-synthetic-v1\0");
        h.update(stream);
        h.update(&seed.to_le_bytes());
        h.update(&index.to_le_bytes());
        let mut b = [0u8; 8];
        b.copy_from_slice(&h.finalize().as_bytes()[..8]);
        Rng(u64::from_le_bytes(b))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

const BACKGROUNDS: [(&str, [u8; 3]); 3] = [
    ("white", [245, 245, 245]),
    ("black", [18, 18, 18]),
    ("gray", [128, 128, 128]),
];
const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [215, 35, 35]),
    ("green", [40, 165, 60]),
    ("blue", [35, 75, 215]),
    ("yellow", [240, 215, 35]),
    ("purple", [140, 50, 175]),
    ("orange", [245, 135, 25]),
];
const SHAPES: [&str; 4] = ["circle", "square", "triangle", "cross"];
/// 3×3 grid positions, row-major from the top left: (short name, phrase).
const POSITIONS: [&str; 9] = [
    "in the top left corner",
    "at the top",
    "in the top right corner",
    "on the left",
    "in the center",
    "on the right",
    "in the bottom left corner",
    "at the bottom",
    "in the bottom right corner",
];

#[derive(Debug, Clone, Copy)]
struct Shape {
    kind: usize,
    colour: usize,
    large: bool,
    /// Centre, in units of the image side.
    cx: f32,
    cy: f32,
}

impl Shape {
    fn half(&self) -> f32 {
        if self.large { 0.15 } else { 0.085 }
    }

    fn size_word(&self, alt: bool) -> &'static str {
        match (self.large, alt) {
            (true, false) => "large",
            (true, true) => "big",
            (false, false) => "small",
            (false, true) => "little",
        }
    }

    fn name(&self) -> String {
        format!("{} {}", COLOURS[self.colour].0, SHAPES[self.kind])
    }

    /// Whether the point (x, y), in image-side units, is inside.
    fn contains(&self, x: f32, y: f32) -> bool {
        let r = self.half();
        let (dx, dy) = (x - self.cx, y - self.cy);
        match self.kind {
            0 => dx * dx + dy * dy <= r * r,
            1 => dx.abs() <= r * 0.88 && dy.abs() <= r * 0.88,
            2 => dy >= -r && dy <= r && dx.abs() <= (dy + r) * 0.5 * 1.1,
            _ => (dx.abs() <= r && dy.abs() <= r * 0.33) || (dy.abs() <= r && dx.abs() <= r * 0.33),
        }
    }
}

#[derive(Debug, Clone)]
enum Layout {
    One {
        position: usize,
    },
    /// Two shapes: the first left of (or above) the second.
    Two {
        vertical: bool,
    },
}

#[derive(Debug, Clone)]
struct Scene {
    background: usize,
    shapes: Vec<Shape>,
    layout: Layout,
}

impl Scene {
    fn random(seed: u64, index: u64) -> Scene {
        let mut rng = Rng::new(seed, index, b"scene");
        let background = rng.below(BACKGROUNDS.len());
        let shape = |rng: &mut Rng| Shape {
            kind: rng.below(SHAPES.len()),
            colour: rng.below(COLOURS.len()),
            large: rng.below(2) == 0,
            cx: 0.5,
            cy: 0.5,
        };
        if rng.below(10) < 7 {
            let position = rng.below(9);
            let mut s = shape(&mut rng);
            let (col, row) = ((position % 3) as f32, (position / 3) as f32);
            let spread = 0.5 - s.half() - 0.02; // keep the shape inside the image
            s.cx = 0.5 + (col - 1.0) * spread + rng.range(-0.03, 0.03);
            s.cy = 0.5 + (row - 1.0) * spread + rng.range(-0.03, 0.03);
            Scene {
                background,
                shapes: vec![s],
                layout: Layout::One { position },
            }
        } else {
            let vertical = rng.below(2) == 0;
            let mut a = shape(&mut rng);
            let mut b = shape(&mut rng);
            while b.kind == a.kind && b.colour == a.colour {
                b.colour = rng.below(COLOURS.len());
            }
            let across = rng.range(0.35, 0.65);
            let (pa, pb) = (0.27 + rng.range(-0.03, 0.03), 0.73 + rng.range(-0.03, 0.03));
            if vertical {
                (a.cx, a.cy, b.cx, b.cy) = (across, pa, across, pb);
            } else {
                (a.cx, a.cy, b.cx, b.cy) = (pa, across, pb, across);
            }
            Scene {
                background,
                shapes: vec![a, b],
                layout: Layout::Two { vertical },
            }
        }
    }

    fn captions(&self, style: Style) -> Vec<String> {
        match style {
            Style::Descriptive => self.phrasings().iter().map(|c| with_articles(c)).collect(),
            Style::Terse => vec![self.terse()],
        }
    }

    /// "white background , red circle , top left" / "gray background , red circle above blue
    /// square".
    fn terse(&self) -> String {
        let bg = BACKGROUNDS[self.background].0;
        match (&self.layout, self.shapes.as_slice()) {
            (Layout::One { position }, [s]) => {
                let place = POSITIONS[*position]
                    .split(' ')
                    .filter(|w| !matches!(*w, "in" | "at" | "on" | "the" | "corner"))
                    .collect::<Vec<_>>()
                    .join(" ");
                format!("{bg} background , {} , {place}", s.name())
            }
            (Layout::Two { vertical }, [a, b]) => {
                let rel = if *vertical { "above" } else { "left of" };
                format!("{bg} background , {} {rel} {}", a.name(), b.name())
            }
            _ => String::new(),
        }
    }

    fn phrasings(&self) -> Vec<String> {
        let bg = BACKGROUNDS[self.background].0;
        match (&self.layout, self.shapes.as_slice()) {
            (Layout::One { position }, [s]) => {
                let (colour, kind, pos) =
                    (COLOURS[s.colour].0, SHAPES[s.kind], POSITIONS[*position]);
                vec![
                    format!("a {} {colour} {kind} {pos}", s.size_word(false)),
                    format!("a {colour} {kind} on a {bg} background"),
                    format!("there is a {} {colour} {kind} {pos}", s.size_word(true)),
                    format!("a {bg} picture with a {colour} {kind} {pos}"),
                    format!("a {} {kind} in {colour} on {bg}", s.size_word(true)),
                ]
            }
            (Layout::Two { vertical }, [a, b]) => {
                let (before, after) = if *vertical {
                    ("above", "below")
                } else {
                    ("to the left of", "to the right of")
                };
                vec![
                    format!("a {} and a {} on a {bg} background", a.name(), b.name()),
                    format!("a {} {before} a {}", a.name(), b.name()),
                    format!("a {} {after} a {}", b.name(), a.name()),
                    format!(
                        "two shapes , a {} {} and a {} {}",
                        a.size_word(false),
                        a.name(),
                        b.size_word(false),
                        b.name()
                    ),
                    format!("a {bg} picture with a {} and a {}", a.name(), b.name()),
                ]
            }
            _ => Vec::new(),
        }
    }

    /// Draw with 2×2 supersampling and a little per-pixel noise.
    fn render(&self, size: u32, seed: u64, index: u64) -> RgbImage {
        let mut rng = Rng::new(seed, index, b"pixels");
        let base = BACKGROUNDS[self.background].1;
        let shift = rng.range(-12.0, 12.0);
        let bg = base.map(|c| (f32::from(c) + shift).clamp(0.0, 255.0));
        let mut img = RgbImage::new(size, size);
        let side = size as f32;
        for (x, y, px) in img.enumerate_pixels_mut() {
            let mut acc = [0.0f32; 3];
            for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let (u, v) = ((x as f32 + sx) / side, (y as f32 + sy) / side);
                let colour = self
                    .shapes
                    .iter()
                    .rev()
                    .find(|s| s.contains(u, v))
                    .map(|s| COLOURS[s.colour].1.map(f32::from))
                    .unwrap_or(bg);
                for c in 0..3 {
                    acc[c] += colour[c] * 0.25;
                }
            }
            let noise = rng.range(-6.0, 6.0);
            *px = image::Rgb(acc.map(|c| (c + noise).round().clamp(0.0, 255.0) as u8));
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terse_captions_keep_the_content_in_another_style() {
        let one = Scene {
            background: 0,
            shapes: vec![Shape {
                kind: 0,
                colour: 0,
                large: false,
                cx: 0.2,
                cy: 0.2,
            }],
            layout: Layout::One { position: 0 },
        };
        assert_eq!(one.terse(), "white background , red circle , top left");
        let two = Scene {
            background: 2,
            shapes: vec![
                one.shapes[0],
                Shape {
                    kind: 1,
                    colour: 2,
                    ..one.shapes[0]
                },
            ],
            layout: Layout::Two { vertical: true },
        };
        assert_eq!(
            two.terse(),
            "gray background , red circle above blue square"
        );
    }

    #[test]
    fn scenes_are_deterministic_and_captioned() {
        for i in 0..50 {
            let a = Scene::random(3, i);
            let b = Scene::random(3, i);
            assert_eq!(
                a.captions(Style::Descriptive),
                b.captions(Style::Descriptive)
            );
            assert_eq!(a.captions(Style::Descriptive).len(), 5);
            assert_eq!(a.captions(Style::Terse).len(), 1);
            assert_eq!(a.render(32, 3, i), b.render(32, 3, i));
        }
        assert_ne!(
            Scene::random(3, 0).captions(Style::Descriptive),
            Scene::random(4, 0).captions(Style::Descriptive)
        );
        assert_eq!(
            with_articles("a orange circle and a red square"),
            "an orange circle and a red square"
        );
    }
}
