//! LoRA (Hu et al., 2021) as one reparameterisation of a Linear: y = x·W + b + s·(dropout(x)·A)·B
//! with W, b frozen, A `[in, r]`, B `[r, out]` and s = alpha / r, as PEFT computes it.
//!
//! [`LoraLinear`] is a frozen `Linear` with an optional unmerged branch. The text decoder's
//! query/key/value projections are `LoraLinear`s (the layers PEFT's BLIP recipes target); a
//! loaded model has no branch, and training puts one at the targeted paths
//! ([`crate::Blip::lora_linears_mut`]). Burn 0.21's `ModuleMapper` maps parameters but cannot
//! add a module, so the branch's slot is part of the model type.

use std::sync::Mutex;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

use crate::layers::linear_rows;

/// s·(dropout(x)·A)·B, added to the frozen projection's output. Dropout is active only on an
/// autodiff backend, i.e. while training.
#[derive(Module, Debug)]
pub struct LoraBranch<B: Backend> {
    /// `[in, r]`.
    pub a: Param<Tensor<B, 2>>,
    /// `[r, out]`.
    pub b: Param<Tensor<B, 2>>,
    #[module(skip)]
    pub scale: f64,
    /// PEFT's `lora_dropout`, drawn from this branch's own seed.
    pub dropout: SeededDropout,
}

/// Dropout whose mask comes from its own seed, not from wherever the backend's random stream
/// happens to be: the backend's generator is one per process (per backend type), and peers of a
/// data-parallel step, or two trainings of a sweep, drawing from it in threads would take
/// each other's numbers in whatever order the threads ran, so no run could be repeated or
/// resumed exactly. Each draw reseeds the generator under one process-wide lock and takes its
/// mask right away. Active only on an autodiff backend (training), as Burn's `Dropout`.
#[derive(Module, Clone, Debug)]
pub struct SeededDropout {
    pub prob: f64,
    /// Set for each forward pass by whoever builds the training model; a pass that drew
    /// twice from one branch would draw the same mask twice.
    pub seed: u64,
}

/// Serialises seeding and drawing from the backend's process-wide generator.
static DRAW: Mutex<()> = Mutex::new(());

impl SeededDropout {
    pub fn new(prob: f64, seed: u64) -> Self {
        Self { prob, seed }
    }

    pub fn forward<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let device = x.device();
        if self.prob == 0.0 || !B::ad_enabled(&device) {
            return x;
        }
        let keep = 1.0 - self.prob;
        let mask = {
            let _draw = DRAW
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            B::seed(&device, self.seed);
            x.random_like(Distribution::Bernoulli(keep))
        };
        x * mask * (1.0 / keep)
    }
}

impl<B: Backend> LoraBranch<B> {
    /// `[A, L, in]` → `[A, L, out]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.dropout.forward(x);
        let [a, l, d] = x.dims();
        let y = x
            .reshape([a * l, d])
            .matmul(self.a.val())
            .matmul(self.b.val())
            .mul_scalar(self.scale);
        let out = y.dims()[1];
        y.reshape([a, l, out])
    }
}

/// A Linear (`base`, the checkpoint's weight and bias) with an optional LoRA branch beside it.
/// `weights::RENAMES` drops the `base` segment, so the checkpoint names are the Linear's.
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    pub base: Linear<B>,
    /// Set only while training an adapter unmerged (with dropout); `None` in a loaded model.
    pub lora: Option<LoraBranch<B>>,
}

impl<B: Backend> LoraLinear<B> {
    /// A projection without a branch.
    pub fn new(base: Linear<B>) -> Self {
        Self { base, lora: None }
    }

    /// `[A, L, in]` → `[A, L, out]`: the base as one GEMM over all rows, plus the branch.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lora {
            Some(branch) => linear_rows(&self.base, x.clone()) + branch.forward(x),
            None => linear_rows(&self.base, x),
        }
    }
}

impl<B: Backend> crate::Blip<B> {
    /// Every [`LoraLinear`] of the model with its checkpoint module name
    /// (`text_decoder.bert.encoder.layer.0.attention.self.query`), in module order: where an
    /// unmerged branch can be put. The names come from the module paths through the one rename
    /// table ([`crate::weights::checkpoint_name`]).
    pub fn lora_linears_mut(&mut self) -> Vec<(String, &mut LoraLinear<B>)> {
        let mut out = Vec::new();
        for (i, layer) in self.text_decoder.bert.encoder.layer.iter_mut().enumerate() {
            let attentions = [
                ("attention", &mut layer.attention),
                ("crossattention", &mut layer.crossattention),
            ];
            for (kind, attention) in attentions {
                let p = &mut attention.projections;
                for (proj, linear) in [
                    ("query", &mut p.query),
                    ("key", &mut p.key),
                    ("value", &mut p.value),
                ] {
                    let path = format!(
                        "text_decoder.bert.encoder.layer.{i}.{kind}.projections.{proj}.base"
                    );
                    out.push((crate::weights::checkpoint_name(&path), linear));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use burn::module::ParamId;

    use super::*;
    use crate::weights::checkpoint_tensors;
    use crate::{Blip, BlipConfig};

    type B = pipe_backend::CpuBackend;

    fn tiny() -> Blip<B> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/quickstart/model/config.json");
        let config = BlipConfig::from_file(&path).expect("config");
        Blip::new(&config, &Default::default())
    }

    /// The names `lora_linears_mut` gives are where its branches really sit: a branch put in
    /// each slot shows up under that name in the model's tensors, and the slots are exactly the
    /// checkpoint's query/key/value Linears.
    #[test]
    fn lora_slots_are_named_as_the_checkpoint() {
        let mut model = tiny();
        let device = Default::default();
        let mut names = Vec::new();
        for (name, slot) in model.lora_linears_mut() {
            let [d_in, d_out] = slot.base.weight.dims();
            slot.lora = Some(LoraBranch {
                a: Param::initialized(ParamId::new(), Tensor::zeros([d_in, 2], &device)),
                b: Param::initialized(ParamId::new(), Tensor::zeros([2, d_out], &device)),
                scale: 1.0,
                dropout: SeededDropout::new(0.0, 0),
            });
            names.push(name);
        }
        let tensors: Vec<String> = checkpoint_tensors(&model)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let branches: Vec<&str> = tensors
            .iter()
            .filter_map(|n| n.strip_suffix(".lora.a"))
            .collect();
        assert_eq!(branches, names);
        let qkv: Vec<&str> = tensors
            .iter()
            .filter_map(|n| n.strip_suffix(".weight"))
            .filter(|n| {
                n.starts_with("text_decoder.")
                    && [".query", ".key", ".value"].iter().any(|p| n.ends_with(p))
            })
            .collect();
        assert_eq!(qkv, names);
        assert_eq!(names.len(), 6 * model.text_decoder.bert.encoder.layer.len());
        assert_eq!(
            names[0],
            "text_decoder.bert.encoder.layer.0.attention.self.query"
        );
    }
}
