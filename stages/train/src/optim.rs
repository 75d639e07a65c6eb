//! AdamW (PyTorch's defaults: betas 0.9/0.999, eps 1e-8, decoupled weight decay; not on biases
//! and LayerNorm parameters, as transformers' Trainer) and global
//! gradient-norm clipping as `torch.nn.utils.clip_grad_norm_` (Burn's own clipping is per
//! parameter tensor).

use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use crate::lora::Trainable;

/// The optimizer configuration for weight decay `wd`.
pub fn adamw(weight_decay: f64) -> AdamWConfig {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(weight_decay as f32)
}

/// Scale all gradients of `module` so their global L2 norm is at most `max_norm`; returns the
/// norm before clipping.
pub fn clip_global_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: GradientsParams,
    max_norm: f64,
) -> (GradientsParams, f64) {
    struct Norm<'a> {
        grads: &'a GradientsParams,
        sq: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Norm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
                let s: f32 = g.powi_scalar(2).sum().into_scalar().elem();
                self.sq += f64::from(s);
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    use burn::tensor::ElementConversion;
    let mut norm = Norm {
        grads: &grads,
        sq: 0.0,
    };
    module.visit(&mut norm);
    let total = norm.sq.sqrt();
    let mut grads = grads;
    if max_norm > 0.0 && total > max_norm {
        let mut s = Scale {
            grads: &mut grads,
            factor: max_norm / (total + 1e-6),
        };
        module.visit(&mut s);
    }
    (grads, total)
}

/// AdamW as transformers' Trainer sets it up: weight decay on the matrices only, none on the
/// 1-D parameters (biases, LayerNorm scales and shifts). Two AdamW states, one per group; each
/// step hands each its group's gradients. With LoRA every trainable parameter is a matrix.
#[derive(Clone)]
pub struct GroupedAdamW<B: AutodiffBackend> {
    pub decay: OptimizerAdaptor<AdamW, Trainable<B>, B>,
    pub plain: OptimizerAdaptor<AdamW, Trainable<B>, B>,
}

impl<B: AutodiffBackend> GroupedAdamW<B> {
    pub fn new(weight_decay: f64) -> Self {
        Self {
            decay: adamw(weight_decay).init(),
            plain: adamw(0.0).init(),
        }
    }

    /// One update of `module` with `grads` at learning rate `lr`.
    pub fn step(
        &mut self,
        lr: f64,
        module: Trainable<B>,
        mut grads: GradientsParams,
    ) -> Trainable<B> {
        struct Split<'a> {
            from: &'a mut GradientsParams,
            to: GradientsParams,
        }
        impl<B: AutodiffBackend> ModuleVisitor<B> for Split<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                if D == 1
                    && let Some(g) = self.from.remove::<B::InnerBackend, D>(param.id)
                {
                    self.to.register(param.id, g);
                }
            }
        }
        let mut split = Split {
            from: &mut grads,
            to: GradientsParams::new(),
        };
        module.visit(&mut split);
        let plain = split.to;
        let module = self.decay.step(lr, module, grads);
        if plain.is_empty() {
            module
        } else {
            self.plain.step(lr, module, plain)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::LoraAdapter;
    use burn::backend::Autodiff;
    use pipe_backend::{CpuBackend, CpuDevice};
    use pipe_blip::{Blip, BlipConfig};

    type Ad = Autodiff<CpuBackend>;

    #[test]
    fn weight_decay_spares_biases_and_layer_norms() {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/quickstart/model/config.json");
        let config = BlipConfig::from_file(&dir).expect("config");
        let device = CpuDevice::default();
        let model = crate::init::random_init(Blip::<Ad>::new(&config, &device), 0.02, 1);
        let t = Trainable {
            model,
            lora: LoraAdapter::empty(),
        };
        let layer = &t.model.text_decoder.bert.encoder.layer[0];
        let (w, gamma) = (
            &layer.intermediate.dense.weight,
            &layer.output.layer_norm.gamma,
        );
        let (w0, g0) = (w.val().inner(), gamma.val().inner());
        let (w_id, g_id) = (w.id, gamma.id);
        // Zero gradients: Adam's own update is 0, so only weight decay moves a parameter.
        let mut grads = GradientsParams::new();
        grads.register(w_id, w0.zeros_like());
        grads.register(g_id, g0.zeros_like());
        let mut optim = GroupedAdamW::<Ad>::new(0.5);
        let t = optim.step(0.1, t, grads);
        let layer = &t.model.text_decoder.bert.encoder.layer[0];
        let w1 = layer.intermediate.dense.weight.val().inner();
        let g1 = layer.output.layer_norm.gamma.val().inner();
        let decayed: f32 = (w1 - w0.mul_scalar(0.95)).abs().max().into_scalar();
        assert!(decayed < 1e-7, "matrices decay by lr·wd: {decayed}");
        let spared: f32 = (g1 - g0).abs().max().into_scalar();
        assert_eq!(spared, 0.0, "LayerNorm scales are not decayed");
    }
}
