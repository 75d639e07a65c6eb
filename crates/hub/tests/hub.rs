//! Hub ids not in the cache are downloaded into it, in the standard layout, from `HF_ENDPOINT`:
//! here a mock Hub on 127.0.0.1 serving the fixture's files the way huggingface.co does
//! (`/ORG/NAME/resolve/REV/FILE`, ranged GETs answered with `Content-Range`, `ETag` and
//! `X-Repo-Commit`).

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use pipe_blip::weights::load_model;
use pipe_hub::{HubError, HubOptions, ModelDir, ModelSource};
use pipe_test_support::fixture_dir;
use pipe_test_support::mock_hub::{COMMIT, Mock, Seen, fixture_files};

type Cpu = pipe_backend::CpuBackend;

/// A command-line source resolved with explicit Hub settings.
fn resolve(source: &str, hub: &HubOptions) -> Result<ModelDir, HubError> {
    ModelSource::parse(source, hub)?.resolve(hub)
}

fn requested(seen: &[Seen], file: &str) -> bool {
    seen.iter().any(|s| s.path.ends_with(&format!("/{file}")))
}

/// Snapshot directories of the cache that hold a config.json (what a lookup would accept).
fn snapshots_with_config(cache: &Path) -> Vec<PathBuf> {
    let Ok(repos) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    repos
        .filter_map(|r| std::fs::read_dir(r.ok()?.path().join("snapshots")).ok())
        .flatten()
        .filter_map(|s| Some(s.ok()?.path()))
        .filter(|s| s.join("config.json").is_file())
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> Vec<String> {
    let mut chain = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    chain
}

#[test]
fn load_error_crosses_threads() {
    // Callers box it as `dyn Error + Send + Sync`.
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<HubError>();
}

#[test]
fn downloads_into_the_cache_once() {
    let Some((fixture, mut files)) = fixture_files(&fixture_dir()) else {
        return;
    };
    // A pickle next to the safetensors: never asked for.
    files.insert("pytorch_model.bin".into(), b"not a pickle".to_vec());
    let mock = Mock::start(files, None);
    let cache = tempfile::tempdir().expect("tmp");
    let hub = HubOptions {
        token: Some("hf_secret".into()),
        ..mock.options(cache.path())
    };

    let dir = resolve("org/tiny", &hub).expect("download");
    let repo = cache.path().join("models--org--tiny");
    assert_eq!(dir.dir, repo.join("snapshots").join(COMMIT));
    let main = std::fs::read_to_string(repo.join("refs/main")).expect("refs/main");
    assert_eq!(main.trim(), COMMIT);
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "generation_config.json",
    ] {
        let got = std::fs::read(dir.dir.join(file)).expect(file);
        let want = std::fs::read(fixture.join(file)).expect(file);
        assert!(got == want, "{file} differs from the fixture");
        // The standard layout: snapshot entries link to content-addressed blobs.
        let link = std::fs::symlink_metadata(dir.dir.join(file)).expect(file);
        assert!(link.file_type().is_symlink(), "{file} is not a link");
    }
    assert!(!dir.dir.join("vocab.txt").exists(), "404 → skipped");

    let seen = mock.seen();
    assert!(!requested(&seen, "pytorch_model.bin"), "{seen:?}");
    assert!(
        requested(&seen, "vocab.txt"),
        "optional files are asked for"
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer hf_secret")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| s.path.contains("/org/tiny/resolve/main/"))
    );

    let device = Default::default();
    let (config, _model) = load_model::<Cpu>(&dir, &device).expect("load");
    assert!(config.text_config.vocab_size > 0);

    let again = resolve("org/tiny", &hub).expect("cached");
    assert_eq!(again.dir, dir.dir);
    assert_eq!(
        mock.seen().len(),
        seen.len(),
        "the second resolve used the network"
    );
}

#[test]
fn revision_is_downloaded_and_found_again() {
    let Some((_, files)) = fixture_files(&fixture_dir()) else {
        return;
    };
    let mock = Mock::start(files, None);
    let cache = tempfile::tempdir().expect("tmp");
    let hub = mock.options(cache.path());
    let dir = resolve("org/tiny@v1.0", &hub).expect("download");
    let repo = cache.path().join("models--org--tiny");
    assert_eq!(dir.dir, repo.join("snapshots").join(COMMIT));
    let v1 = std::fs::read_to_string(repo.join("refs/v1.0")).expect("refs/v1.0");
    assert_eq!(v1.trim(), COMMIT);
    let seen = mock.seen();
    assert!(
        seen.iter().all(|s| s.path.contains("/resolve/v1.0/")),
        "{seen:?}"
    );

    let offline = HubOptions {
        offline: true,
        ..hub.clone()
    };
    let again = resolve("org/tiny@v1.0", &offline).expect("cached");
    assert_eq!(again.dir, dir.dir);
    // The commit itself names the snapshot too.
    let by_commit = resolve(&format!("org/tiny@{COMMIT}"), &offline);
    assert_eq!(by_commit.expect("by commit").dir, dir.dir);
    assert_eq!(mock.seen().len(), seen.len());
}

#[test]
fn repo_without_safetensors_is_refused() {
    let Some((_, mut files)) = fixture_files(&fixture_dir()) else {
        return;
    };
    files.remove("model.safetensors");
    files.insert("pytorch_model.bin".into(), b"not a pickle".to_vec());
    let mock = Mock::start(files, None);
    let cache = tempfile::tempdir().expect("tmp");
    let hub = mock.options(cache.path());

    let e = resolve("org/tiny", &hub).expect_err("no safetensors");
    eprintln!("{e}");
    assert!(matches!(e, HubError::NoSafetensors { .. }), "{e}");
    assert!(e.to_string().contains("has no model.safetensors"), "{e}");
    let seen = mock.seen();
    assert!(!requested(&seen, "pytorch_model.bin"), "{seen:?}");

    assert!(snapshots_with_config(cache.path()).is_empty());
    let offline = HubOptions {
        offline: true,
        ..hub
    };
    let e = resolve("org/tiny", &offline).expect_err("nothing cached");
    assert!(matches!(e, HubError::NotFound { .. }), "{e}");
}

#[test]
fn interrupted_download_is_not_a_model_and_resumes() {
    let Some((fixture, files)) = fixture_files(&fixture_dir()) else {
        return;
    };
    // config.json is fetched last: its failure leaves the weights without it.
    let broken = Mock::start(files.clone(), Some("config.json"));
    let cache = tempfile::tempdir().expect("tmp");
    let e = resolve("org/tiny", &broken.options(cache.path())).expect_err("config.json fails");
    assert!(matches!(e, HubError::Download { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("hf download org/tiny"),
        "{msg}"
    );
    let chain = error_chain(&e);
    assert!(
        chain.len() > 1 && chain[1..].join(": ").contains("500"),
        "{chain:?}"
    );

    let snapshot = cache
        .path()
        .join("models--org--tiny/snapshots")
        .join(COMMIT);
    assert!(snapshot.join("model.safetensors").is_file());
    assert!(!snapshot.join("config.json").exists());
    assert!(snapshots_with_config(cache.path()).is_empty());
    let offline = HubOptions {
        offline: true,
        ..broken.options(cache.path())
    };
    let e = resolve("org/tiny", &offline).expect_err("incomplete");
    assert!(matches!(e, HubError::NotFound { .. }), "{e}");

    // A rerun completes it without fetching the weights again (metadata requests only).
    let healthy = Mock::start(files, None);
    let dir = resolve("org/tiny", &healthy.options(cache.path())).expect("rerun");
    assert_eq!(dir.dir, snapshot);
    let got = std::fs::read(dir.config_path()).expect("config");
    assert!(got == std::fs::read(fixture.join("config.json")).expect("fixture"));
    let weights: Vec<Seen> = healthy
        .seen()
        .into_iter()
        .filter(|s| s.path.ends_with("/model.safetensors"))
        .collect();
    assert!(
        !weights.is_empty()
            && weights
                .iter()
                .all(|s| s.range.as_deref() == Some("bytes=0-0")),
        "{weights:?}"
    );
}

#[test]
fn offline_with_an_empty_cache_says_how_to_download() {
    let mock = Mock::start(HashMap::new(), None);
    let cache = tempfile::tempdir().expect("tmp");
    let hub = HubOptions {
        offline: true,
        ..mock.options(cache.path())
    };
    let e = resolve("org/tiny", &hub).expect_err("offline");
    assert!(matches!(e, HubError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("hf download org/tiny"), "{e}");
    assert!(mock.seen().is_empty(), "offline must not touch the network");
}

#[test]
fn unknown_repo_is_named() {
    let mock = Mock::start(HashMap::new(), None);
    let cache = tempfile::tempdir().expect("tmp");
    let e = resolve("org/none", &mock.options(cache.path())).expect_err("404");
    assert!(matches!(e, HubError::NotOnHub { status: 404, .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("org/none") && msg.contains("hf download org/none"),
        "{msg}"
    );
    assert!(std::error::Error::source(&e).is_some());
    assert_eq!(mock.seen().len(), 1, "only config.json is asked about");
}

#[test]
fn unreachable_hub_says_how_to_get_the_model() {
    // A port nobody listens on: connection refused.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let cache = tempfile::tempdir().expect("tmp");
    let hub = HubOptions {
        endpoint: format!("http://127.0.0.1:{port}"),
        cache_dir: Some(cache.path().to_path_buf()),
        offline: false,
        token: None,
    };
    let e = resolve("org/tiny", &hub).expect_err("no network");
    assert!(matches!(e, HubError::Download { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("hf download org/tiny"), "{msg}");
    assert!(msg.contains("config.json"), "{msg}");
    assert!(msg.contains("local directory"), "{msg}");
    let chain = error_chain(&e);
    eprintln!("{}", chain.join("\n  caused by: "));
    assert!(chain.len() > 1, "no cause in {chain:?}");
    assert!(snapshots_with_config(cache.path()).is_empty());
}
