//! A Hub model through the binary: `pipe run` downloads it (from a mock Hub) before planning,
//! so the stage's key covers the downloaded files from its first run on and the next run is
//! a no-op; `pipe status` never touches the network.

use super::*;
use pipe_test_support::mock_hub::{Mock, fixture_files};

#[test]
fn a_hub_model_is_fetched_before_planning_and_the_next_run_is_cached() {
    let Some(fixture) = fixture() else { return };
    let Some((_, files)) = fixture_files(&fixture) else {
        return;
    };
    let mock = Mock::start(files, None);
    let p = Project::new(&format!(
        r#"
[pipeline]
name = "hub-test"

[stages.prep]
kind = "prep"
dataset = "synthetic"
images = 12
size = 64
split = {{ train = 0.5, val = 0.25, test = 0.25 }}

[stages.collate]
kind = "collate"
deps = ["prep"]
model = "{}"
max_length = 24

[stages.encode]
kind = "encode"
deps = ["collate"]
model = "org/tiny"

[stages.train]
kind = "train"
deps = ["collate", "encode"]
model = "org/tiny"
epochs = 1
max_steps = 1
batch_size = 2
"#,
        fixture.display()
    ));
    let cache = p.path("hf-cache");
    let online = |args: &[&str]| {
        let mut cmd = p.command(args);
        cmd.env_remove("HF_HUB_OFFLINE")
            .env("HF_ENDPOINT", &mock.url)
            .env("HF_HUB_CACHE", &cache);
        cmd.output().expect("run pipe")
    };
    let out = online(&["run", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        stage_column(&v, "action"),
        pairs(&[
            ("prep", "ran"),
            ("collate", "ran"),
            ("encode", "ran"),
            ("train", "ran")
        ])
    );
    assert!(
        cache
            .join("models--org--tiny/snapshots")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "downloaded into HF_HUB_CACHE"
    );
    let requests = mock.seen().len();

    // Offline now: the cached copy keys the stage exactly as on the first run.
    let mut status = p.command(&["status", "--json"]);
    status.env("HF_HUB_CACHE", &cache);
    let out = status.output().expect("status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        stage_column(&v, "status").iter().all(|(_, s)| s == "fresh"),
        "{v}"
    );
    let out = online(&["run", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(
        stage_column(&v, "action")
            .iter()
            .all(|(_, a)| a == "cached"),
        "{v}"
    );
    assert_eq!(mock.seen().len(), requests, "nothing downloaded twice");

    // The adapter and the exported model card name the base by its Hub id, so PEFT and the
    // Hub find it wherever the export goes.
    let mut export = p.command(&["export", "train", "exported"]);
    export.env("HF_HUB_CACHE", &cache);
    let out = export.output().expect("export");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let adapter: serde_json::Value =
        serde_json::from_str(&p.read("exported/adapter/adapter_config.json")).expect("adapter");
    assert_eq!(adapter["base_model_name_or_path"], "org/tiny");
    let card = p.read("exported/README.md");
    assert!(card.contains("base_model: org/tiny\n"), "{card}");
    assert!(
        card.contains("- peft\n") && card.contains("PeftModel"),
        "{card}"
    );
    assert!(card.contains("No fresh evaluation"), "{card}");
}
