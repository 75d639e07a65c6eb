//! The BERT-style text decoder (`text_decoder.*`): embeddings, post-LN layers with causal
//! self-attention, cross-attention over the image tokens and a feed-forward block, and the LM
//! head whose output projection is tied to the word embeddings.
//!
//! Shapes: R text rows (images × beams, image-major), T new tokens this call, P tokens already
//! in the self-attention cache, I images, N image tokens, D = hidden_size, E = the image width
//! (encoder_hidden_size), H heads of width d = D/H, V = vocab_size.
//!
//! Caches live outside the modules: [`SelfKv`] (grows by T each call, reordered between beams)
//! and [`CrossKv`] (the image's keys/values, computed once per image and read by all its rows).

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, LayerNorm, Linear};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use crate::act::activate;
use crate::config::{Activation, TextConfig};
use crate::layers::{layer_norm, linear, linear_rows};
use crate::lora::LoraLinear;

/// `text_decoder`: BlipTextLMHeadModel.
#[derive(Module, Debug)]
pub struct TextDecoder<B: Backend> {
    pub bert: TextModel<B>,
    pub cls: LmCls<B>,
}

/// `text_decoder.bert` (no pooler).
#[derive(Module, Debug)]
pub struct TextModel<B: Backend> {
    pub embeddings: TextEmbeddings<B>,
    pub encoder: TextEncoder<B>,
}

/// `text_decoder.bert.embeddings`: word + absolute position, then LayerNorm.
#[derive(Module, Debug)]
pub struct TextEmbeddings<B: Backend> {
    pub word_embeddings: Embedding<B>,
    pub position_embeddings: Embedding<B>,
    pub layer_norm: LayerNorm<B>,
}

/// `text_decoder.bert.encoder`.
#[derive(Module, Debug)]
pub struct TextEncoder<B: Backend> {
    pub layer: Vec<TextLayer<B>>,
}

/// `…encoder.layer.{i}`: post-LN blocks x = LN(x + f(x)) for self-attention, cross-attention
/// and the feed-forward network.
#[derive(Module, Debug)]
pub struct TextLayer<B: Backend> {
    pub attention: TextAttention<B>,
    pub crossattention: TextAttention<B>,
    pub intermediate: Intermediate<B>,
    pub output: AddNorm<B>,
}

/// `…{attention|crossattention}`.
#[derive(Module, Debug)]
pub struct TextAttention<B: Backend> {
    /// The checkpoint's `self` (a Rust keyword; `weights::RENAMES` maps the name).
    pub projections: QkvProjections<B>,
    pub output: AddNorm<B>,
}

/// `…self`: separate query/key/value projections. For cross-attention key/value read the image
/// tokens (E → D). Each can carry a LoRA branch while training.
#[derive(Module, Debug)]
pub struct QkvProjections<B: Backend> {
    pub query: LoraLinear<B>,
    pub key: LoraLinear<B>,
    pub value: LoraLinear<B>,
    pub num_heads: usize,
}

/// `…output` blocks: LN(residual + dense(x)).
#[derive(Module, Debug)]
pub struct AddNorm<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
}

/// `…intermediate`: dense (D → 4D) then the activation.
#[derive(Module, Debug)]
pub struct Intermediate<B: Backend> {
    pub dense: Linear<B>,
    #[module(skip)]
    pub act: Activation,
}

/// `text_decoder.cls`.
#[derive(Module, Debug)]
pub struct LmCls<B: Backend> {
    pub predictions: LmPredictions<B>,
}

/// `text_decoder.cls.predictions`: transform, then logits = h · word_embeddingsᵀ + bias. The
/// `decoder` Linear of the checkpoint is the word embedding matrix itself (tied), so it is not a
/// parameter here.
#[derive(Module, Debug)]
pub struct LmPredictions<B: Backend> {
    pub transform: LmTransform<B>,
    /// `[V]`.
    pub bias: Param<Tensor<B, 1>>,
}

/// `…predictions.transform`: dense, activation, LayerNorm.
#[derive(Module, Debug)]
pub struct LmTransform<B: Backend> {
    pub dense: Linear<B>,
    pub layer_norm: LayerNorm<B>,
    #[module(skip)]
    pub act: Activation,
}

/// One layer's self-attention keys and values for the tokens seen so far: `[R, H, P, d]` each.
#[derive(Debug, Clone)]
pub struct SelfKv<B: Backend> {
    pub k: Tensor<B, 4>,
    pub v: Tensor<B, 4>,
}

/// One layer's cross-attention keys and values of the images: `[I, H, N, d]` each.
#[derive(Debug, Clone)]
pub struct CrossKv<B: Backend> {
    pub k: Tensor<B, 4>,
    pub v: Tensor<B, 4>,
}

/// The decoder's self-attention cache, one entry per layer; empty before the first call.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    pub layers: Vec<SelfKv<B>>,
}

impl<B: Backend> Default for KvCache<B> {
    fn default() -> Self {
        Self { layers: Vec::new() }
    }
}

impl<B: Backend> KvCache<B> {
    /// Tokens already cached (P).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |kv| kv.k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep rows `rows` (`[R']` indices into R), in that order: beam reordering.
    pub fn select_rows(&mut self, rows: Tensor<B, 1, Int>) {
        for kv in &mut self.layers {
            kv.k = kv.k.clone().select(0, rows.clone());
            kv.v = kv.v.clone().select(0, rows.clone());
        }
    }
}

impl<B: Backend> TextDecoder<B> {
    pub fn new(c: &TextConfig, device: &B::Device) -> Self {
        let d = c.hidden_size;
        let eps = c.layer_norm_eps;
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, d)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        let add_norm = |d_in: usize| AddNorm {
            dense: linear(d_in, d, device),
            layer_norm: layer_norm(d, eps, device),
        };
        let qkv = |d_kv: usize| QkvProjections {
            query: LoraLinear::new(linear(d, d, device)),
            key: LoraLinear::new(linear(d_kv, d, device)),
            value: LoraLinear::new(linear(d_kv, d, device)),
            num_heads: c.num_attention_heads,
        };
        let layer = (0..c.num_hidden_layers)
            .map(|_| TextLayer {
                attention: TextAttention {
                    projections: qkv(d),
                    output: add_norm(d),
                },
                crossattention: TextAttention {
                    projections: qkv(c.encoder_hidden_size),
                    output: add_norm(d),
                },
                intermediate: Intermediate {
                    dense: linear(d, c.intermediate_size, device),
                    act: c.hidden_act,
                },
                output: add_norm(c.intermediate_size),
            })
            .collect();
        Self {
            bert: TextModel {
                embeddings: TextEmbeddings {
                    word_embeddings: embedding(c.vocab_size),
                    position_embeddings: embedding(c.max_position_embeddings),
                    layer_norm: layer_norm(d, eps, device),
                },
                encoder: TextEncoder { layer },
            },
            cls: LmCls {
                predictions: LmPredictions {
                    transform: LmTransform {
                        dense: linear(d, d, device),
                        layer_norm: layer_norm(d, eps, device),
                        act: c.hidden_act,
                    },
                    bias: Initializer::Zeros.init([c.vocab_size], device),
                },
            },
        }
    }

    /// Positions the decoder can hold (max_position_embeddings).
    pub fn max_positions(&self) -> usize {
        self.bert.embeddings.position_embeddings.weight.dims()[0]
    }

    /// The image tokens' keys and values for every layer, once per image:
    /// `[I, N, E]` → per layer `[I, H, N, d]`.
    pub fn cross_kv(&self, image_embeds: Tensor<B, 3>) -> Vec<CrossKv<B>> {
        self.bert
            .encoder
            .layer
            .iter()
            .map(|layer| {
                let p = &layer.crossattention.projections;
                CrossKv {
                    k: split_heads(p.key.forward(image_embeds.clone()), p.num_heads),
                    v: split_heads(p.value.forward(image_embeds.clone()), p.num_heads),
                }
            })
            .collect()
    }

    /// Run T new tokens through the decoder, appending their keys/values to `cache`.
    ///
    /// - `input_ids`: `[R, T]`, R = I × `rows_per_image`, image-major.
    /// - `cross`: from [`Self::cross_kv`] for the I images.
    /// - `key_padding`: optional `[R, P+T]` mask, true where a key is padding (teacher forcing
    ///   with padded captions); attention is causal in any case.
    ///
    /// Returns the last hidden states `[R, T, D]` (feed them to [`Self::logits`]).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        cross: &[CrossKv<B>],
        rows_per_image: usize,
        cache: &mut KvCache<B>,
        key_padding: Option<Tensor<B, 2, Bool>>,
    ) -> Tensor<B, 3> {
        let [r, t] = input_ids.dims();
        let past = cache.len();
        let device = input_ids.device();

        // Embeddings: word + position (past..past+T) → LayerNorm.  [R, T, D]
        let emb = &self.bert.embeddings;
        let positions =
            Tensor::<B, 1, Int>::arange(past as i64..(past + t) as i64, &device).reshape([1, t]);
        let x = emb.word_embeddings.forward(input_ids) + emb.position_embeddings.forward(positions);
        let mut x = emb.layer_norm.forward(x);

        // Mask over [T queries, P+T keys]: query i sits at absolute position P+i and may see
        // keys 0..=P+i. Only needed when T > 1 or keys are padded.
        let mask = self_attention_mask::<B>(r, t, past, key_padding, &device);

        let fresh = cache.layers.is_empty();
        for (i, layer) in self.bert.encoder.layer.iter().enumerate() {
            let past_kv = if fresh {
                None
            } else {
                cache.layers.get(i).cloned()
            };
            let (y, kv) =
                layer
                    .attention
                    .projections
                    .self_attention(x.clone(), past_kv, mask.clone());
            x = layer.attention.output.forward(y, x);
            let y = layer.crossattention.projections.cross_attention(
                x.clone(),
                &cross[i],
                rows_per_image,
            );
            x = layer.crossattention.output.forward(y, x);
            let y = activate(
                linear_rows(&layer.intermediate.dense, x.clone()),
                layer.intermediate.act,
            );
            x = layer.output.forward(y, x);
            if fresh {
                cache.layers.push(kv);
            } else {
                cache.layers[i] = kv;
            }
        }
        x
    }

    /// LM head: `[R, T, D]` → logits `[R, T, V]`.
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let p = &self.cls.predictions;
        let h = linear_rows(&p.transform.dense, hidden);
        let h = p.transform.layer_norm.forward(activate(h, p.transform.act));
        let [r, t, d] = h.dims();
        // Tied decoder: word_embeddings is [V, D]; logits = h · Wᵀ + b.
        let w = self.bert.embeddings.word_embeddings.weight.val(); // [V, D]
        let v = w.dims()[0];
        let logits = h.reshape([r * t, d]).matmul(w.transpose()) + p.bias.val().unsqueeze_dim(0);
        logits.reshape([r, t, v])
    }
}

/// `[R, L, D]` → `[R, H, L, d]`.
fn split_heads<B: Backend>(x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
    let [r, l, d] = x.dims();
    x.reshape([r, l, heads, d / heads]).swap_dims(1, 2)
}

/// `[R, H, L, d]` → `[R, L, D]`.
fn merge_heads<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 3> {
    let [r, h, l, hd] = x.dims();
    x.swap_dims(1, 2).reshape([r, l, h * hd])
}

/// Boolean mask `[R, 1, T, P+T]`, true where attention is forbidden; `None` when nothing is
/// (a single new token with unpadded keys sees everything cached).
fn self_attention_mask<B: Backend>(
    r: usize,
    t: usize,
    past: usize,
    key_padding: Option<Tensor<B, 2, Bool>>,
    device: &B::Device,
) -> Option<Tensor<B, 4, Bool>> {
    let total = past + t;
    let causal = (t > 1).then(|| {
        // key j is in the future of query i when j > P + i.
        let q = Tensor::<B, 1, Int>::arange(past as i64..total as i64, device).reshape([t, 1]);
        let k = Tensor::<B, 1, Int>::arange(0..total as i64, device).reshape([1, total]);
        k.greater(q)
            .reshape([1, 1, t, total])
            .expand([r, 1, t, total])
    });
    let padding = key_padding.map(|p| p.reshape([r, 1, 1, total]).expand([r, 1, t, total]));
    match (causal, padding) {
        (Some(c), Some(p)) => Some(c.bool_or(p)),
        (c, p) => c.or(p),
    }
}

impl<B: Backend> QkvProjections<B> {
    /// Causal self-attention over cached + new tokens. `x`: `[R, T, D]`; returns the context
    /// `[R, T, D]` and this layer's cache `[R, H, P+T, d]`.
    fn self_attention(
        &self,
        x: Tensor<B, 3>,
        past: Option<SelfKv<B>>,
        mask: Option<Tensor<B, 4, Bool>>,
    ) -> (Tensor<B, 3>, SelfKv<B>) {
        let h = self.num_heads;
        let q = split_heads(self.query.forward(x.clone()), h); // [R, H, T, d]
        let mut k = split_heads(self.key.forward(x.clone()), h);
        let mut v = split_heads(self.value.forward(x), h);
        if let Some(past) = past {
            k = Tensor::cat(vec![past.k, k], 2); // [R, H, P+T, d]
            v = Tensor::cat(vec![past.v, v], 2);
        }
        let hd = q.dims()[3];
        let mut scores = q.matmul(k.clone().swap_dims(2, 3)) / (hd as f64).sqrt(); // [R, H, T, P+T]
        if let Some(mask) = mask {
            let h = scores.dims()[1];
            let [r, _, t, total] = mask.dims();
            scores = scores.mask_fill(mask.expand([r, h, t, total]), f32::MIN);
        }
        let ctx = softmax(scores, 3).matmul(v.clone()); // [R, H, T, d]
        (merge_heads(ctx), SelfKv { k, v })
    }

    /// Cross-attention of R = I × G rows over their image's tokens. The G rows of one image
    /// (its beams) are stacked along the query axis, so each image's K/V `[H, N, d]` is read
    /// in place, never copied per beam.
    fn cross_attention(&self, x: Tensor<B, 3>, kv: &CrossKv<B>, g: usize) -> Tensor<B, 3> {
        let [r, t, d] = x.dims();
        let h = self.num_heads;
        let hd = d / h;
        let i = r / g;
        // [R, T, D] → [I, G, T, H, d] → [I, H, G, T, d] → [I, H, G·T, d]
        let q = self
            .query
            .forward(x)
            .reshape([i, g, t, h, hd])
            .permute([0, 3, 1, 2, 4]);
        let q = q.reshape([i, h, g * t, hd]);
        let scores = q.matmul(kv.k.clone().swap_dims(2, 3)) / (hd as f64).sqrt(); // [I, H, G·T, N]
        let ctx = softmax(scores, 3).matmul(kv.v.clone()); // [I, H, G·T, d]
        // Back: [I, H, G, T, d] → [I, G, T, H, d] → [R, T, D]
        ctx.reshape([i, h, g, t, hd])
            .permute([0, 2, 3, 1, 4])
            .reshape([r, t, d])
    }
}

impl<B: Backend> AddNorm<B> {
    /// LN(residual + dense(x)).
    fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layer_norm
            .forward(linear_rows(&self.dense, x) + residual)
    }
}
