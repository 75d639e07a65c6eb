//! End to end in a real browser: headless Chromium, driven over WebDriver (chromedriver) with
//! fantoccini, opens the page, uploads a fixture image, waits for the caption and checks it is
//! what the API answers for the same image; then captions an example image by clicking it.
//! Keeps a screenshot at `target/serve-e2e.png` (or `$PIPE_SERVE_SCREENSHOT`).
//!
//! Skips with a note when chromium or chromedriver is absent (`apt-get install chromium
//! chromium-driver`; `$CHROMIUM` and `$CHROMEDRIVER` override the binaries), unless
//! `PIPE_REQUIRE_BROWSER` is set (pipe_test_support::browser).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{form, options, probe, start, stop, url};
use fantoccini::Locator;
use pipe_serve::CaptionResponse;
use pipe_test_support::{browser, model_fixture};

async fn api_caption(server: &pipe_serve::Server, image: &Path) -> CaptionResponse {
    let bytes = std::fs::read(image).expect("read image");
    let r = reqwest::Client::new()
        .post(url(server, "/api/caption"))
        .multipart(form(bytes, &[]))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.expect("caption json")
}

/// Poll `#caption` until its state is `done` and its text is `want`.
async fn wait_for_caption(client: &fantoccini::Client, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    loop {
        if let Ok(el) = client.find(Locator::Css("#caption")).await {
            let state = el
                .attr("data-state")
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            last = el.text().await.unwrap_or_default();
            if state == "error" {
                let err = client
                    .find(Locator::Css("#error"))
                    .await
                    .expect("#error")
                    .text()
                    .await
                    .unwrap_or_default();
                panic!("the page shows an error: {err}");
            }
            if state == "done" && last == want {
                return last;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no caption {want:?} on the page (last: {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_captions_an_uploaded_image_in_chromium() {
    let Some(dir) = model_fixture() else { return };
    let Some((chromium, chromedriver)) = browser::binaries() else {
        return;
    };

    let mut opts = options();
    opts.examples = vec![dir.join("reference/images")];
    opts.info.source = Some("blip-tiny (test fixture)".into());
    opts.info.stage = Some("train".into());
    opts.info.stage_key = Some("3f2a9c1e7b".into());
    opts.info.metrics = Some(serde_json::json!({"BLEU-4": 0.1234, "CIDEr": 0.5678}));
    let server = start(&dir, opts).await;
    // chromedriver wants a canonical path for uploads.
    let upload = probe(&dir, 1).canonicalize().expect("canonical path");
    let expected = api_caption(&server, &upload).await;
    let expected_example = api_caption(&server, &probe(&dir, 0)).await;

    let driver = browser::start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let client = browser::session(&driver, &chromium, profile.path(), (1200, 1500)).await;

    let result = async {
        client.goto(&server.url()).await?;
        let title = client.title().await?;
        assert!(title.contains("captioner"), "{title}");
        // The model facts come from /api/info.
        client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css("#model-info dd"))
            .await?;
        let line = client
            .find(Locator::Css("#model-line"))
            .await?
            .text()
            .await?;
        assert!(line.contains("train"), "{line}");

        // Upload through the file picker.
        let input = client.find(Locator::Css("#file")).await?;
        input.send_keys(&upload.display().to_string()).await?;
        let shown = wait_for_caption(&client, &expected.caption).await;
        assert_eq!(shown, expected.caption);
        let timing = client.find(Locator::Css("#timing")).await?.text().await?;
        assert!(timing.contains("ms"), "{timing}");

        // An example image: four thumbnails, the first is probe0.
        let examples = client.find_all(Locator::Css("#examples .example")).await?;
        assert_eq!(examples.len(), 4);
        examples[0].click().await?;
        wait_for_caption(&client, &expected_example.caption).await;

        // Back to the uploaded image for the screenshot.
        input.send_keys(&upload.display().to_string()).await?;
        wait_for_caption(&client, &expected.caption).await;
        let png = client.screenshot().await?;
        let path = browser::screenshot_path("PIPE_SERVE_SCREENSHOT", "serve-e2e.png");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot dir");
        }
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        Ok::<(), fantoccini::error::CmdError>(())
    }
    .await;
    let _ = client.close().await;
    drop(driver);
    result.expect("browser steps");
    stop(server).await;
}
