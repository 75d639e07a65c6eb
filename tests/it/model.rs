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
