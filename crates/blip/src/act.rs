//! The activation functions named by `hidden_act`.

use burn::tensor::Tensor;
use burn::tensor::activation::{gelu, gelu_approximate, relu, sigmoid};
use burn::tensor::backend::Backend;

use crate::config::Activation;

/// Apply `act` element-wise.
pub fn activate<B: Backend, const D: usize>(x: Tensor<B, D>, act: Activation) -> Tensor<B, D> {
    match act {
        Activation::Gelu => gelu(x),
        Activation::GeluTanh => gelu_approximate(x),
        Activation::Relu => relu(x),
        Activation::QuickGelu => x.clone() * sigmoid(x * 1.702),
    }
}
