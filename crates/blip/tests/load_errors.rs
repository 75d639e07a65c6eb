//! A checkpoint that does not fit the config is an error naming the tensor: missing, unused or
//! mis-shaped. The tied LM-head weight may be present or absent.

mod common;

use std::path::Path;

use common::{Cpu, rewrite};
use pipe_blip::weights::{LoadError, load_weights};
use pipe_blip::{Blip, BlipConfig};
use pipe_test_support::reference_fixture;

fn load(dir: &Path, weights: &Path) -> Result<Blip<Cpu>, LoadError> {
    let config = BlipConfig::from_file(&dir.join("config.json")).expect("config");
    load_weights(Blip::new(&config, &Default::default()), weights)
}

#[test]
fn missing_tensor_is_named() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.safetensors");
    let name = "text_decoder.bert.encoder.layer.1.crossattention.self.value.weight";
    rewrite(&dir, &out, |t| t.retain(|x| x.0 != name));
    let e = load(&dir, &out).expect_err("missing");
    assert!(matches!(e, LoadError::Missing { .. }), "{e}");
    assert!(e.to_string().contains(name), "{e}");
}

#[test]
fn unused_tensor_is_named() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.safetensors");
    rewrite(&dir, &out, |t| {
        t.push((
            "vision_model.extra.weight".into(),
            "F32".into(),
            vec![2],
            vec![0; 8],
        ))
    });
    let e = load(&dir, &out).expect_err("unused");
    assert!(matches!(e, LoadError::Unused { .. }), "{e}");
    assert!(e.to_string().contains("vision_model.extra.weight"), "{e}");
}

#[test]
fn misshaped_tensor_is_named() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.safetensors");
    let name = "vision_model.encoder.layers.0.mlp.fc1.bias";
    rewrite(&dir, &out, |t| {
        for x in t.iter_mut().filter(|x| x.0 == name) {
            x.2 = vec![64];
            x.3 = vec![0; 256];
        }
    });
    let e = load(&dir, &out).expect_err("shape");
    assert!(matches!(e, LoadError::Shape { .. }), "{e}");
    assert!(e.to_string().contains(name), "{e}");
}

#[test]
fn stored_tied_decoder_weight_is_accepted() {
    let Some(dir) = reference_fixture() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.safetensors");
    rewrite(&dir, &out, |t| {
        let word = t
            .iter()
            .find(|x| x.0 == "text_decoder.bert.embeddings.word_embeddings.weight")
            .cloned();
        let mut w = word.expect("word embeddings");
        w.0 = "text_decoder.cls.predictions.decoder.weight".into();
        t.push(w);
    });
    load(&dir, &out).expect("tied copy is fine");
}

#[test]
fn a_float_tensor_labelled_as_integer_is_an_error_not_a_crash() {
    // Before: Burn panicked inside load_from and the unwind segfaulted (exit 139).
    let Some(dir) = reference_fixture() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.safetensors");
    let name = "text_decoder.bert.embeddings.LayerNorm.bias";
    rewrite(&dir, &out, |t| {
        for x in t.iter_mut().filter(|x| x.0 == name) {
            x.1 = "I32".into(); // same byte length as F32
        }
    });
    let e = load(&dir, &out).expect_err("integer weights");
    assert!(matches!(e, LoadError::DType { .. }), "{e}");
    assert!(e.to_string().contains(&format!("{name} (I32)")), "{e}");
}

#[test]
fn a_config_larger_than_its_checkpoint_is_refused_before_allocating() {
    // Before: num_hidden_layers = 1000000 allocated 12.6 GB and aborted; with 20000 the
    // "missing tensor(s)" message was 34.9 MB.
    let Some(dir) = reference_fixture() else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).expect("mkdir");
    std::fs::copy(
        dir.join("model.safetensors"),
        model.join("model.safetensors"),
    )
    .expect("copy");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("config"))
            .expect("json");
    config["text_config"]["num_hidden_layers"] = 1_000_000.into();
    std::fs::write(model.join("config.json"), config.to_string()).expect("write");
    let dir = pipe_hub::ModelDir::open(&model).expect("model dir");
    let e = pipe_blip::weights::load_model::<Cpu>(&dir, &Default::default())
        .map(|_| ())
        .expect_err("too many layers");
    assert!(
        matches!(
            e,
            LoadError::Layers {
                wanted: 1_000_000,
                ..
            }
        ),
        "{e}"
    );
    // Long lists of names are cut.
    let many: Vec<String> = (0..20_000).map(|i| format!("t{i}")).collect();
    let e = LoadError::Missing {
        path: "m".into(),
        names: many,
    };
    let text = e.to_string();
    assert!(
        text.len() < 200 && text.ends_with("… and 19990 more"),
        "{text}"
    );
}
