//! Sources that name no model say how to get one; a missing relative directory is not taken
//! for a Hub id.

use pipe_hub::{HubError, HubOptions, ModelSource};

#[test]
fn unknown_source_says_how_to_get_it() {
    let cache = tempfile::tempdir().expect("tmp");
    let hub = HubOptions {
        offline: true,
        cache_dir: Some(cache.path().to_path_buf()),
        ..HubOptions::from_env()
    };
    let e = ModelSource::parse("no-such-org/no-such-model", &hub)
        .and_then(|source| source.resolve(&hub))
        .expect_err("absent");
    let msg = e.to_string();
    assert!(msg.contains("download"), "{msg}");
}

#[test]
fn a_missing_relative_directory_is_not_taken_for_a_hub_id() {
    let base = tempfile::tempdir().expect("tmp");
    let source = ModelSource::in_pipeline("./models/blip", base.path());
    let e = source.resolve(&HubOptions::from_env()).expect_err("absent");
    assert!(matches!(e, HubError::NoDirectory { .. }), "{e:?}");
    let msg = e.to_string();
    let want = base.path().join("models/blip");
    assert!(
        msg.contains(&format!("--local-dir {}", want.display())),
        "{msg}"
    );
    assert!(source.find().is_none());
}
