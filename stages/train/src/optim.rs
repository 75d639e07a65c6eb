//! AdamW (PyTorch's defaults: betas 0.9/0.999, eps 1e-8, decoupled weight decay) and global
//! gradient-norm clipping as `torch.nn.utils.clip_grad_norm_` (Burn's own clipping is per
//! parameter tensor).

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

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
