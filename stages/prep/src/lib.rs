//! The `prep` stage kind: read a dataset, validate every image once, fix the split by image,
//! and write a normalised, self-describing artifact (its files: see
//! [`pipe_data::prep::artifact`]).
//!
//! ```toml
//! [stages.prep]
//! kind = "prep"
//! dataset = "flickr8k"          # flickr8k | karpathy | jsonl | csv | synthetic (the default)
//! root = "data/flickr8k"        # flickr8k: auto-detects the original or Kaggle layout
//! # captions = FILE, images = DIR, splits = DIR     (flickr8k, explicit)
//! # file = FILE, images = DIR                       (karpathy, jsonl, csv)
//! # image_column, caption_column, split_column      (jsonl, csv)
//! # images = 500, size = 64                         (synthetic)
//! # split = { train = 0.8, val = 0.1, test = 0.1 }, seed = 0   (datasets without a split)
//! # max_megapixels = 64         # larger images are skipped (a decompression-bomb guard)
//! ```
//!
//! The split seed is a parameter of its own (not `[pipeline] seed`): retraining with another
//! seed must not reshuffle which images are test images.

mod flickr8k;
mod karpathy;
mod listing;
mod paths;
mod synthetic;
mod table;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use pipe_stage_api::{
    Outcome, ParamError, SizeEstimate, StageContext, StageError, StageKind, Upstream, parse_params,
};
use rayon::prelude::*;

use pipe_data::images::{DEFAULT_MAX_MEGAPIXELS, DecodeLimits, has_image_extension, load_image};
use pipe_data::prep::{
    DatasetInfo, ImageRecord, ImagesBase, PrepError, Skipped, Split, SplitCounts, Summary,
    artifact, split,
};

use flickr8k::Flickr8kParams;
use karpathy::KarpathyParams;
use listing::{Listing, SplitSource};
use paths::DatasetRoot;
use synthetic::SyntheticParams;
use table::{TableFormat, TableParams};

/// The `prep` stage kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prep;

/// The parameters, by `dataset`.
#[derive(Debug, Clone)]
enum DatasetParams {
    Flickr8k(Flickr8kParams),
    Karpathy(KarpathyParams),
    Table(TableFormat, TableParams),
    Synthetic(SyntheticParams),
}

const DATASETS: &str = "flickr8k, karpathy, jsonl, csv, synthetic";

/// The decode limits, from `max_megapixels` (taken out of `rest`: every dataset accepts it).
fn decode_limits(rest: &mut toml::Table) -> Result<DecodeLimits, ParamError> {
    let megapixels = match rest.remove("max_megapixels") {
        None => DEFAULT_MAX_MEGAPIXELS,
        Some(toml::Value::Float(f)) => f,
        Some(toml::Value::Integer(i)) => i as f64,
        Some(other) => {
            return Err(ParamError::new(
                ["max_megapixels"],
                format!("expected a number, found {}", other.type_str()),
            ));
        }
    };
    // No more than a square at the side limit holds: every side is bounded anyway.
    let most = f64::from(DecodeLimits::default().max_side).powi(2) / 1e6;
    if !(megapixels > 0.0 && megapixels <= most) {
        return Err(ParamError::new(
            ["max_megapixels"],
            format!("max_megapixels must be above 0 and at most {most:.1}, got {megapixels}"),
        ));
    }
    Ok(DecodeLimits::with_megapixels(megapixels))
}

fn parse(params: &toml::Table) -> Result<(DatasetParams, DecodeLimits), ParamError> {
    let mut rest = params.clone();
    let limits = decode_limits(&mut rest)?;
    let dataset = match rest.remove("dataset") {
        None => "synthetic".to_string(),
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(ParamError::new(
                ["dataset"],
                format!("expected a string ({DATASETS}), found {}", other.type_str()),
            ));
        }
    };
    let parsed = match dataset.as_str() {
        "flickr8k" => DatasetParams::Flickr8k(parse_params(&rest)?),
        "karpathy" => DatasetParams::Karpathy(parse_params(&rest)?),
        "jsonl" => DatasetParams::Table(TableFormat::Jsonl, parse_params(&rest)?),
        "csv" => DatasetParams::Table(TableFormat::Csv, parse_params(&rest)?),
        "synthetic" => DatasetParams::Synthetic(parse_params(&rest)?),
        other => {
            return Err(ParamError::new(
                ["dataset"],
                format!("unknown dataset `{other}`; expected one of {DATASETS}"),
            ));
        }
    };
    match &parsed {
        DatasetParams::Flickr8k(p) => p.check()?,
        DatasetParams::Karpathy(p) => p.check()?,
        DatasetParams::Table(_, p) => p.check()?,
        DatasetParams::Synthetic(p) => p.check()?,
    }
    Ok((parsed, limits))
}

impl StageKind for Prep {
    fn name(&self) -> &'static str {
        "prep"
    }

    fn version(&self) -> u32 {
        // 2: dataset.json's images root is relative to the project, not absolute; images
        // above max_megapixels are skipped.
        2
    }

    fn about(&self) -> &'static str {
        "read a captioning dataset, validate its images, fix the split by image"
    }

    fn template(&self) -> Option<String> {
        use pipe_stage_api::params_template;
        let file = toml::from_str::<toml::Table>("file = \"FILE\"").ok()?;
        let none = toml::Table::new();
        let mut out = format!(
            "dataset = \"synthetic\"  # {DATASETS}\nmax_megapixels = {DEFAULT_MAX_MEGAPIXELS:?}  # a number: larger images are skipped before decoding\n"
        );
        out += &params_template::<synthetic::SyntheticParams>(&none).ok()?;
        let others = [
            (
                "flickr8k",
                params_template::<flickr8k::Flickr8kParams>(&none).ok()?,
            ),
            (
                "karpathy",
                params_template::<karpathy::KarpathyParams>(&file).ok()?,
            ),
            ("jsonl", params_template::<table::TableParams>(&file).ok()?),
        ];
        for (dataset, keys) in others {
            out += &format!(
                "\n# With dataset = \"{dataset}\"{}:\n",
                if dataset == "jsonl" {
                    " or \"csv\""
                } else {
                    ""
                }
            );
            for line in keys.lines() {
                out += &format!("# {}\n", line.trim_start_matches("# "));
            }
        }
        Some(out)
    }

    fn check(&self, params: &toml::Table) -> Result<(), ParamError> {
        parse(params).map(|_| ())
    }

    fn inputs(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
    ) -> Result<Vec<PathBuf>, ParamError> {
        Ok(match parse(params)?.0 {
            DatasetParams::Flickr8k(p) => {
                // A root that does not exist: say where the data comes from (pipe cannot
                // download it: the release is behind a form, Kaggle behind a login).
                if let Some(root) = p.root.as_ref().filter(|r| !pipeline_dir.join(r).exists()) {
                    return Err(ParamError::new(["root"], flickr8k::where_to_get(root)));
                }
                p.detect(pipeline_dir)?.inputs()
            }
            DatasetParams::Karpathy(p) => {
                let (file, images) = p.resolve(pipeline_dir);
                vec![file, images]
            }
            DatasetParams::Table(format, p) => {
                let (file, images) = p.resolve(format, pipeline_dir);
                if images == file.parent().unwrap_or(pipeline_dir) {
                    vec![images]
                } else {
                    vec![file, images]
                }
            }
            DatasetParams::Synthetic(_) => Vec::new(),
        })
    }

    fn estimate(
        &self,
        params: &toml::Table,
        pipeline_dir: &Path,
        _deps: &BTreeMap<String, Upstream>,
    ) -> Option<SizeEstimate> {
        if let DatasetParams::Synthetic(p) = parse(params).ok()?.0 {
            let png = u64::from(p.size).pow(2) * SYNTHETIC_PNG_PERCENT / 100;
            let what = "the listing and a PNG";
            return Some(SizeEstimate::per_image(
                p.images as u64,
                RECORD_BYTES + png,
                what,
            ));
        }
        // The images stay where they are: the artifact is the listing.
        let images = self
            .inputs(params, pipeline_dir)
            .ok()?
            .iter()
            .filter(|p| p.is_dir())
            .map(|dir| count_images(dir))
            .sum();
        Some(SizeEstimate::per_image(images, RECORD_BYTES, "the listing"))
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        Ok(run_with(
            ctx.params,
            ctx.pipeline_dir,
            ctx.out_dir,
            ctx.progress,
        )?)
    }
}

/// An image's record in the artifact, for size estimates: 410 B measured with five COCO-like
/// captions.
const RECORD_BYTES: u64 = 410;
/// A synthetic image's PNG, in percent of its side squared (measured on the quickstart's).
const SYNTHETIC_PNG_PERCENT: u64 = 188;

/// The image files under `dir` (for estimates: what is there, not what the captions name).
fn count_images(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && has_image_extension(e.path()))
        .count() as u64
}

/// The whole stage, callable without an orchestrator (tests, tools).
pub fn run(
    params: &toml::Table,
    pipeline_dir: &Path,
    out_dir: &Path,
) -> Result<Outcome, PrepError> {
    run_with(params, pipeline_dir, out_dir, &pipe_stage_api::Silent)
}

/// [`run`], reporting progress.
pub fn run_with(
    params: &toml::Table,
    pipeline_dir: &Path,
    out_dir: &Path,
    progress: &dyn pipe_stage_api::Progress,
) -> Result<Outcome, PrepError> {
    let (dataset, limits) = parse(params)?;
    let listing = match dataset {
        DatasetParams::Flickr8k(p) => p.read(pipeline_dir)?,
        DatasetParams::Karpathy(p) => p.read(pipeline_dir)?,
        DatasetParams::Table(format, p) => p.read(format, pipeline_dir)?,
        DatasetParams::Synthetic(p) => p.generate(out_dir)?,
    };
    build(listing, pipeline_dir, out_dir, &limits, progress)
}

/// Split, validate and write.
fn build(
    mut listing: Listing,
    pipeline_dir: &Path,
    out_dir: &Path,
    limits: &DecodeLimits,
    progress: &dyn pipe_stage_api::Progress,
) -> Result<Outcome, PrepError> {
    let split_source = assign_splits(&mut listing);
    listing.retain_or_skip(|e| {
        if e.captions.is_empty() {
            Err("no non-empty captions".to_string())
        } else {
            Ok(())
        }
    });
    let mut skipped = std::mem::take(&mut listing.skipped);
    // The listing's entries move into the records: one copy of the captions, not two.
    let entries = std::mem::take(&mut listing.entries);
    listing.index = HashMap::new();
    let mut records = validate_images(
        entries,
        &listing.images_root,
        limits,
        progress,
        &mut skipped,
    )?;
    let ours = matches!(listing.split_source, SplitSource::Hash { .. });
    let duplicates = keep_splits_disjoint(&mut records, &mut skipped, ours);
    let splits = count_splits(&records, &listing.split_source, &skipped)?;

    let (images_base, images_root) =
        ImagesBase::portable(&listing.images_root, pipeline_dir, out_dir);
    let info = DatasetInfo {
        format: artifact::FORMAT,
        dataset: listing.dataset.to_string(),
        images_root,
        images_base,
    };
    // Paths in the summary are shown as written, relative to the project when inside it:
    // the artifact must not depend on where the project lives.
    let shown = |p: &Path| pipe_stage_api::project_relative(p, pipeline_dir);
    for row in &mut listing.rows {
        row.file = shown(Path::new(&row.file));
    }
    let summary = Summary {
        splits: splits.clone(),
        skipped,
        cross_split_duplicates: duplicates,
        dataset: listing.dataset.to_string(),
        split_source,
        images_root: info.images_root.to_string_lossy().into_owned(),
        empty_captions_dropped: listing.empty_captions,
        rejected_rows: std::mem::take(&mut listing.rows),
        sources: listing.sources.iter().map(|p| shown(p)).collect(),
    };
    artifact::write(out_dir, &info, &records, &summary)?;
    tracing::info!(
        train = splits[&Split::Train].images,
        val = splits[&Split::Val].images,
        test = splits[&Split::Test].images,
        skipped = summary.skipped.len(),
        "prep done"
    );
    Ok(Outcome {
        metrics: metrics(&summary),
        results: vec![PathBuf::from("summary.json")],
    })
}

/// Give every entry a split: the dataset's own, else one hashed from the image id (entries
/// outside the fractions are skipped). Returns how the split was made, for the summary.
fn assign_splits(listing: &mut Listing) -> String {
    match &listing.split_source {
        SplitSource::Dataset(what) => what.clone(),
        SplitSource::Hash { seed, fractions } => {
            let (seed, fractions) = (*seed, *fractions);
            listing.retain_or_skip(|e| {
                if e.split.is_none() {
                    e.split = split::hash_split(&e.id, seed, &fractions);
                }
                e.split.map(|_| ()).ok_or_else(|| {
                    "outside the split fractions (they sum to less than 1)".to_string()
                })
            });
            format!(
                "hash of the image id (seed {seed}; train {}, val {}, test {})",
                fractions.train, fractions.val, fractions.test
            )
        }
    }
}

/// Decode every entry's image in parallel (within `limits`): a record for each one that
/// loads, a [`Skipped`] with the reason for each one that does not.
fn validate_images(
    entries: Vec<listing::Entry>,
    images_root: &Path,
    limits: &DecodeLimits,
    progress: &dyn pipe_stage_api::Progress,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<ImageRecord>, PrepError> {
    let root = DatasetRoot::new(images_root).map_err(|source| PrepError::Read {
        path: images_root.to_path_buf(),
        source,
    })?;
    tracing::info!(images = entries.len(), root = %root.path().display(), "validating images");
    progress.begin_items("validating images", entries.len() as u64, "images");
    let checked: Vec<Result<(String, u32, u32), String>> = entries
        .par_iter()
        .map(|e| {
            let path = root.resolve(&e.id)?;
            let loaded = load_image(&path, limits).map_err(|i| i.0);
            progress.advance(1);
            let loaded = loaded?;
            Ok((loaded.hash, loaded.width, loaded.height))
        })
        .collect();

    let mut records = Vec::with_capacity(entries.len());
    for (e, result) in entries.into_iter().zip(checked) {
        match result {
            Ok((hash, width, height)) => records.push(ImageRecord {
                id: e.id,
                hash,
                width,
                height,
                // Every entry has a split by now (dataset's own or hashed).
                split: e.split.unwrap_or(Split::Train),
                captions: e.captions,
            }),
            Err(reason) => {
                tracing::warn!(image = %e.id, "skipped: {reason}");
                skipped.push(Skipped {
                    image: e.id,
                    reason,
                });
            }
        }
    }
    Ok(records)
}

/// The same picture under two names (a copy, a link) must not straddle splits. A split we
/// made (`ours`) leaves the later copy out (into `skipped`); a dataset's own split (official
/// lists) is kept as published and the overlaps are returned, to be reported.
fn keep_splits_disjoint(
    records: &mut Vec<ImageRecord>,
    skipped: &mut Vec<Skipped>,
    ours: bool,
) -> Vec<Skipped> {
    let mut first_by_hash: HashMap<String, (String, Split)> = HashMap::new();
    let mut duplicates = Vec::new();
    records.retain(|r| match first_by_hash.get(&r.hash) {
        Some((id, split)) if *split != r.split => {
            let what = format!("same content as `{id}` (in {split})");
            tracing::warn!(image = %r.id, split = %r.split, "{what}");
            if ours {
                skipped.push(Skipped {
                    image: r.id.clone(),
                    reason: format!(
                        "{what}; left out of {} so the splits stay disjoint",
                        r.split
                    ),
                });
                false
            } else {
                duplicates.push(Skipped {
                    image: r.id.clone(),
                    reason: format!("{what}, but the dataset puts it in {}", r.split),
                });
                true
            }
        }
        Some(_) => true,
        None => {
            first_by_hash.insert(r.hash.clone(), (r.id.clone(), r.split));
            true
        }
    });
    duplicates
}

/// Images and captions per split; an error when a split that should have images has none.
fn count_splits(
    records: &[ImageRecord],
    source: &SplitSource,
    skipped: &[Skipped],
) -> Result<BTreeMap<Split, SplitCounts>, PrepError> {
    let mut splits: BTreeMap<Split, SplitCounts> = Split::ALL
        .iter()
        .map(|s| (*s, SplitCounts::default()))
        .collect();
    for r in records {
        let c = splits.entry(r.split).or_default();
        c.images += 1;
        c.captions += r.captions.len();
    }
    for (split, counts) in &splits {
        let wanted = match source {
            SplitSource::Hash { fractions, .. } => fractions.get(*split) > 0.0,
            SplitSource::Dataset(_) => true,
        };
        if counts.images == 0 && wanted {
            let detail = if skipped.is_empty() {
                format!(
                    " ({} usable images in all; a larger dataset or other split fractions may help)",
                    records.len()
                )
            } else {
                let first: Vec<String> = skipped
                    .iter()
                    .take(3)
                    .map(|s| format!("{}: {}", s.image, s.reason))
                    .collect();
                format!(
                    " ({} images skipped, e.g. {})",
                    skipped.len(),
                    first.join("; ")
                )
            };
            return Err(PrepError::EmptySplit {
                split: *split,
                detail,
            });
        }
    }
    Ok(splits)
}

/// The headline numbers `pipe show` prints.
fn metrics(summary: &Summary) -> serde_json::Map<String, serde_json::Value> {
    let mut metrics = serde_json::Map::new();
    for (split, c) in &summary.splits {
        metrics.insert(format!("{split}_images"), c.images.into());
        metrics.insert(format!("{split}_captions"), c.captions.into());
    }
    metrics.insert("skipped_images".into(), summary.skipped.len().into());
    metrics.insert("rejected_rows".into(), summary.rejected_rows.len().into());
    metrics.insert(
        "empty_captions_dropped".into(),
        summary.empty_captions_dropped.into(),
    );
    metrics
}
