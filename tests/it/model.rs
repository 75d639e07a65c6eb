//! `pipe caption` through the binary against transformers' outputs on the shared fixture.

use super::*;

#[test]
fn caption_reproduces_transformers_greedy_and_beam_tokens() {
    let Some(model) = fixture() else { return };
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("reference/reference.json")).expect("reference"),
    )
    .expect("json");
    let images: Vec<String> = (0..4)
        .map(|i| {
            model
                .join(format!("reference/images/probe{i}.png"))
                .display()
                .to_string()
        })
        .collect();
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    for (beams, key, texts) in [
        ("1", "greedy_max_new_tokens_12", "greedy_text"),
        ("3", "beam3_max_new_tokens_12", "beam3_text"),
    ] {
        let mut args = vec![
            "caption",
            "--model",
            model.to_str().expect("utf-8"),
            "--num-beams",
            beams,
            "--max-new-tokens",
            "12",
            "--backend",
            "cpu",
        ];
        args.extend(images.iter().map(String::as_str));
        let out = p.json(&args);
        let got = out.as_array().expect("a list");
        let expected = reference[key].as_array().expect("reference tokens");
        assert_eq!(got.len(), expected.len().min(4));
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert_eq!(&g["tokens"], e, "probe{i} with {beams} beam(s)");
            assert_eq!(g["caption"], reference[texts][i], "probe{i} text");
            assert_eq!(g["image"], images[i]);
        }
    }
}

#[test]
fn caption_errors_are_clear() {
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    let out = p.pipe(&["caption", "--model", "no/such-model", "x.png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("huggingface-cli download"),
        "{}",
        text(&out.stderr)
    );
    let out = p.pipe(&["caption", "--stage", "a", "x.png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("stage `a` is missing: run `pipe run a` first"),
        "{}",
        text(&out.stderr)
    );
    let Some(model) = fixture() else { return };
    p.write("bad.png", "not a png");
    let out = p.pipe(&[
        "caption",
        "--model",
        model.to_str().expect("utf-8"),
        "bad.png",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(err.contains("skipped bad.png: "), "{err}");
    assert!(
        err.contains("no image could be read or decoded (1 skipped)"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
}

/// A project holding the fixture's probe images under `imgs/` (and a file that is no image),
/// and transformers' greedy captions of probe0..3.
fn probe_project(model: &std::path::Path) -> (Project, Vec<String>) {
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(model.join("reference/reference.json")).expect("reference"),
    )
    .expect("json");
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    std::fs::create_dir_all(p.path("imgs")).expect("mkdir");
    for i in 0..4 {
        std::fs::copy(
            model.join(format!("reference/images/probe{i}.png")),
            p.path(&format!("imgs/probe{i}.png")),
        )
        .expect("copy");
    }
    p.write("imgs/notes.txt", "not an image");
    let greedy = reference["greedy_text"]
        .as_array()
        .expect("greedy texts")
        .iter()
        .map(|t| t.as_str().expect("text").to_string())
        .collect();
    (p, greedy)
}

fn caption_args<'a>(model: &'a std::path::Path, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "caption",
        "--model",
        model.to_str().expect("utf-8"),
        "--num-beams",
        "1",
        "--max-new-tokens",
        "12",
        "--backend",
        "cpu",
    ];
    args.extend_from_slice(rest);
    args
}

/// `pipe caption --jsonl | pipe score --predictions /dev/stdin`: the lines caption writes are
/// what score reads, image names included.
#[test]
fn caption_jsonl_pipes_into_score() {
    let Some(model) = fixture() else { return };
    let (p, greedy) = probe_project(&model);
    // References: each image's own greedy caption, so every n-gram matches.
    let refs: String = greedy
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "{}\n",
                serde_json::json!({"image": format!("imgs/probe{i}.png"), "captions": [t]})
            )
        })
        .collect();
    p.write("refs.jsonl", &refs);

    let mut caption = p
        .command(&caption_args(&model, &["--jsonl", "imgs/*.png"]))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pipe caption");
    let stdout = caption.stdout.take().expect("stdout");
    let score = p
        .command(&[
            "score",
            "--predictions",
            "/dev/stdin",
            "--references",
            "refs.jsonl",
            "--meteor",
            "skip",
            "--keys",
            "coco",
            "--json",
        ])
        .stdin(std::process::Stdio::from(stdout))
        .output()
        .expect("run pipe score");
    let caption = caption.wait_with_output().expect("pipe caption");
    assert!(caption.status.success(), "{}", text(&caption.stderr));
    let json = succeeded(&["score"], score);
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(report["images"], 4, "{report}");
    for key in ["Bleu_1", "Bleu_4"] {
        let v = report[key].as_f64().expect(key);
        assert!((v - 1.0).abs() < 1e-6, "{key} = {v}");
    }
    // The progress bar is for a terminal: none in a pipe's stderr.
    let err = text(&caption.stderr);
    assert!(
        !err.contains('\r') && !err.contains("captioning"),
        "{err:?}"
    );

    // Exactly `{"image", "caption"}` per line, in name order, from a folder as from the glob.
    let lines = p.ok(&caption_args(&model, &["--jsonl", "imgs"]));
    let lines: Vec<serde_json::Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    for (i, line) in lines.iter().enumerate() {
        let mut keys: Vec<&String> = line.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(keys, ["caption", "image"], "{line}");
        assert_eq!(line["image"], format!("imgs/probe{i}.png"));
        assert_eq!(line["caption"], greedy[i]);
    }
}

/// A bad or missing image is skipped with one warning naming it and why; the others are still
/// captioned (their captions unchanged by the skip) and pipe exits 1.
#[test]
fn caption_skips_an_unreadable_image_and_exits_1() {
    let Some(model) = fixture() else { return };
    let (p, greedy) = probe_project(&model);
    std::fs::remove_file(p.path("imgs/probe3.png")).expect("rm");
    // Sorted first: the skip shifts every later image within the batches.
    p.write("imgs/bad.png", "not a png");
    let args = caption_args(
        &model,
        &[
            "--batch-size",
            "2",
            "--json",
            "imgs",
            "missing.png",
            // Named twice (through the folder too): captioned once.
            "imgs/probe0.png",
        ],
    );
    let out = p.pipe(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let got: Vec<(&str, &str)> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|c| {
            (
                c["image"].as_str().expect("image"),
                c["caption"].as_str().expect("caption"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("imgs/probe0.png", greedy[0].as_str()),
            ("imgs/probe1.png", greedy[1].as_str()),
            ("imgs/probe2.png", greedy[2].as_str()),
        ]
    );
    let err = text(&out.stderr);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 3, "{err}");
    assert!(warnings[0].contains("skipped imgs/bad.png: "), "{err}");
    assert!(
        warnings[1].contains("skipped missing.png: cannot read it: No such file"),
        "{err}"
    );
    assert!(warnings[2].contains("2 of 5 image(s) skipped"), "{err}");

    // -q: no warning, the same status.
    let mut quiet = args.clone();
    quiet.push("-q");
    let out = p.pipe(&quiet);
    assert_eq!(out.status.code(), Some(1));
    assert!(!text(&out.stderr).contains("WARN"), "{}", text(&out.stderr));
}

#[test]
fn caption_folders_and_globs_without_images_are_usage_errors() {
    let Some(model) = fixture() else { return };
    let (p, _) = probe_project(&model);
    std::fs::create_dir_all(p.path("empty")).expect("mkdir");
    p.write("empty/readme.txt", "no image here");
    for (arg, needle) in [
        ("imgs/*.jpg", "imgs/*.jpg: a glob that matches no file"),
        ("empty", "empty: a folder without image files"),
        ("imgs/[", "bad glob \"imgs/[\""),
    ] {
        let out = p.pipe(&caption_args(&model, &["imgs/probe0.png", arg]));
        assert_eq!(out.status.code(), Some(2), "{arg}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{}", text(&out.stderr));
        assert!(out.stdout.is_empty(), "nothing captioned before the error");
    }
}

#[test]
fn caption_sizes_out_of_range_are_usage_errors() {
    // Before: `--num-beams 0` exited 3 after loading the model, and 100000000 beams aborted.
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    for (flag, value) in [
        ("--num-beams", "0"),
        ("--num-beams", "100000000"),
        ("--max-new-tokens", "0"),
        ("--max-new-tokens", "100000"),
        ("--batch-size", "0"),
    ] {
        let out = p.pipe(&["caption", "--model", "m", flag, value, "x.png"]);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        assert!(text(&out.stderr).contains(flag), "{}", text(&out.stderr));
    }
}

/// `pipe serve` stops on SIGTERM even while a client holds a half-sent request: the first
/// signal waits (a bounded time) for the requests in progress, a second one stops at once.
#[test]
fn serve_stops_on_a_second_signal_while_a_client_holds_a_half_sent_request() {
    use std::io::{BufRead, Write};
    let Some(model) = fixture() else { return };
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    let mut child = p
        .command(&[
            "serve",
            "--model",
            model.to_str().expect("utf-8"),
            "--port",
            "0",
            "--backend",
            "cpu",
            "--shutdown-grace-s",
            "600",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn pipe serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("pipe serve prints its address");
        if let Some(rest) = line.strip_prefix("pipe serve: http://") {
            break rest.split('/').next().expect("host:port").to_string();
        }
    };
    let mut client = std::net::TcpStream::connect(&addr).expect("connect");
    client
        .write_all(b"POST /api/caption HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n0123")
        .expect("write");
    std::thread::sleep(std::time::Duration::from_millis(300));

    let pid = child.id().to_string();
    let term = || {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    term();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the first signal waits for the request in progress"
    );
    term();
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if t0.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("pipe serve did not stop on a second SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    drop(client);
}

/// `pipe caption --do-sample`: the same seed gives the same captions, another seed others,
/// `--top-k 1` gives the greedy ones, and a sampling option without `--do-sample` is refused.
#[test]
fn caption_samples_with_a_seed() {
    let Some(model) = fixture() else { return };
    let (p, greedy) = probe_project(&model);
    let captions = |extra: &[&str]| -> Vec<String> {
        let mut rest = vec!["--jsonl", "--temperature", "2"];
        rest.extend_from_slice(extra);
        rest.push("imgs");
        let out = p.ok(&caption_args(&model, &rest));
        out.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("json line");
                v["caption"].as_str().expect("caption").to_string()
            })
            .collect()
    };
    let first = captions(&["--do-sample", "--seed", "1"]);
    assert_eq!(first.len(), greedy.len());
    assert_eq!(first, captions(&["--do-sample", "--seed", "1"]));
    assert_ne!(first, captions(&["--do-sample", "--seed", "2"]));
    assert_ne!(first, greedy);
    assert_eq!(
        captions(&["--do-sample", "--seed", "1", "--top-k", "1"]),
        greedy
    );
    let out = p.pipe(&caption_args(&model, &["--top-p", "0.9", "imgs"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--do-sample"),
        "{}",
        text(&out.stderr)
    );
}
