//! Property tests: no input makes the pipeline parser panic.

use proptest::prelude::*;
use std::path::Path;

/// The parser needs a registry of kinds; the `command` kind is the one these inputs name.
static REGISTRY: pipe::registry::Registry = pipe::registry::Registry {
    kinds: &[&pipe_stage_command::Command],
    backend: |_| Ok("cpu".to_string()),
    devices: |_| 0,
};

fn parse(text: &str) {
    let _ = pipe::spec::parse(Path::new("/tmp/p/pipeline.toml"), text, &[], &REGISTRY);
}

/// Pipeline-shaped TOML built from plausible and implausible pieces.
fn pipeline_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("kind".to_string()),
        Just("deps".to_string()),
        Just("cmd".to_string()),
        Just("inputs".to_string()),
        Just("params".to_string()),
        Just("results".to_string()),
        "[a-z]{1,6}",
    ];
    let value = prop_oneof![
        Just("\"command\"".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("[]".to_string()),
        Just("{ x = 1 }".to_string()),
        Just("-3".to_string()),
        Just("1e400".to_string()),
        Just("nan".to_string()),
        Just("1979-05-27T07:32:00Z".to_string()),
        "\"[^\"\\\\\n]{0,8}\"",
        any::<i64>().prop_map(|i| i.to_string()),
    ];
    let stage =
        ("[a-c]{1,2}", prop::collection::vec((key, value), 0..5)).prop_map(|(name, kvs)| {
            let body: String = kvs
                .into_iter()
                .map(|(k, v)| format!("{k} = {v}\n"))
                .collect();
            format!("[stages.{name}]\n{body}")
        });
    let header = prop_oneof![
        Just(String::new()),
        Just("[pipeline]\nseed = 1\n".to_string()),
        Just("[pipeline]\nbackend = 5\n".to_string())
    ];
    (header, prop::collection::vec(stage, 0..5))
        .prop_map(|(h, stages)| format!("{h}{}", stages.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        parse(&text);
    }

    #[test]
    fn pipeline_shaped_toml_never_panics(text in pipeline_like()) {
        parse(&text);
    }

    #[test]
    fn overrides_never_panic(flag in "[a-z.=\"\\[\\] 0-9]{0,20}") {
        if let Ok(o) = flag.parse::<pipe::spec::Override>() {
            let _ = pipe::spec::parse(Path::new("/tmp/p/pipeline.toml"), "[stages.a]\nkind = \"command\"\ncmd = \"x\"\n", &[o], &REGISTRY);
        }
    }
}
