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
    assert!(
        text(&out.stderr).contains("bad.png"),
        "{}",
        text(&out.stderr)
    );
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
