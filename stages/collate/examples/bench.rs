//! Benchmark of prep + collate on a Flickr8k-sized dataset of generated photos-like JPEGs.
//!
//! ```text
//! cargo run --release -p pipe-collate --example bench -- WORKDIR [IMAGES=8091] [MODEL_DIR]
//! ```
//! Makes WORKDIR/data (Kaggle layout: captions.txt + Images/, IMAGES JPEGs of 500×375 with
//! five captions each) unless it is there, then times prep and collate into fresh directories
//! and prints images/s and artifact sizes. MODEL_DIR defaults to WORKDIR/model: the tokenizer
//! and config of ../shared/fixtures/blip-tiny with BLIP-base's 384×384 preprocessor.

use std::path::{Path, PathBuf};
use std::time::Instant;

use image::{ImageEncoder, RgbImage};
use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let work = PathBuf::from(
        args.first()
            .ok_or("usage: bench WORKDIR [IMAGES] [MODEL_DIR]")?,
    );
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(8091);
    let data = work.join("data");
    if !data.join("captions.txt").is_file() {
        let t = Instant::now();
        generate(&data, n)?;
        eprintln!("generated {n} JPEGs in {:.1} s", t.elapsed().as_secs_f64());
    }
    let model = match args.get(2) {
        Some(m) => PathBuf::from(m),
        None => model_dir(&work.join("model"))?,
    };
    let jpeg_bytes = dir_size(&data.join("Images"))?;

    let prep_out = fresh(&work.join("prep"))?;
    let params: toml::Table = toml::from_str(&format!(
        "dataset = 'flickr8k'\nroot = '{}'",
        data.display()
    ))?;
    let t = Instant::now();
    let outcome = pipe_prep::run(&params, &work, &prep_out)?;
    let prep_s = t.elapsed().as_secs_f64();
    let images = ["train", "val", "test"]
        .iter()
        .filter_map(|s| {
            outcome
                .metrics
                .get(&format!("{s}_images"))
                .and_then(|v| v.as_u64())
        })
        .sum::<u64>() as f64;

    let collate_out = fresh(&work.join("collate"))?;
    let params: toml::Table = toml::from_str(&format!("model = '{}'", model.display()))?;
    let t = Instant::now();
    pipe_collate::run(&params, &work, &prep_out, &collate_out)?;
    let collate_s = t.elapsed().as_secs_f64();

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "images: {images} JPEGs of 500x375 ({:.0} MiB), {} threads",
        mib(jpeg_bytes),
        rayon::current_num_threads()
    );
    println!(
        "prep:    {prep_s:6.1} s  {:7.1} images/s  artifact {:.1} MiB",
        images / prep_s,
        mib(dir_size(&prep_out)?)
    );
    println!(
        "collate: {collate_s:6.1} s  {:7.1} images/s  artifact {:.1} MiB",
        images / collate_s,
        mib(dir_size(&collate_out)?)
    );
    println!(
        "total:   {:6.1} s  {:7.1} images/s",
        prep_s + collate_s,
        images / (prep_s + collate_s)
    );
    Ok(())
}

fn fresh(dir: &Path) -> std::io::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() {
            dir_size(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(total)
}

/// Photo-like content: smooth colour fields, edges and grain, so JPEG sizes are realistic.
fn generate(data: &Path, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let images = data.join("Images");
    std::fs::create_dir_all(&images)?;
    (0..n)
        .into_par_iter()
        .try_for_each(|i| -> Result<(), String> {
            let s = i as f32;
            let img = RgbImage::from_fn(500, 375, |x, y| {
                let (fx, fy) = (x as f32, y as f32);
                let grain =
                    ((x.wrapping_mul(7919) ^ y.wrapping_mul(104_729) ^ (i as u32).wrapping_mul(31))
                        % 23) as f32;
                let r =
                    128.0 + 90.0 * ((fx * 0.013 + s * 0.7).sin() * (fy * 0.021 + s).cos()) + grain;
                let g = 110.0 + 80.0 * ((fx + fy) * 0.009 + s * 1.3).sin() + grain;
                let b = if (fx - 250.0).hypot(fy - 190.0) < 60.0 + (s % 50.0) {
                    40.0
                } else {
                    170.0
                } + grain;
                image::Rgb([
                    r.clamp(0.0, 255.0) as u8,
                    g.clamp(0.0, 255.0) as u8,
                    b.clamp(0.0, 255.0) as u8,
                ])
            });
            let mut buf = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90)
                .write_image(img.as_raw(), 500, 375, image::ExtendedColorType::Rgb8)
                .map_err(|e| e.to_string())?;
            std::fs::write(images.join(format!("{i:010}_bench.jpg")), buf)
                .map_err(|e| e.to_string())
        })?;
    let mut csv = String::from("image,caption\n");
    for i in 0..n {
        for k in 0..5 {
            csv.push_str(&format!(
                "{i:010}_bench.jpg,A dog number {i} runs across the grass in picture {k} .\n"
            ));
        }
    }
    std::fs::write(data.join("captions.txt"), csv)?;
    Ok(())
}

fn model_dir(dir: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/blip-tiny");
    std::fs::create_dir_all(dir)?;
    for f in ["tokenizer.json", "config.json"] {
        std::fs::copy(fixture.join(f), dir.join(f))
            .map_err(|e| format!("{}: {e}", fixture.join(f).display()))?;
    }
    let pre = serde_json::json!({
        "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "BlipImageProcessor", "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"height": 384, "width": 384}
    });
    std::fs::write(
        dir.join("preprocessor_config.json"),
        serde_json::to_string_pretty(&pre)?,
    )?;
    Ok(dir.to_path_buf())
}
