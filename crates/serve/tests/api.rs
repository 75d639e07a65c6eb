//! The JSON API against the tiny fixture: every status it answers, and micro-batching.

mod common;

use std::time::Duration;

use common::{expect_error, form, options, probe_bytes, start, stop, url};
use pipe_serve::{CaptionResponse, Health, ServeOptions};
use pipe_test_support::model_fixture;
use pipe_test_support::png::header_only;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

async fn caption_ok(resp: reqwest::Response) -> CaptionResponse {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert_eq!(status.as_u16(), 200, "{text}");
    serde_json::from_str(&text).expect("caption json")
}

#[tokio::test]
async fn caption_200_multipart_and_raw_body_agree_with_transformers() {
    let Some(dir) = model_fixture() else { return };
    let server = start(&dir, options()).await;
    let c = client();
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("reference/reference.json")).expect("reference.json"),
    )
    .expect("reference json");
    for i in 0..4 {
        let bytes = probe_bytes(&dir, i);
        // Greedy, 12 new tokens: what reference.json holds from transformers.
        let a = caption_ok(
            c.post(url(&server, "/api/caption?max_new_tokens=12"))
                .multipart(form(bytes.clone(), &[]))
                .send()
                .await
                .expect("send"),
        )
        .await;
        let b = caption_ok(
            c.post(url(&server, "/api/caption"))
                .query(&[("max_new_tokens", "12"), ("num_beams", "1")])
                .header("content-type", "application/octet-stream")
                .body(bytes)
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(
            a.tokens, b.tokens,
            "probe{i}: multipart and raw body differ"
        );
        assert_eq!(a.caption, b.caption);
        let expected: Vec<u32> =
            serde_json::from_value(reference["greedy_max_new_tokens_12"][i].clone())
                .expect("token ids");
        assert_eq!(
            a.tokens, expected,
            "probe{i}: not transformers' greedy tokens"
        );
        assert!(a.ms >= a.model_ms, "{a:?}");
        assert_eq!((a.num_beams, a.max_new_tokens), (1, 12));
    }
    // Decoding options as form fields, and beam search.
    let beam = caption_ok(
        c.post(url(&server, "/api/caption"))
            .multipart(form(
                probe_bytes(&dir, 0),
                &[("num_beams", "3"), ("max_new_tokens", "5")],
            ))
            .send()
            .await
            .expect("send"),
    )
    .await;
    assert_eq!((beam.num_beams, beam.max_new_tokens), (3, 5));
    assert!(beam.tokens.len() <= 1 + 5, "{:?}", beam.tokens);
    stop(server).await;
}

#[tokio::test]
async fn health_info_page_and_examples() {
    let Some(dir) = model_fixture() else { return };
    let mut opts = options();
    opts.examples = vec![dir.join("reference/images"), dir.join("config.json")];
    opts.info.stage = Some("train".into());
    opts.info.metrics = Some(serde_json::json!({"CIDEr": 1.25}));
    let server = start(&dir, opts).await;
    let c = client();

    let health = c
        .get(url(&server, "/api/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(health.status().as_u16(), 200);
    let health: Health = health.json().await.expect("health json");
    assert_eq!(health.status, "ok");

    let info: serde_json::Value = c
        .get(url(&server, "/api/info"))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("info json");
    assert_eq!(info["model"]["stage"], "train");
    assert_eq!(info["model"]["backend"], "cpu (flex)");
    assert_eq!(info["model"]["metrics"]["CIDEr"], 1.25);
    // The directory's four PNGs; config.json is not an image and is skipped.
    let examples = info["examples"].as_array().expect("examples");
    assert_eq!(examples.len(), 4, "{examples:?}");
    assert_eq!(examples[0]["name"], "probe0.png");

    let ex = c
        .get(url(&server, "/api/examples/0"))
        .send()
        .await
        .expect("send");
    assert_eq!(ex.status().as_u16(), 200);
    assert_eq!(ex.headers()["content-type"], "image/png");
    assert_eq!(
        ex.bytes().await.expect("bytes").to_vec(),
        probe_bytes(&dir, 0)
    );
    for bad in [
        "/api/examples/4",
        "/api/examples/..%2F..%2Fconfig.json",
        "/api/examples/-1",
    ] {
        let r = c.get(url(&server, bad)).send().await.expect("send");
        expect_error(r, 404).await;
    }

    let page = c.get(url(&server, "/")).send().await.expect("send");
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .starts_with("text/html")
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap_or("")
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.expect("html");
    assert!(
        html.contains("/assets/app.js") && !html.contains("http"),
        "no CDN, no external URL"
    );
    for (path, ct) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
    ] {
        let r = c.get(url(&server, path)).send().await.expect("send");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap_or("")
                .starts_with(ct),
            "{path}"
        );
    }
    stop(server).await;
}

#[tokio::test]
async fn unknown_paths_are_404_and_nothing_outside_the_assets_is_served() {
    let Some(dir) = model_fixture() else { return };
    let server = start(&dir, options()).await;
    let c = client();
    for path in [
        "/nope",
        "/api/nope",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/%2e%2e/Cargo.toml",
        "/assets/index.html",
        "/model.safetensors",
        "/config.json",
        "/etc/passwd",
    ] {
        let r = c.get(url(&server, path)).send().await.expect("send");
        let text = expect_error(r, 404).await;
        assert!(text.starts_with("not found"), "{path}: {text}");
    }
    let r = c
        .get(url(&server, "/api/caption"))
        .send()
        .await
        .expect("send");
    expect_error(r, 405).await;
    stop(server).await;
}

#[tokio::test]
async fn malformed_requests_are_400() {
    let Some(dir) = model_fixture() else { return };
    let server = start(&dir, options()).await;
    let c = client();
    let post = |q: &str| c.post(url(&server, &format!("/api/caption{q}")));

    let t = expect_error(post("").send().await.expect("send"), 400).await;
    assert!(t.contains("empty image"), "{t}");
    for q in [
        "?num_beams=0",
        "?num_beams=99",
        "?max_new_tokens=0",
        "?max_new_tokens=100000",
    ] {
        let r = post(q)
            .body(probe_bytes(&dir, 0))
            .send()
            .await
            .expect("send");
        let t = expect_error(r, 400).await;
        assert!(t.contains("must be between"), "{q}: {t}");
    }
    let r = post("?num_beams=two")
        .body(probe_bytes(&dir, 0))
        .send()
        .await
        .expect("send");
    expect_error(r, 400).await;
    let r = post("?temperature=2")
        .body(probe_bytes(&dir, 0))
        .send()
        .await
        .expect("send");
    let t = expect_error(r, 400).await;
    assert!(t.contains("temperature"), "{t}");
    // A form without the image, a form with a stray field, a form field that is not a number.
    let no_image = reqwest::multipart::Form::new().text("num_beams", "2");
    let t = expect_error(
        post("").multipart(no_image).send().await.expect("send"),
        400,
    )
    .await;
    assert!(t.contains("`image`"), "{t}");
    let stray = form(probe_bytes(&dir, 0), &[("colour", "red")]);
    expect_error(post("").multipart(stray).send().await.expect("send"), 400).await;
    let nan = form(probe_bytes(&dir, 0), &[("num_beams", "lots")]);
    expect_error(post("").multipart(nan).send().await.expect("send"), 400).await;
    // A PNG signature followed by garbage, and a PNG cut in half.
    let mut corrupt = b"\x89PNG\r\n\x1a\n".to_vec();
    corrupt.extend_from_slice(&[7u8; 200]);
    expect_error(post("").body(corrupt).send().await.expect("send"), 400).await;
    let png = probe_bytes(&dir, 1);
    let half = png[..png.len() / 2].to_vec();
    let t = expect_error(post("").body(half).send().await.expect("send"), 400).await;
    assert!(t.to_lowercase().contains("png"), "{t}");
    // The server still works.
    caption_ok(
        post("")
            .body(probe_bytes(&dir, 0))
            .send()
            .await
            .expect("send"),
    )
    .await;
    stop(server).await;
}

#[tokio::test]
async fn not_an_image_is_415_with_a_message() {
    let Some(dir) = model_fixture() else { return };
    let server = start(&dir, options()).await;
    let c = client();
    let post = || c.post(url(&server, "/api/caption"));
    // The Content-Type claims an image; the bytes are what count.
    let r = post()
        .header("content-type", "image/png")
        .body("this is plain text, not a picture")
        .send()
        .await
        .expect("send");
    let t = expect_error(r, 415).await;
    assert!(t.contains("not an image"), "{t}");
    let r = post()
        .body(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n".to_vec())
        .send()
        .await
        .expect("send");
    expect_error(r, 415).await;
    let r = post()
        .multipart(form(b"<html><body>hi</body></html>".to_vec(), &[]))
        .send()
        .await
        .expect("send");
    let t = expect_error(r, 415).await;
    assert!(t.contains("JPEG, PNG"), "{t}");
    stop(server).await;
}

#[tokio::test]
async fn too_large_bodies_and_images_are_413() {
    let Some(dir) = model_fixture() else { return };
    let mut opts = options();
    opts.max_body_bytes = 20_000;
    opts.max_pixels = 40_000; // probe0 is 200x200 = 40,000; probe1 237x177 = 41,949
    let server = start(&dir, opts).await;
    let c = client();
    let post = || c.post(url(&server, "/api/caption"));

    let big = vec![0u8; 50_000];
    let t = expect_error(post().body(big.clone()).send().await.expect("send"), 413).await;
    assert!(t.contains("20000"), "{t}");
    let r = post().multipart(form(big, &[])).send().await.expect("send");
    expect_error(r, 413).await;

    // The pixel limit, from the header: at the limit passes, above is refused.
    caption_ok(
        post()
            .body(probe_bytes(&dir, 0))
            .send()
            .await
            .expect("send"),
    )
    .await;
    let t = expect_error(
        post()
            .body(probe_bytes(&dir, 1))
            .send()
            .await
            .expect("send"),
        413,
    )
    .await;
    assert!(t.contains("237x177"), "{t}");
    // A decompression bomb: a few bytes claiming 100,000 x 100,000 pixels, refused unread.
    let bomb = header_only(100_000, 100_000);
    assert!(bomb.len() < 100);
    let t = expect_error(post().body(bomb).send().await.expect("send"), 413).await;
    assert!(t.contains("100000x100000"), "{t}");
    stop(server).await;
}

#[tokio::test]
async fn a_bomb_under_default_limits_is_refused_without_allocating() {
    let Some(dir) = model_fixture() else { return };
    let server = start(&dir, options()).await;
    let c = client();
    // 60,000 x 60,000 = 3.6 G pixels (10.8 GB decoded): refused from the header.
    let r = c
        .post(url(&server, "/api/caption"))
        .body(header_only(60_000, 60_000))
        .send()
        .await
        .expect("send");
    expect_error(r, 413).await;
    // A header within the limits whose data is missing: a decode error, not a crash.
    let r = c
        .post(url(&server, "/api/caption"))
        .body(header_only(4_000, 4_000))
        .send()
        .await
        .expect("send");
    expect_error(r, 400).await;
    stop(server).await;
}

#[tokio::test]
async fn a_full_queue_is_429() {
    let Some(dir) = model_fixture() else { return };
    let mut opts = options();
    opts.queue_capacity = 2;
    opts.max_batch = 1;
    opts.debug_model_delay = Duration::from_millis(1000);
    let server = start(&dir, opts).await;
    let c = client();
    let requests = (0..6).map(|_| {
        c.post(url(&server, "/api/caption"))
            .body(probe_bytes(&dir, 0))
            .send()
    });
    let responses = futures_join_all(requests.collect()).await;
    let mut statuses = Vec::new();
    for r in responses {
        let r = r.expect("send");
        let status = r.status().as_u16();
        if status == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            let t = expect_error(r, 429).await;
            assert!(t.contains("busy"), "{t}");
        }
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(
        statuses,
        [200, 200, 429, 429, 429, 429],
        "two admitted, four refused"
    );
    // Once the queue drains, requests are admitted again.
    let r = c
        .post(url(&server, "/api/caption"))
        .body(probe_bytes(&dir, 0))
        .send()
        .await;
    caption_ok(r.expect("send")).await;
    stop(server).await;
}

#[tokio::test]
async fn a_slow_request_times_out_with_504() {
    let Some(dir) = model_fixture() else { return };
    let mut opts = options();
    opts.request_timeout = Duration::from_millis(300);
    opts.debug_model_delay = Duration::from_millis(1500);
    let server = start(&dir, opts).await;
    let c = client();
    let t0 = std::time::Instant::now();
    let r = c
        .post(url(&server, "/api/caption"))
        .body(probe_bytes(&dir, 0))
        .send()
        .await
        .expect("send");
    let t = expect_error(r, 504).await;
    assert!(t.contains("timed out after 300 ms"), "{t}");
    assert!(
        t0.elapsed() < Duration::from_millis(1400),
        "answered before the model finished"
    );
    // The server is still healthy.
    let h = c
        .get(url(&server, "/api/health"))
        .send()
        .await
        .expect("send");
    assert_eq!(h.status().as_u16(), 200);
    stop(server).await;
}

#[tokio::test]
async fn concurrent_requests_are_micro_batched() {
    let Some(dir) = model_fixture() else { return };
    let mut opts = options();
    opts.max_batch = 8;
    opts.batch_window = Duration::from_millis(300);
    let server = start(&dir, opts).await;
    let c = client();
    // One at a time first: the reference answers.
    let mut alone = Vec::new();
    for i in 0..4 {
        let r = c
            .post(url(&server, "/api/caption"))
            .body(probe_bytes(&dir, i))
            .send()
            .await;
        let r = caption_ok(r.expect("send")).await;
        assert_eq!(r.batch_size, 1);
        alone.push(r);
    }
    let before = server.stats();
    assert_eq!((before.batches, before.images), (4, 4));

    let requests = (0..8).map(|k| {
        c.post(url(&server, "/api/caption"))
            .body(probe_bytes(&dir, k % 4))
            .send()
    });
    let responses = futures_join_all(requests.collect()).await;
    let mut batched = Vec::new();
    for r in responses {
        batched.push(caption_ok(r.expect("send")).await);
    }
    let after = server.stats();
    let calls = after.batches - before.batches;
    assert_eq!(after.images - before.images, 8);
    assert!(calls < 8, "8 concurrent requests took {calls} model calls");
    assert!(after.largest_batch > 1, "{after:?}");
    assert!(batched.iter().any(|r| r.batch_size > 1));
    // Batching does not change the answers.
    for (k, r) in batched.iter().enumerate() {
        assert_eq!(
            r.tokens,
            alone[k % 4].tokens,
            "request {k} (probe{})",
            k % 4
        );
    }
    stop(server).await;
}

#[tokio::test]
async fn cors_only_when_enabled() {
    let Some(dir) = model_fixture() else { return };
    let c = client();
    for cors in [false, true] {
        let server = start(&dir, ServeOptions { cors, ..options() }).await;
        let r = c
            .get(url(&server, "/api/health"))
            .header("origin", "http://example.invalid")
            .send()
            .await
            .expect("send");
        let allow = r.headers().get("access-control-allow-origin").cloned();
        assert_eq!(allow.is_some(), cors, "cors = {cors}: {allow:?}");
        stop(server).await;
    }
}

#[test]
fn defaults_are_safe() {
    let o = ServeOptions::default();
    assert!(o.host.is_loopback());
    assert_eq!(o.port, 7860);
    assert_eq!(o.max_body_bytes, 10_000_000);
    assert!(!o.cors);
    assert!(o.queue_capacity > 0 && o.max_batch > 0);
}

#[test]
fn start_up_errors_are_typed() {
    let missing = std::path::Path::new("/nonexistent/blip-model");
    let e = pipe_serve::Server::start(missing, pipe_stage_api::BackendChoice::Cpu, options())
        .err()
        .expect("no model there");
    assert!(matches!(e, pipe_serve::ServeError::Load(_)), "{e}");
    let Some(dir) = model_fixture() else { return };
    let mut opts = options();
    opts.examples = vec![dir.join("no-such-examples")];
    let e = pipe_serve::Server::start(&dir, pipe_stage_api::BackendChoice::Cpu, opts)
        .err()
        .expect("examples missing");
    assert!(e.to_string().contains("no-such-examples"), "{e}");
    let opts = ServeOptions {
        max_batch: 0,
        ..options()
    };
    let e = pipe_serve::Server::start(&dir, pipe_stage_api::BackendChoice::Cpu, opts)
        .err()
        .expect("bad option");
    assert!(matches!(e, pipe_serve::ServeError::Options(_)), "{e}");
}

/// Await all futures concurrently (a tiny `join_all`, to avoid a dependency).
async fn futures_join_all<F, T>(futures: Vec<F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
