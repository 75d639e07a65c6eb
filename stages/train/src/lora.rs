//! LoRA (Hu et al., 2021) for Burn: y = x·W + b + s·(x·A)·B with W, b frozen, A `[in, r]`
//! (Kaiming-uniform as PEFT), B `[r, out]` (zero, so training starts at the base model) and
//! s = alpha / r.
//!
//! The model's modules are plain `Linear`s, so the adapter lives beside the model: per step
//! [`Trainable::merged`] builds the model whose targeted weights are W + s·A·B (one small
//! `[in, r]×[r, out]` product per layer, tracked by autodiff so the gradients reach A and B
//! only). The same function merges the adapter for export. With `lora_dropout` > 0 training
//! uses [`Trainable::training_model`], which puts unmerged branches in the model's
//! [`LoraLinear`]s (the text decoder's query/key/value projections; dropout acts on the branch's
//! input, so it cannot be merged).

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use pipe_blip::Blip;
use pipe_blip::lora::{LoraBranch, LoraLinear, SeededDropout};
use pipe_blip::weights::checkpoint_name;
use rand::{Rng, SeedableRng, rngs::StdRng};

/// One targeted layer's adapter.
#[derive(Module, Debug)]
pub struct LoraLayer<B: Backend> {
    /// `[in, r]`.
    pub a: Param<Tensor<B, 2>>,
    /// `[r, out]`.
    pub b: Param<Tensor<B, 2>>,
}

impl<B: Backend> LoraLayer<B> {
    /// s·A·B, `[in, out]` (tracked by autodiff).
    fn delta(&self, scale: f64) -> Tensor<B, 2> {
        self.a.val().matmul(self.b.val()).mul_scalar(scale)
    }
}

/// The adapters of all targeted layers, in the order of [`LoraSpec::names`].
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    pub layers: Vec<LoraLayer<B>>,
}

/// Which layers carry an adapter, and its scale.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// HF module names (`text_decoder.bert.encoder.layer.0.attention.self.query`).
    pub names: Vec<String>,
    pub r: usize,
    pub alpha: f64,
    /// PEFT's `lora_dropout`: dropout on the adapter's input while training.
    pub dropout: f64,
}

impl LoraSpec {
    pub fn scale(&self) -> f64 {
        self.alpha / self.r as f64
    }
}

/// The model and its adapter: the module the optimizer sees. With LoRA the model's
/// parameters do not require gradients; with full fine-tuning the adapter is empty.
#[derive(Module, Debug)]
pub struct Trainable<B: Backend> {
    pub model: Blip<B>,
    pub lora: LoraAdapter<B>,
}

/// Whether HF module `name` is selected by PEFT-style `targets` (exact or `.`-suffix match).
/// One seed from `seed` and `k` (SplitMix64's finaliser): the seeds of a run's dropout
/// draws, by epoch, step, peer and branch, without two of them meeting by accident.
pub fn mix_seed(seed: u64, k: u64) -> u64 {
    let mut z = seed
        ^ k.wrapping_add(0x9e37_79b9_7f4a_7c15)
            .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn is_target(name: &str, targets: &[String]) -> bool {
    targets
        .iter()
        .any(|t| name == t || name.ends_with(&format!(".{t}")))
}

/// The module path being walked by a visitor or mapper, and whether the parameter reached is
/// a `Linear`'s weight; the Linear's HF module name then comes from [`checkpoint_name`] (the
/// one rename table), so no table here restates the module tree.
#[derive(Default)]
struct LinearPath(Vec<(String, String)>);

impl LinearPath {
    fn enter(&mut self, name: &str, container: &str) {
        self.0.push((name.to_string(), container.to_string()));
    }

    fn exit(&mut self) {
        self.0.pop();
    }

    /// The HF module name of the Linear whose `weight` is being reached, if it is one.
    fn linear_weight(&self) -> Option<String> {
        match self.0.split_last() {
            Some(((name, container), parent))
                if name == "weight" && container == "Struct:Linear" =>
            {
                let path: Vec<&str> = parent.iter().map(|(n, _)| n.as_str()).collect();
                Some(checkpoint_name(&path.join(".")))
            }
            _ => None,
        }
    }

    /// Whether the Linear being walked is a [`LoraLinear`]'s base (it can take a branch). Burn
    /// enters a field with the type of the struct that holds it, so the `base` entry carries
    /// `Struct:LoraLinear`.
    fn in_lora_linear(&self) -> bool {
        let n = self.0.len();
        n >= 2 && self.0[n - 2].1 == "Struct:LoraLinear"
    }
}

/// Every Linear of the model with its HF module name and `[in, out]` weight shape, in module
/// (= checkpoint) order, found by walking the module tree.
pub fn linears<B: Backend, M: Module<B>>(m: &M) -> Vec<(String, [usize; 2])> {
    struct Names(LinearPath, Vec<(String, [usize; 2])>);
    impl<B: Backend> ModuleVisitor<B> for Names {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.0.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(name) = self.0.linear_weight() {
                let dims = param.lazy_shape().dims::<D>();
                if let [d_in, d_out] = dims[..] {
                    self.1.push((name, [d_in, d_out]));
                }
            }
        }
    }
    let mut v = Names(LinearPath::default(), Vec::new());
    m.visit(&mut v);
    v.1
}

/// The HF module names of the Linears that can take an unmerged branch (the bases of the
/// model's [`LoraLinear`]s), found by their type.
pub fn lora_capable<B: Backend, M: Module<B>>(m: &M) -> Vec<String> {
    struct Names(LinearPath, Vec<String>);
    impl<B: Backend> ModuleVisitor<B> for Names {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.0.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.exit();
        }
        fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<B, D>>) {
            if let Some(name) = self.0.linear_weight().filter(|_| self.0.in_lora_linear()) {
                self.1.push(name);
            }
        }
    }
    let mut v = Names(LinearPath::default(), Vec::new());
    m.visit(&mut v);
    v.1
}

/// `m` with W + delta for the Linears named in `deltas` (HF module names → `[in, out]`).
fn add_to_linears<B: Backend, M: Module<B>>(m: M, deltas: HashMap<String, Tensor<B, 2>>) -> M {
    struct Merge<B: Backend>(LinearPath, HashMap<String, Tensor<B, 2>>);
    impl<B: Backend> ModuleMapper<B> for Merge<B> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.0.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.0.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let Some(delta) = self.0.linear_weight().and_then(|n| self.1.remove(&n)) else {
                return param;
            };
            let id = param.id;
            let w = param.val();
            let dims = w.dims();
            Param::initialized(id, w + delta.reshape(dims))
        }
    }
    if deltas.is_empty() {
        return m;
    }
    m.map(&mut Merge(LinearPath::default(), deltas))
}

/// The targeted layers' names and `[in, out]` shapes.
pub fn targeted<B: Backend>(m: &Blip<B>, targets: &[String]) -> Vec<(String, [usize; 2])> {
    linears(m)
        .into_iter()
        .filter(|(n, _)| is_target(n, targets))
        .collect()
}

impl<B: Backend> LoraAdapter<B> {
    /// Fresh adapters for `shapes` (`[in, out]` each): A ~ Kaiming-uniform(a=√5) as PEFT
    /// (bound 1/√in), B = 0; seeded, independent of the backend.
    pub fn new(shapes: &[[usize; 2]], r: usize, seed: u64, device: &B::Device) -> Self {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x4c6f_5241);
        let layers = shapes
            .iter()
            .map(|&[d_in, d_out]| {
                let bound = 1.0 / (d_in as f32).sqrt();
                let a: Vec<f32> = (0..d_in * r)
                    .map(|_| rng.random_range(-bound..bound))
                    .collect();
                let a = Tensor::from_data(TensorData::new(a, [d_in, r]), device);
                let b = Tensor::zeros([r, d_out], device);
                LoraLayer {
                    a: Param::initialized(ParamId::new(), a.require_grad()),
                    b: Param::initialized(ParamId::new(), b.require_grad()),
                }
            })
            .collect();
        Self { layers }
    }

    pub fn empty() -> Self {
        Self { layers: Vec::new() }
    }
}

/// Targeted layers whose LoRA dropout cannot be applied (only a [`LoraLinear`] takes an
/// unmerged branch); they train without dropout.
pub fn without_dropout<'a, B: Backend>(model: &Blip<B>, spec: &'a LoraSpec) -> Vec<&'a str> {
    let capable = lora_capable(model);
    spec.names
        .iter()
        .filter(|n| !capable.contains(n))
        .map(String::as_str)
        .collect()
}

impl<B: Backend> Trainable<B> {
    /// The model the training forward pass uses: the text decoder's query/key/value targets
    /// get an unmerged branch s·(dropout(x)·A)·B, as PEFT computes it (dropout cannot be
    /// merged, and the backward pass then never forms a full-size weight gradient); other
    /// targets are merged as in [`Self::merged`]. Everything else is shared with
    /// `self.model`; with no adapter, a clone. The k-th branch draws its dropout mask from
    /// `dropout_seed` mixed with k: one forward pass, one seed.
    pub fn training_model(&self, spec: &LoraSpec, dropout_seed: u64) -> Blip<B> {
        let mut m = self.model.clone();
        let scale = spec.scale();
        let mut merged = HashMap::new();
        {
            let mut slots: HashMap<String, &mut LoraLinear<B>> =
                m.lora_linears_mut().into_iter().collect();
            for (k, (name, layer)) in spec.names.iter().zip(&self.lora.layers).enumerate() {
                match slots.remove(name) {
                    Some(slot) => {
                        slot.lora = Some(LoraBranch {
                            a: Param::initialized(layer.a.id, layer.a.val()),
                            b: Param::initialized(layer.b.id, layer.b.val()),
                            scale,
                            dropout: SeededDropout::new(
                                spec.dropout,
                                mix_seed(dropout_seed, k as u64),
                            ),
                        });
                    }
                    None => {
                        merged.insert(name.clone(), layer.delta(scale));
                    }
                }
            }
        }
        add_to_linears(m, merged)
    }

    /// The merged model: targeted weights W + s·A·B (tracked by autodiff on an autodiff
    /// backend), everything else shared with `self.model`. With no adapter, a clone. This is
    /// what validation, evaluation and the export use.
    pub fn merged(&self, spec: &LoraSpec) -> Blip<B> {
        let scale = spec.scale();
        let deltas = spec
            .names
            .iter()
            .zip(&self.lora.layers)
            .map(|(name, layer)| (name.clone(), layer.delta(scale)))
            .collect();
        add_to_linears(self.model.clone(), deltas)
    }
}

/// Parameter counts of a module: (requiring gradients, all).
pub fn count_params<B: Backend, M: Module<B>>(m: &M) -> (usize, usize) {
    struct Counter {
        trainable: usize,
        total: usize,
    }
    impl<B: Backend> burn::module::ModuleVisitor<B> for Counter {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let n = param.lazy_shape().num_elements();
            self.total += n;
            if param.is_require_grad() {
                self.trainable += n;
            }
        }
    }
    let mut c = Counter {
        trainable: 0,
        total: 0,
    };
    m.visit(&mut c);
    (c.trainable, c.total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linears_are_named_and_ordered_as_the_checkpoint() {
        use pipe_backend::{CpuBackend, CpuDevice};
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/quickstart/model/config.json");
        let config = pipe_blip::BlipConfig::from_file(&dir).expect("config");
        let model = Blip::<CpuBackend>::new(&config, &CpuDevice::default());
        let found = linears(&model);
        let tensors: Vec<String> = pipe_blip::weights::checkpoint_tensors(&model)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        // Every Linear weight of the checkpoint, in its order, and nothing else.
        let expected: Vec<&str> = tensors
            .iter()
            .filter_map(|n| n.strip_suffix(".weight"))
            .filter(|n| tensors.contains(&format!("{n}.bias")) && !n.contains("LayerNorm"))
            .filter(|n| !n.contains("layer_norm") && !n.contains("post_layernorm"))
            .filter(|n| !n.ends_with("patch_embedding"))
            .collect();
        let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, expected);
        assert_eq!(names[0], "vision_model.encoder.layers.0.self_attn.qkv");
        assert!(names.contains(&"text_decoder.bert.encoder.layer.0.attention.self.query"));
        let (_, [d_in, d_out]) = &found[0];
        assert_eq!(*d_out, 3 * d_in, "[in, out] shapes");
        let t = targeted(&model, &["query".into(), "value".into()]);
        assert_eq!(t.len(), 4 * config.text_config.num_hidden_layers);
        // Only the text decoder's projections (LoraLinears) take an unmerged branch.
        let capable = lora_capable(&model);
        let qkv: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| n.starts_with("text_decoder.") && n.contains(".self."))
            .collect();
        assert_eq!(capable, qkv);
        let spec = LoraSpec {
            names: vec![names[0].to_string(), qkv[0].to_string()],
            r: 2,
            alpha: 2.0,
            dropout: 0.1,
        };
        assert_eq!(without_dropout(&model, &spec), vec![names[0]]);
    }

    #[test]
    fn peft_suffix_matching() {
        let t = vec!["query".to_string(), "value".to_string()];
        assert!(is_target(
            "text_decoder.bert.encoder.layer.0.attention.self.query",
            &t
        ));
        assert!(is_target(
            "text_decoder.bert.encoder.layer.3.crossattention.self.value",
            &t
        ));
        assert!(!is_target(
            "text_decoder.bert.encoder.layer.0.attention.self.key",
            &t
        ));
        assert!(!is_target(
            "vision_model.encoder.layers.0.self_attn.qkv",
            &t
        ));
        assert!(!is_target("x.myquery", &t));
    }
}
