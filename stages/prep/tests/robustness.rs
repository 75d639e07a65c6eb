//! Bad input, each case with its message: broken images, paths escaping the root, malformed
//! rows, empty splits, bad parameters; and the colour/orientation conversions.

mod common;

use std::io::Cursor;
use std::path::Path;

use common::{png, prep, skip_reason, summary, table, tiny_model};
use image::{ImageEncoder, RgbImage};
use pipe_collate::Collate;
use pipe_data::images::{DecodeLimits, decode_rgb8};
use pipe_data::prep::PrepError;
use pipe_prep::Prep;
use pipe_stage_api::StageKind;

fn noisy_png(w: u32, h: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 31 + y * 7) as u8, (x ^ y) as u8, (x * y) as u8])
    });
    let mut buf = Vec::new();
    img.write_to(&mut Cursor::new(&mut buf), image::ImageFormat::Png)
        .expect("png");
    buf
}

fn jpeg(w: u32, h: u32, exif: Option<Vec<u8>>) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 3) as u8, (y * 3) as u8, 90]));
    let mut buf = Vec::new();
    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90);
    if let Some(e) = exif {
        enc.set_exif_metadata(e).expect("exif");
    }
    enc.write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
        .expect("jpeg");
    buf
}

/// A valid small PNG whose header claims 100000 × 100000 pixels.
fn bomb_png() -> Vec<u8> {
    let mut b = noisy_png(8, 8);
    pipe_test_support::png::claim_size(&mut b, 100_000, 100_000);
    b
}

#[test]
fn broken_images_and_escaping_paths_are_skipped_with_their_reason() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("ds");
    std::fs::create_dir_all(d.join("img")).expect("mkdir");
    let mut good = Vec::new();
    for i in 0..6 {
        let name = format!("img/good{i}.png");
        png(&d.join(&name), 6, 4, i);
        good.push((name, ["train", "val", "test"][i as usize % 3]));
    }
    let full_png = noisy_png(64, 64);
    let full_jpg = jpeg(64, 64, None);
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("img/zero.png", Vec::new()),
        ("img/text.jpg", b"hello, not an image\n".to_vec()),
        ("img/trunc.png", full_png[..full_png.len() / 2].to_vec()),
        ("img/trunc.jpg", full_jpg[..full_jpg.len() / 2].to_vec()),
        ("img/bomb.png", bomb_png()),
    ];
    for (name, bytes) in &bad {
        std::fs::write(d.join(name), bytes).expect("write");
    }
    std::fs::create_dir_all(d.join("img/dir.png")).expect("mkdir");
    png(&tmp.path().join("outside.png"), 4, 4, 1);
    std::os::unix::fs::symlink(tmp.path().join("outside.png"), d.join("img/link.png"))
        .expect("symlink");
    png(&d.join("img/inside-target.png"), 4, 4, 2);
    std::os::unix::fs::symlink(
        d.join("img/inside-target.png"),
        d.join("img/inside-link.png"),
    )
    .expect("symlink");

    let mut rows = String::new();
    for (name, split) in &good {
        rows.push_str(&format!(
            "{{\"file_name\": \"{name}\", \"caption\": \"ok\", \"split\": \"{split}\"}}\n"
        ));
    }
    for name in [
        "img/zero.png",
        "img/text.jpg",
        "img/trunc.png",
        "img/trunc.jpg",
        "img/bomb.png",
        "img/missing.png",
        "img/dir.png",
        "img/link.png",
        "img/inside-link.png",
        "../outside.png",
        "/etc/hostname",
    ] {
        rows.push_str(&format!(
            "{{\"file_name\": \"{name}\", \"caption\": \"bad\", \"split\": \"train\"}}\n"
        ));
    }
    rows.push_str(
        "{\"file_name\": \"img/good0.png\", \"caption\": \"  \", \"split\": \"train\"}\n",
    );
    let first_bad_row = good.len() + 11 + 2; // the 1-based line of the first row below
    let mut bytes = rows.into_bytes();
    bytes.extend_from_slice(b"{\"file_name\": \"img/good0.png\", \"caption\": \"bad \xff byte\", \"split\": \"train\"}\n");
    bytes.extend_from_slice(b"not json at all\n");
    bytes.extend_from_slice(b"{\"file_name\": \"img/good1.png\", \"split\": \"val\"}\n");
    bytes.extend_from_slice(
        b"{\"file_name\": \"img/good1.png\", \"caption\": \"x\", \"split\": \"holdout\"}\n",
    );
    bytes.extend_from_slice(
        b"{\"file_name\": \"img/good1.png\", \"caption\": \"moved\", \"split\": \"test\"}\n",
    );
    std::fs::write(d.join("captions.jsonl"), bytes).expect("write");

    let params = "dataset = 'jsonl'\nfile = 'ds/captions.jsonl'\nsplit_column = 'split'";
    let (out, r) = prep(params, tmp.path(), tmp.path());
    r.expect("prep goes on despite bad rows");
    let s = summary(&out);
    let reason =
        |img: &str| skip_reason(&s, img).unwrap_or_else(|| panic!("{img} not reported: {s:#}"));
    assert_eq!(reason("img/zero.png"), "zero-byte file");
    assert!(
        reason("img/text.jpg").starts_with("not an image"),
        "{}",
        reason("img/text.jpg")
    );
    let t = reason("img/trunc.png");
    assert!(t.contains("truncated") || t.contains("corrupt"), "{t}");
    assert_eq!(
        reason("img/trunc.jpg"),
        "truncated JPEG (no end-of-image marker)"
    );
    assert!(
        reason("img/bomb.png").contains("exceeds decode limits"),
        "{}",
        reason("img/bomb.png")
    );
    assert_eq!(reason("img/missing.png"), "image file missing");
    assert_eq!(reason("img/dir.png"), "not a regular file");
    assert!(
        reason("img/link.png").contains("escapes the dataset root"),
        "{}",
        reason("img/link.png")
    );
    assert!(
        skip_reason(&s, "img/inside-link.png").is_none(),
        "a link inside the root is fine"
    );

    let rows = s["rejected_rows"].as_array().expect("rows");
    let row = |needle: &str| {
        rows.iter()
            .find(|r| r["reason"].as_str().expect("reason").contains(needle))
            .unwrap_or_else(|| panic!("no rejected row with {needle:?}: {rows:#?}"))
    };
    assert!(
        row("../outside.png")["reason"]
            .as_str()
            .expect("r")
            .contains("escapes the dataset root (`..`)")
    );
    assert!(
        row("/etc/hostname")["reason"]
            .as_str()
            .expect("r")
            .contains("absolute path not allowed")
    );
    let utf8 = row("invalid UTF-8");
    assert_eq!(utf8["line"], first_bad_row as u64);
    assert!(
        utf8["file"]
            .as_str()
            .expect("file")
            .ends_with("captions.jsonl")
    );
    assert_eq!(row("invalid JSON")["line"], first_bad_row as u64 + 1);
    assert_eq!(row("no caption field")["line"], first_bad_row as u64 + 2);
    assert_eq!(
        row("unknown split `holdout`")["line"],
        first_bad_row as u64 + 3
    );
    assert_eq!(row("keeping `val`")["line"], first_bad_row as u64 + 4);
    assert_eq!(s["empty_captions_dropped"], 1);
}

/// An image within the side limit but above `max_megapixels` (here a small PNG whose header
/// claims 16000 × 16000, as a 0.75 MB all-zero bomb does) is skipped before it is decoded; the
/// parameter moves the bound, and bad values of it are located.
#[test]
fn images_above_max_megapixels_are_skipped_before_decoding() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("ds");
    let mut rows = String::new();
    for i in 0..6 {
        png(&d.join(format!("img/good{i}.png")), 6, 4, i);
        let split = ["train", "val", "test"][i as usize % 3];
        rows.push_str(&format!(
            "{{\"file_name\": \"img/good{i}.png\", \"caption\": \"ok\", \"split\": \"{split}\"}}\n"
        ));
    }
    let mut big = noisy_png(8, 8);
    pipe_test_support::png::claim_size(&mut big, 16_000, 16_000);
    std::fs::write(d.join("img/big.png"), big).expect("write");
    rows.push_str("{\"file_name\": \"img/big.png\", \"caption\": \"big\", \"split\": \"train\"}\n");
    std::fs::write(d.join("captions.jsonl"), rows).expect("write");

    let params = "dataset = 'jsonl'\nfile = 'ds/captions.jsonl'\nsplit_column = 'split'";
    let (out, r) = prep(params, tmp.path(), tmp.path());
    r.expect("prep");
    let why = skip_reason(&summary(&out), "img/big.png").expect("big.png skipped");
    assert_eq!(
        why,
        "refused: 16000×16000 is 256.0 megapixels, above max_megapixels = 64"
    );

    // Raised, the bound lets it through to the decoder (which finds its data too short).
    let (out, r) = prep(
        &format!("{params}\nmax_megapixels = 260"),
        tmp.path(),
        tmp.path(),
    );
    r.expect("prep");
    let why = skip_reason(&summary(&out), "img/big.png").expect("big.png skipped");
    assert!(!why.contains("megapixels"), "{why}");

    for bad in ["0", "-1", "300", "nan", "'64'"] {
        let e = Prep
            .check(&table(&format!("max_megapixels = {bad}")))
            .expect_err(bad);
        assert_eq!(e.path, vec!["max_megapixels"], "{bad}");
    }
    Prep.check(&table("max_megapixels = 12"))
        .expect("an integer is a number");
}

#[test]
fn colour_types_orientation_and_alpha_become_upright_rgb8() {
    let limits = DecodeLimits::default();
    // EXIF orientation 6 (rotate 90° clockwise): a 4×2 JPEG comes out 2×4.
    let mut exif = b"II*\0\x08\0\0\0\x01\0".to_vec();
    exif.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
    let rotated = decode_rgb8(&jpeg(4, 2, Some(exif)), &limits).expect("jpeg");
    assert_eq!(rotated.dimensions(), (2, 4));
    assert_eq!(
        decode_rgb8(&jpeg(4, 2, None), &limits)
            .expect("jpeg")
            .dimensions(),
        (4, 2)
    );

    // 16-bit RGB.
    let img16 =
        image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(3, 3, image::Rgb([0xFFFF, 0x8080, 0]));
    let mut b = Vec::new();
    image::DynamicImage::ImageRgb16(img16)
        .write_to(&mut Cursor::new(&mut b), image::ImageFormat::Png)
        .expect("png16");
    assert_eq!(
        decode_rgb8(&b, &limits).expect("16-bit").get_pixel(1, 1).0,
        [255, 128, 0]
    );

    // Gray + alpha: transparent → white, opaque stays.
    let la = image::ImageBuffer::<image::LumaA<u8>, _>::from_fn(2, 1, |x, _| {
        image::LumaA([10, if x == 0 { 0 } else { 255 }])
    });
    let mut b = Vec::new();
    image::DynamicImage::ImageLumaA8(la)
        .write_to(&mut Cursor::new(&mut b), image::ImageFormat::Png)
        .expect("png la");
    let rgb = decode_rgb8(&b, &limits).expect("la");
    assert_eq!(rgb.get_pixel(0, 0).0, [255, 255, 255]);
    assert_eq!(rgb.get_pixel(1, 0).0, [10, 10, 10]);

    // Palette PNG.
    let mut b = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut b, 2, 1);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(vec![255, 0, 0, 0, 0, 255]);
        let mut w = enc.write_header().expect("header");
        w.write_image_data(&[0, 1]).expect("data");
    }
    let rgb = decode_rgb8(&b, &limits).expect("palette");
    assert_eq!(
        (rgb.get_pixel(0, 0).0, rgb.get_pixel(1, 0).0),
        ([255, 0, 0], [0, 0, 255])
    );

    // CMYK TIFF: pure magenta + yellow = red.
    let mut b = Cursor::new(Vec::new());
    tiff::encoder::TiffEncoder::new(&mut b)
        .expect("tiff")
        .write_image::<tiff::encoder::colortype::CMYK8>(1, 1, &[0, 255, 255, 0])
        .expect("cmyk");
    assert_eq!(
        decode_rgb8(b.get_ref(), &limits)
            .expect("cmyk")
            .get_pixel(0, 0)
            .0,
        [255, 0, 0]
    );

    // Grayscale JPEG.
    let g = image::GrayImage::from_pixel(4, 4, image::Luma([77]));
    let mut b = Vec::new();
    image::DynamicImage::ImageLuma8(g)
        .write_to(&mut Cursor::new(&mut b), image::ImageFormat::Jpeg)
        .expect("gray jpeg");
    let p = decode_rgb8(&b, &limits).expect("gray").get_pixel(2, 2).0;
    assert!(
        p[0] == p[1] && p[1] == p[2] && p[0].abs_diff(77) <= 1,
        "{p:?}"
    );
}

#[test]
fn malformed_caption_files_report_file_and_line() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("f");
    for i in 0..30 {
        png(&d.join("Images").join(format!("{i}.jpg")), 4, 4, i);
    }
    // Kaggle CSV: a short row and a row with invalid UTF-8.
    let mut csv = b"image,caption\n".to_vec();
    for i in 0..30 {
        csv.extend_from_slice(format!("{i}.jpg,a caption {i}\n").as_bytes());
    }
    csv.extend_from_slice(b"lonely.jpg\n");
    csv.extend_from_slice(b"3.jpg,bad \xff byte\n");
    csv.extend_from_slice(b"4.jpg,an unquoted, comma\n");
    std::fs::write(d.join("captions.txt"), csv).expect("write");
    let (out, r) = prep("dataset = 'flickr8k'\nroot = 'f'", tmp.path(), tmp.path());
    r.expect("prep");
    let s = summary(&out);
    let rows = s["rejected_rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert_eq!(rows[0]["line"], 32);
    assert!(
        rows[0]["reason"]
            .as_str()
            .expect("r")
            .contains("expected 2 fields, found 1")
    );
    assert_eq!(rows[1]["line"], 33);
    assert!(
        rows[1]["reason"]
            .as_str()
            .expect("r")
            .contains("invalid UTF-8")
    );
    let art =
        pipe_data::prep::PrepArtifact::open(&out, out.parent().expect("project")).expect("open");
    let four = art.images.iter().find(|r| r.id == "4.jpg").expect("4.jpg");
    assert_eq!(four.captions[1], "an unquoted, comma");

    // Token file: a line without a tab, a line without `#N`.
    let o = tmp.path().join("o");
    std::fs::create_dir_all(o.join("Flicker8k_Dataset")).expect("mkdir");
    let mut tok = String::new();
    for i in 0..30 {
        png(
            &o.join("Flicker8k_Dataset").join(format!("{i}.jpg")),
            4,
            4,
            i,
        );
        tok.push_str(&format!("{i}.jpg#0\tcaption {i}\n"));
    }
    tok.push_str("nothing-here\n5.jpg\tno number\n");
    std::fs::write(o.join("Flickr8k.token.txt"), tok).expect("write");
    let (out, r) = prep("dataset = 'flickr8k'\nroot = 'o'", tmp.path(), tmp.path());
    r.expect("prep token");
    let rows = summary(&out)["rejected_rows"].clone();
    assert_eq!(rows[0]["line"], 31);
    assert!(
        rows[0]["reason"]
            .as_str()
            .expect("r")
            .contains("found no tab"),
        "{rows:#}"
    );
    assert_eq!(rows[1]["line"], 32);
    assert!(
        rows[1]["reason"]
            .as_str()
            .expect("r")
            .contains("expected `image.jpg#N`"),
        "{rows:#}"
    );
}

#[test]
fn a_split_without_usable_images_is_an_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("ds");
    png(&d.join("a.png"), 4, 4, 0);
    png(&d.join("b.png"), 4, 4, 1);
    std::fs::write(d.join("c.png"), b"").expect("write");
    std::fs::write(
        d.join("m.jsonl"),
        "{\"file_name\": \"a.png\", \"caption\": \"x\", \"split\": \"train\"}\n\
         {\"file_name\": \"b.png\", \"caption\": \"x\", \"split\": \"val\"}\n\
         {\"file_name\": \"c.png\", \"caption\": \"x\", \"split\": \"test\"}\n",
    )
    .expect("write");
    let (_, r) = prep(
        "dataset = 'jsonl'\nfile = 'ds/m.jsonl'\nsplit_column = 'split'",
        tmp.path(),
        tmp.path(),
    );
    let e = r.expect_err("test split is empty");
    assert!(matches!(e, PrepError::EmptySplit { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("split `test` has no usable images") && msg.contains("c.png: zero-byte file"),
        "{msg}"
    );

    // Fractions without val: an empty val is then fine.
    let (_, r) = prep(
        "images = 3\nsplit = { train = 1.0, val = 0.0, test = 0.0 }",
        tmp.path(),
        tmp.path(),
    );
    r.expect("train only");
    let (_, r) = prep("images = 2", tmp.path(), tmp.path());
    assert!(
        r.expect_err("too few images")
            .to_string()
            .contains("has no usable images")
    );
}

#[test]
fn bad_parameters_are_located() {
    let check = |kind: &dyn StageKind, text: &str| kind.check(&table(text)).expect_err(text);
    let e = check(&Prep, "dataset = 'flickr9k'");
    assert_eq!(e.path, vec!["dataset"]);
    assert!(e.message.contains("unknown dataset `flickr9k`"));
    let e = check(&Prep, "dataset = 'synthetic'\nimagez = 3");
    assert_eq!(e.path, vec!["imagez"]);
    let e = check(&Prep, "split = { train = 0.9, val = 0.2 }");
    assert!(e.message.contains("sum to"), "{}", e.message);
    let e = check(&Prep, "split = { train = 0.9, vall = 0.1 }");
    assert!(e.message.contains("unknown field `vall`"), "{}", e.message);
    let e = check(&Prep, "dataset = 'flickr8k'");
    assert!(e.message.contains("needs `root = DIR`"));
    let e = check(&Prep, "dataset = 'jsonl'");
    assert!(e.message.contains("missing field `file`"), "{}", e.message);
    let e = check(&Collate, "model = 'm'\nmax_length = 2");
    assert_eq!(e.path, vec!["max_length"]);
    let e = check(&Collate, "max_length = 20");
    assert!(e.message.contains("missing field `model`"), "{}", e.message);

    // A root with no Flickr8k layout in it.
    let tmp = tempfile::tempdir().expect("tmp");
    let e = Prep
        .inputs(&table("dataset = 'flickr8k'\nroot = '.'"), tmp.path())
        .expect_err("no layout");
    assert_eq!(e.path, vec!["root"]);
    assert!(
        e.message.contains("no Flickr8k layout found"),
        "{}",
        e.message
    );
    // A root that does not exist: where to get Flickr8k, and the demo that needs none.
    let e = Prep
        .inputs(&table("dataset = 'flickr8k'\nroot = 'nope'"), tmp.path())
        .expect_err("no root");
    assert_eq!(e.path, vec!["root"]);
    for needle in [
        "not at nope",
        "kaggle.com",
        "captions.txt",
        "examples/quickstart",
    ] {
        assert!(e.message.contains(needle), "{needle}: {}", e.message);
    }
}

#[test]
fn inputs_name_the_files_the_artifact_depends_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("f8k");
    std::fs::create_dir_all(root.join("Flickr8k_text")).expect("mkdir");
    std::fs::create_dir_all(root.join("Flicker8k_Dataset")).expect("mkdir");
    for f in [
        "Flickr8k.token.txt",
        "Flickr_8k.trainImages.txt",
        "Flickr_8k.devImages.txt",
        "Flickr_8k.testImages.txt",
    ] {
        std::fs::write(root.join("Flickr8k_text").join(f), "").expect("write");
    }
    let v = Prep
        .inputs(&table("dataset = 'flickr8k'\nroot = 'f8k'"), tmp.path())
        .expect("inputs");
    let t = root.join("Flickr8k_text");
    assert_eq!(
        v,
        vec![
            t.join("Flickr8k.token.txt"),
            t.join("Flickr_8k.trainImages.txt"),
            t.join("Flickr_8k.devImages.txt"),
            t.join("Flickr_8k.testImages.txt"),
            root.join("Flicker8k_Dataset"),
        ]
    );
    assert!(
        Prep.inputs(&table("images = 10"), tmp.path())
            .expect("synthetic")
            .is_empty()
    );
    let v = Collate
        .inputs(&table("model = 'm'"), tmp.path())
        .expect("collate inputs");
    assert_eq!(v.len(), 3);
    assert!(v.iter().all(|p| p.starts_with(tmp.path().join("m"))));
}

#[test]
fn collate_refuses_an_image_changed_since_prep_and_picks_its_dep() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path().join("ds");
    let mut rows = String::new();
    for i in 0..3 {
        png(&d.join(format!("{i}.png")), 5, 5, i);
        rows.push_str(&format!(
            "{{\"file_name\": \"{i}.png\", \"caption\": \"a red dog\", \"split\": \"{}\"}}\n",
            ["train", "val", "test"][i as usize]
        ));
    }
    std::fs::write(d.join("metadata.jsonl"), rows).expect("write");
    let (prep_dir, r) = prep(
        "dataset = 'jsonl'\nfile = 'ds'\nsplit_column = 'split'",
        tmp.path(),
        tmp.path(),
    );
    r.expect("prep");
    tiny_model(&tmp.path().join("m"));

    let params = table("model = 'm'");
    let run = |deps: &pipe_stage_api::Deps, params: &toml::Table| {
        let out = tempfile::tempdir_in(tmp.path()).expect("out").keep();
        let ctx = pipe_stage_api::StageContext {
            stage: "collate",
            pipeline_dir: tmp.path(),
            out_dir: &out,
            work_dir: &out,
            deps,
            params,
            seed: 0,
            backend: Default::default(),
            devices: &[],
            progress: &pipe_stage_api::Silent,
        };
        Collate.run(&ctx).map(|_| out)
    };
    let mut deps = pipe_stage_api::Deps::new();
    deps.insert(
        "data".to_string(),
        pipe_stage_api::Dep::new("prep", &prep_dir),
    );
    let out = run(&deps, &params).expect("collate");
    assert!(out.join("collate.json").is_file());
    deps.insert(
        "other".to_string(),
        pipe_stage_api::Dep::new("prep", tmp.path()),
    );
    let e = run(&deps, &params).expect_err("two deps");
    assert!(e.to_string().contains("`prep = NAME`"), "{e}");
    run(&deps, &table("model = 'm'\nprep = 'data'")).expect("named dep");

    png(&d.join("1.png"), 5, 5, 99);
    let e = pipe_collate::run(&params, tmp.path(), &prep_dir, &tmp.path().join("x"))
        .expect_err("changed");
    assert!(e.to_string().contains("changed since prep"), "{e}");
    let _ = Path::new("");
}
