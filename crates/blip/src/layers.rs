//! Small helpers around Burn's `nn` layers: zero-initialised builders (every parameter is
//! overwritten by the checkpoint, and Burn allocates lazily) and a Linear forward that runs
//! one 2-D GEMM over all rows.

use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A Linear layer of the given size with zero (lazily allocated) parameters.
pub(crate) fn linear<B: Backend>(d_in: usize, d_out: usize, device: &B::Device) -> Linear<B> {
    LinearConfig::new(d_in, d_out)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

/// A LayerNorm over the last dimension with the config's epsilon.
pub(crate) fn layer_norm<B: Backend>(d: usize, eps: f64, device: &B::Device) -> LayerNorm<B> {
    LayerNormConfig::new(d).with_epsilon(eps).init(device)
}

/// `[A, L, D_in]` → `[A, L, D_out]` as one `[A·L, D_in] × [D_in, D_out]` GEMM. Burn's
/// `Linear::forward` on a 3-D input broadcasts the weight over A, which on the CPU becomes A
/// separate products each reading the whole weight: ruinous while decoding (L = 1).
pub(crate) fn linear_rows<B: Backend>(layer: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [a, l, d] = x.dims();
    let y = layer.forward(x.reshape([a * l, d]));
    let d_out = y.dims()[1];
    y.reshape([a, l, d_out])
}
