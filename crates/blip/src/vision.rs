//! The ViT image encoder (`vision_model.*`): patch embedding, pre-LN transformer layers with a
//! fused qkv projection, and a final LayerNorm.
//!
//! Shapes: B images, C=3 channels, S = image_size, P = patch_size, N = (S/P)² + 1 tokens,
//! D = hidden_size, H heads of width d = D/H.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::act::activate;
use crate::config::{Activation, VisionConfig};
use crate::layers::{layer_norm, linear, linear_rows};

/// `vision_model`: BlipVisionModel.
#[derive(Module, Debug)]
pub struct VisionModel<B: Backend> {
    pub embeddings: VisionEmbeddings<B>,
    pub encoder: VisionEncoder<B>,
    pub post_layernorm: LayerNorm<B>,
}

/// `vision_model.embeddings`.
#[derive(Module, Debug)]
pub struct VisionEmbeddings<B: Backend> {
    /// `[1, 1, D]`: the learned class token.
    pub class_embedding: Param<Tensor<B, 3>>,
    /// Conv with kernel = stride = P: one D-vector per patch.
    pub patch_embedding: Conv2d<B>,
    /// `[1, N, D]`: learned absolute positions (a plain parameter, not an Embedding).
    pub position_embedding: Param<Tensor<B, 3>>,
}

/// `vision_model.encoder`.
#[derive(Module, Debug)]
pub struct VisionEncoder<B: Backend> {
    pub layers: Vec<VisionLayer<B>>,
}

/// `vision_model.encoder.layers.{i}`: x += attn(ln1(x)); x += mlp(ln2(x)).
#[derive(Module, Debug)]
pub struct VisionLayer<B: Backend> {
    pub layer_norm1: LayerNorm<B>,
    pub self_attn: VisionAttention<B>,
    pub layer_norm2: LayerNorm<B>,
    pub mlp: VisionMlp<B>,
}

/// `…self_attn`: multi-head self-attention with one fused `qkv` Linear (D → 3D).
#[derive(Module, Debug)]
pub struct VisionAttention<B: Backend> {
    pub qkv: Linear<B>,
    pub projection: Linear<B>,
    pub num_heads: usize,
}

/// `…mlp`: fc1 (D → 4D), activation, fc2 (4D → D).
#[derive(Module, Debug)]
pub struct VisionMlp<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    #[module(skip)]
    pub act: Activation,
}

impl<B: Backend> VisionModel<B> {
    pub fn new(c: &VisionConfig, device: &B::Device) -> Self {
        let d = c.hidden_size;
        let zeros = Initializer::Zeros;
        let embeddings = VisionEmbeddings {
            class_embedding: zeros.init([1, 1, d], device),
            patch_embedding: Conv2dConfig::new([3, d], [c.patch_size, c.patch_size])
                .with_stride([c.patch_size, c.patch_size])
                .with_initializer(Initializer::Zeros)
                .init(device),
            position_embedding: zeros.init([1, c.num_positions(), d], device),
        };
        let layers = (0..c.num_hidden_layers)
            .map(|_| VisionLayer {
                layer_norm1: layer_norm(d, c.layer_norm_eps, device),
                self_attn: VisionAttention {
                    qkv: linear(d, 3 * d, device),
                    projection: linear(d, d, device),
                    num_heads: c.num_attention_heads,
                },
                layer_norm2: layer_norm(d, c.layer_norm_eps, device),
                mlp: VisionMlp {
                    fc1: linear(d, c.intermediate_size, device),
                    fc2: linear(c.intermediate_size, d, device),
                    act: c.hidden_act,
                },
            })
            .collect();
        Self {
            embeddings,
            encoder: VisionEncoder { layers },
            post_layernorm: layer_norm(d, c.layer_norm_eps, device),
        }
    }

    /// `[B, 3, S, S]` normalised pixels → `[B, N, D]` image embeddings (after post_layernorm,
    /// as transformers' `image_embeds`).
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let mut x = self.embeddings.forward(pixel_values);
        for layer in &self.encoder.layers {
            x = layer.forward(x);
        }
        self.post_layernorm.forward(x)
    }
}

impl<B: Backend> VisionEmbeddings<B> {
    /// `[B, 3, S, S]` → `[B, N, D]`: class token then patches in row-major order, plus positions.
    fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let patches = self.patch_embedding.forward(pixel_values); // [B, D, S/P, S/P]
        let [b, d, gh, gw] = patches.dims();
        let patches = patches.reshape([b, d, gh * gw]).swap_dims(1, 2); // [B, N-1, D]
        let class = self.class_embedding.val().expand([b, 1, d]); // [B, 1, D]
        let x = Tensor::cat(vec![class, patches], 1); // [B, N, D]
        let n = gh * gw + 1;
        let pos = self.position_embedding.val(); // [1, N_cfg, D]
        let [_, n_cfg, _] = pos.dims();
        // Images of the configured size only (no position interpolation, as transformers'
        // default `interpolate_pos_encoding=False`); the caller checks the pixel size.
        let pos = if n_cfg == n { pos } else { pos.narrow(1, 0, n) };
        x + pos
    }
}

impl<B: Backend> VisionLayer<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

impl<B: Backend> VisionAttention<B> {
    /// `[B, N, D]` → `[B, N, D]`, full (non-causal) attention.
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [b, n, d] = x.dims();
        let h = self.num_heads;
        let hd = d / h;
        // [B, N, 3D] → [B, N, 3, H, d] → [3, B, H, N, d]: the fused layout is (q|k|v) × heads.
        let qkv = linear_rows(&self.qkv, x)
            .reshape([b, n, 3, h, hd])
            .permute([2, 0, 3, 1, 4]);
        let q = qkv.clone().narrow(0, 0, 1).squeeze_dim::<4>(0); // [B, H, N, d]
        let k = qkv.clone().narrow(0, 1, 1).squeeze_dim::<4>(0);
        let v = qkv.narrow(0, 2, 1).squeeze_dim::<4>(0);
        // softmax(q·kᵀ/√d)·v as the backend's fused attention (flash-style on the CPU: the
        // [B, H, N, N] scores are never materialised).
        let ctx = attention(q, k, v, None, None, AttentionModuleOptions::default()); // [B, H, N, d]
        let ctx = ctx.swap_dims(1, 2).reshape([b, n, d]);
        linear_rows(&self.projection, ctx)
    }
}

impl<B: Backend> VisionMlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        linear_rows(&self.fc2, activate(linear_rows(&self.fc1, x), self.act))
    }
}
