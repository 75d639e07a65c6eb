//! Every validation error, with its location, as the user sees it.

use super::*;

/// stderr of a failing `pipe status`, with its exit code checked.
fn error_of(pipeline: &str, extra: &[&str]) -> String {
    let p = Project::new(pipeline);
    let mut args = vec!["status"];
    args.extend_from_slice(extra);
    let out = p.pipe(&args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "invalid pipelines exit with 2: {}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "nothing on stdout");
    text(&out.stderr)
}

const OK_STAGE: &str = "[stages.prep]\nkind = \"command\"\ncmd = \"true\"\n";

#[test]
fn validation_errors_name_file_line_and_key() {
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        ("toml syntax", "[stages.prep\nkind = 1\n".into(), vec![]),
        ("unknown top-level key", format!("[pipelin]\nname = \"x\"\n{OK_STAGE}"), vec![]),
        ("unknown pipeline key", format!("[pipeline]\nseeed = 1\n{OK_STAGE}"), vec![]),
        ("bad backend", format!("[pipeline]\nbackend = \"gpu\"\n{OK_STAGE}"), vec![]),
        ("negative seed", format!("[pipeline]\nseed = -1\n{OK_STAGE}"), vec![]),
        ("no stages", "[pipeline]\nname = \"x\"\n".into(), vec![]),
        ("unknown kind", "[stages.prep]\nkind = \"comand\"\ncmd = \"true\"\n".into(), vec![]),
        ("kind defaults to the stage name", "[stages.train]\ncmd = \"true\"\n".into(), vec![]),
        ("unknown kind from the stage name", "[stages.trian]\ncmd = \"true\"\n".into(), vec![]),
        ("unknown param", "[stages.prep]\nkind = \"command\"\ncmd = \"true\"\ninptus = []\n".into(), vec![]),
        ("missing cmd", "[stages.prep]\nkind = \"command\"\n".into(), vec![]),
        ("missing dep", format!("{OK_STAGE}[stages.train]\nkind = \"command\"\ndeps = [\"prpe\"]\ncmd = \"true\"\n"), vec![]),
        (
            "cycle",
            "[stages.a]\nkind = \"command\"\ndeps = [\"c\"]\ncmd = \"true\"\n[stages.b]\nkind = \"command\"\ndeps = [\"a\"]\ncmd = \"true\"\n[stages.c]\nkind = \"command\"\ndeps = [\"b\"]\ncmd = \"true\"\n".into(),
            vec![],
        ),
        ("self dependency", "[stages.a]\nkind = \"command\"\ndeps = [\"a\"]\ncmd = \"true\"\n".into(), vec![]),
        (
            "duplicate output path",
            "[stages.a]\nkind = \"command\"\ncmd = \"true\"\nresults = \"results/shared\"\n[stages.b]\nkind = \"command\"\ncmd = \"true\"\nresults = \"results/shared\"\n".into(),
            vec![],
        ),
        ("bad stage name", "[stages.\"1st\"]\nkind = \"command\"\ncmd = \"true\"\n".into(), vec![]),
        ("--set unknown stage", OK_STAGE.into(), vec!["--set", "perp.cmd=x"]),
        ("--set bad param", OK_STAGE.into(), vec!["--set", "prep.cmdd=x"]),
        ("several problems at once", "[pipeline]\nbackend = 3\n[stages.a]\nkind = \"command\"\ndeps = [\"zz\"]\n".into(), vec![]),
        ("a type error at its key", "[stages.prep]\ndataset = \"synthetic\"\n\nimages = \"many\"\n".into(), vec![]),
        ("a nested type error at its key", "[stages.prep]\ndataset = \"synthetic\"\n[stages.prep.split]\ntrain = \"most\"\n".into(), vec![]),
        ("a --set type error at the flag", "[stages.prep]\ndataset = \"synthetic\"\n".into(), vec!["--set", "prep.images=many"]),
    ];
    let mut all = String::new();
    for (name, pipeline, extra) in cases {
        all.push_str(&format!("--- {name}\n{}", error_of(&pipeline, &extra)));
    }
    insta::assert_snapshot!("validation_errors", all);
}

#[test]
fn missing_pipeline_file_and_unknown_stage_are_clear() {
    let p = Project::new(OK_STAGE);
    let out = p.pipe(&["status", "-p", "nope.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read pipeline file nope.toml"),
        "{}",
        text(&out.stderr)
    );
    let out = p.pipe(&["run", "prepp"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no stage named `prepp`")
            && text(&out.stderr).contains("did you mean `prep`?")
    );
}

#[test]
fn a_missing_input_fails_the_stage_naming_the_path() {
    let p = Project::new(
        "[stages.prep]\nkind = \"command\"\ninputs = [\"data/urls.txt\"]\ncmd = \"true\"\n",
    );
    let out = p.pipe(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("input data/urls.txt does not exist"),
        "{}",
        text(&out.stdout)
    );
}

/// The repository's own pipeline.toml on a machine without Flickr8k: the run fails at prep
/// saying where to get the data and how to try pipe without it.
#[test]
fn the_real_job_without_flickr8k_says_where_to_get_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = Project::new(&std::fs::read_to_string(root.join("pipeline.toml")).expect("pipeline"));
    let out = p.pipe(&["run"]);
    assert_eq!(out.status.code(), Some(1));
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for needle in ["prep", "data/flickr8k", "kaggle.com", "examples/quickstart"] {
        assert!(said.contains(needle), "{needle}:\n{said}");
    }
}

/// Run pipe, killing it if it has not finished within `limit` (a hang is a failure).
fn within(cmd: &mut std::process::Command, limit: std::time::Duration) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("pipe hung for {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn special_files_in_an_output_or_an_input_are_refused_not_opened() {
    // Before: a FIFO in $PIPE_OUT hung `pipe run` in results::update, holding the meta lock.
    let p = Project::new(
        "[stages.fifo]\nkind = \"command\"\ncmd = \"mkfifo $PIPE_OUT/p; echo x > $PIPE_OUT/x\"\n",
    );
    let limit = std::time::Duration::from_secs(60);
    let out = within(&mut p.command(&["run"]), limit);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("is a FIFO (named pipe)") && said.contains("/out/p"),
        "{said}"
    );
    assert!(artifact_dirs(&p).is_empty(), "nothing published");
    let scratch = std::fs::read_dir(p.path("cache/v1/tmp")).map_or(0, |d| d.count());
    assert_eq!(scratch, 0, "the refused output's scratch dir is removed");
    // Under an input: named, never opened, left out of the key (nothing can read it), and
    // the stage runs on the rest.
    let q = Project::new("[stages.a]\nkind = \"command\"\ninputs = [\"data\"]\ncmd = \"true\"\n");
    std::fs::create_dir(q.path("data")).expect("mkdir");
    let status = std::process::Command::new("mkfifo")
        .arg(q.path("data/pipe"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let out = within(&mut q.command(&["run"]), limit);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains("data/pipe is a FIFO"), "{said}");
}

#[test]
fn a_stage_name_too_long_for_a_file_name_is_refused_up_front() {
    // Before: a 300-character name passed validation, then every run failed with "File name
    // too long".
    let name = "a".repeat(300);
    let e = error_of(
        &format!("[stages.{name}]\nkind = \"command\"\ncmd = \"true\"\n"),
        &[],
    );
    assert!(
        e.contains("at most 64 characters (this one has 300)"),
        "{e}"
    );
    assert!(e.contains("pipeline.toml:1:"), "{e}");
    // The longest allowed name runs.
    let p = Project::new(&format!(
        "[stages.{}]\nkind = \"command\"\ncmd = \"echo x > $PIPE_OUT/x\"\n",
        "b".repeat(64)
    ));
    p.ok(&["run"]);
}

#[test]
fn the_cache_and_results_stay_inside_the_project() {
    // Before: `cache = "/"` made `pipe status` create /v1 and /CACHEDIR.TAG; `results = ".."`,
    // absolute paths and `../../x` were written to.
    let cmd = "[stages.a]\nkind = \"command\"\ncmd = \"true\"\n";
    for (pipeline, key, says) in [
        (format!("[pipeline]\ncache = \"/\"\n{cmd}"), "pipeline.cache", "PIPE_CACHE_DIR"),
        (format!("[pipeline]\ncache = \".\"\n{cmd}"), "pipeline.cache", "inside the project"),
        (format!("[pipeline]\nresults = \"..\"\n{cmd}"), "pipeline.results", "inside the project"),
        (format!("[pipeline]\nresults = \"/tmp/x\"\n{cmd}"), "pipeline.results", "inside the project"),
        (format!("{cmd}results = \"sub/../../../x\"\n"), "stages.a.results", "inside the project"),
        (format!("[pipeline]\nresults = \"cache/r\"\n{cmd}"), "pipeline.results", "overlaps the cache"),
        (format!("{cmd}results = \"cache\"\n"), "stages.a.results", "overlaps the cache"),
        (
            format!("{cmd}results = \"out\"\n[stages.b]\nkind = \"command\"\ncmd = \"true\"\nresults = \"out/b\"\n"),
            "stages.b.results",
            "must not nest",
        ),
        (
            "[stages.a]\nkind = \"command\"\ncmd = \"true\"\ninputs = [\"photos\"]\nresults = \"photos/captions\"\n".to_string(),
            "stages.a.results",
            "an input of stage `a`",
        ),
    ] {
        let e = error_of(&pipeline, &[]);
        assert!(e.contains(key) && e.contains(says), "{pipeline}\n→ {e}");
    }
    // Nothing was created outside the project (nor inside: status creates nothing).
    assert!(!Path::new("/v1").exists() && !Path::new("/CACHEDIR.TAG").exists());
    // The explicit way to a cache elsewhere.
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"echo x > $PIPE_OUT/x\"\n");
    let shared = tempfile::tempdir().expect("shared cache");
    let out = p
        .command(&["run"])
        .env("PIPE_CACHE_DIR", shared.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(shared.path().join("v1/artifacts").is_dir());
    assert!(!p.path("cache").exists());
}

#[test]
fn decoding_sizes_are_bounded_when_the_file_is_loaded() {
    // Before: `--set infer.num_beams=100000000` aborted the run on a 2.4 GB allocation.
    let infer = "[stages.i]\nkind = \"infer\"\nmodel = \"m\"\nimages = \"photos\"\n";
    for (extra, key, says) in [
        (
            vec!["--set", "i.num_beams=100000000"],
            "stages.i.num_beams",
            "maximum of 64",
        ),
        (
            vec!["--set", "i.max_new_tokens=100000"],
            "stages.i.max_new_tokens",
            "512 positions",
        ),
        (
            vec!["--set", "i.batch_size=1000000"],
            "stages.i.batch_size",
            "between 1 and 1024",
        ),
    ] {
        let e = error_of(infer, &extra);
        assert!(e.contains(key) && e.contains(says), "{extra:?} → {e}");
    }
}

#[test]
fn a_pipeline_file_that_is_not_utf8_is_located() {
    let p = Project::new("");
    std::fs::write(
        p.path("pipeline.toml"),
        b"[stages.prep]\nkind = \"command\"\ncmd = \"echo caf\xE9\"\n",
    )
    .expect("write");
    let out = p.pipe(&["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("pipeline.toml:3:16: not valid UTF-8"), "{err}");
}

/// 40,000 mistakes are answered as fast as a few: the first ones located, the rest counted.
#[test]
fn many_problems_are_listed_up_to_a_bound_and_counted() {
    let mut text_ = String::from(OK_STAGE);
    text_.push_str("[pipeline]\n");
    for i in 0..40_000 {
        text_.push_str(&format!("unknown_{i} = 1\n"));
    }
    let p = Project::new(&text_);
    let out = within(
        &mut p.command(&["status"]),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("40000 problems in the pipeline"),
        "{}",
        &err[..err.len().min(400)]
    );
    assert!(
        err.contains("… and 39950 more"),
        "{}",
        &err[err.len().saturating_sub(400)..]
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("unknown key")).count(),
        50
    );
}

/// `pipe score`: a byte-order mark is skipped; a line that is not UTF-8 is a located input
/// error (exit 2), not an I/O failure.
#[test]
fn score_skips_a_bom_and_locates_a_line_that_is_not_utf8() {
    let p = Project::new("[stages.a]\nkind = \"command\"\ncmd = \"true\"\n");
    p.write(
        "refs.jsonl",
        "{\"image\": \"a\", \"captions\": [\"a dog runs\"]}\n{\"image\": \"b\", \"captions\": [\"a cafe\"]}\n",
    );
    std::fs::write(
        p.path("bom.jsonl"),
        b"\xEF\xBB\xBF{\"image\": \"a\", \"caption\": \"a dog runs\"}\n{\"image\": \"b\", \"caption\": \"a cafe\"}\n",
    )
    .expect("write");
    let args = |preds: &'static str| {
        vec![
            "score",
            "--predictions",
            preds,
            "--references",
            "refs.jsonl",
            "--meteor",
            "skip",
        ]
    };
    p.ok(&args("bom.jsonl"));
    std::fs::write(
        p.path("latin1.jsonl"),
        b"{\"image\": \"a\", \"caption\": \"a dog runs\"}\n{\"image\": \"b\", \"caption\": \"a caf\xE9\"}\n",
    )
    .expect("write");
    let out = p.pipe(&args("latin1.jsonl"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("latin1.jsonl:2"), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
}

#[test]
fn hugging_face_parameter_names_are_translated_to_ours() {
    let err = error_of(
        "[stages.a]\nkind = \"train\"\nlearning_rate = 1e-4\n\n\
         [stages.b]\nkind = \"train\"\nnum_train_epochs = 3\n\n\
         [stages.c]\nkind = \"train\"\nlora_alpha = 16\n\n\
         [stages.d]\nkind = \"train\"\n[stages.d.lora]\ntarget_modules = [\"query\"]\n\n\
         [stages.e]\nkind = \"evaluate\"\nper_device_eval_batch_size = 8\n",
        &[],
    );
    for want in [
        "pipeline.toml:3:1: stages.a.learning_rate: unknown",
        "did you mean `lr`? (`learning_rate` is the Hugging Face name",
        "did you mean `epochs`?",
        "did you mean `lora.alpha`?",
        "stages.d.lora.target_modules",
        "did you mean `targets`?",
        "stages.e.per_device_eval_batch_size",
        "did you mean `batch_size`?",
    ] {
        assert!(err.contains(want), "{want}:\n{err}");
    }
}
