//! End to end in a real browser: headless Chromium, driven over WebDriver (chromedriver) with
//! fantoccini, opens the page, uploads a fixture image, waits for the caption and checks it is
//! what the API answers for the same image; then captions an example image by clicking it.
//! Keeps a screenshot at `target/serve-e2e.png` (or `$PIPE_SERVE_SCREENSHOT`).
//!
//! Skips with a note when chromium or chromedriver is absent (`apt-get install chromium
//! chromium-driver`; `$CHROMIUM` and `$CHROMEDRIVER` override the binaries).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{form, options, probe, start, stop, url};
use fantoccini::{ClientBuilder, Locator};
use pipe_serve::CaptionResponse;
use pipe_test_support::model_fixture;

fn find_binary(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in names {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// chromedriver, killed when dropped (even when the test fails).
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start_driver(binary: &Path) -> Driver {
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let status = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(&status).await
            && r.status().is_success()
        {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn screenshot_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PIPE_SERVE_SCREENSHOT") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("serve-e2e.png")
}

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
    let chromium = find_binary(
        "CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let chromedriver = find_binary("CHROMEDRIVER", &["chromedriver"]);
    let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
        eprintln!(
            "skipping the browser test: chromium and chromedriver are not installed \
             (apt-get install chromium chromium-driver)"
        );
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

    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--window-size=1200,1500",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a WebDriver session");

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
        let path = screenshot_path();
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
