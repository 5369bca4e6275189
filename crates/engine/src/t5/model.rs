//! The T5 encoder stack: token embeddings, pre-norm blocks of self-attention with a
//! learned relative-position bias and a feed-forward layer, and a final RMS norm.
//!
//! The residual stream is kept in float32 whatever the weights' precision, and each
//! block's feed-forward takes its gated product and `wo` in float32: T5's activations
//! outgrow fp16's range (transformers keeps `wo` in float32 and clamps for the same
//! reason). These are what let T5 run in fp16 on cards without native bf16 (V100, T4).
//! The stream is only `[batch, 300, 4096]` and the product `[batch, 300, 10240]`, so the
//! cost is small.

use super::{FeedForward, T5Config};
use crate::error::Result;
use crate::layers::Linear;
use crate::weights::Weights;
use tch::{Kind, Tensor};

/// The encoder's last hidden state, after the final norm: `[batch, tokens, d_model]` in
/// the weights' precision.
#[derive(Debug)]
pub struct T5Output {
    pub hidden: Tensor,
}

#[derive(Debug)]
enum Dense {
    Relu {
        wi: Linear,
        wo: Linear,
    },
    GatedGelu {
        wi_0: Linear,
        wi_1: Linear,
        wo: Linear,
    },
}

#[derive(Debug)]
struct Block {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ff_norm: Tensor,
    dense: Dense,
}

/// The encoder's blocks: loaded, or read from the weights one at a time as an encoding
/// reaches each (so only one of T5-XXL's 24 blocks, 0.39 GB in bf16, is on the device).
#[derive(Debug)]
enum Blocks {
    Loaded(Vec<Block>),
    Streamed(Weights),
}

/// A loaded T5 encoder; tensors live on the device and dtype of the [`Weights`] view.
#[derive(Debug)]
pub struct T5Encoder {
    cfg: T5Config,
    embed: Tensor,
    /// `[buckets, heads]`: the first block's table, which every block uses.
    relative_bias: Tensor,
    blocks: Blocks,
    final_norm: Tensor,
}

fn load_block(w: &Weights, i: i64, cfg: &T5Config) -> Result<Block> {
    let (d, inner, ff) = (cfg.d_model, cfg.heads * cfg.head_dim, cfg.d_ff);
    let attn = format!("encoder.block.{i}.layer.0");
    let dense = format!("encoder.block.{i}.layer.1.DenseReluDense");
    let wide = w.to(w.device(), Kind::Float);
    let wo = Linear::load(&wide, &format!("{dense}.wo"), ff, d)?;
    let dense_layers = match cfg.feed_forward {
        FeedForward::Relu => Dense::Relu {
            wi: Linear::load(w, &format!("{dense}.wi"), d, ff)?,
            wo,
        },
        FeedForward::GatedGelu => Dense::GatedGelu {
            wi_0: Linear::load(w, &format!("{dense}.wi_0"), d, ff)?,
            wi_1: Linear::load(w, &format!("{dense}.wi_1"), d, ff)?,
            wo,
        },
    };
    Ok(Block {
        attn_norm: w.get_shaped(&format!("{attn}.layer_norm.weight"), &[d])?,
        q: Linear::load(w, &format!("{attn}.SelfAttention.q"), d, inner)?,
        k: Linear::load(w, &format!("{attn}.SelfAttention.k"), d, inner)?,
        v: Linear::load(w, &format!("{attn}.SelfAttention.v"), d, inner)?,
        o: Linear::load(w, &format!("{attn}.SelfAttention.o"), inner, d)?,
        ff_norm: w.get_shaped(
            &format!("encoder.block.{i}.layer.1.layer_norm.weight"),
            &[d],
        )?,
        dense: dense_layers,
    })
}

/// T5's RMS norm: the mean square taken in float32, the result in the weight's precision.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Tensor {
    let x = x.to_kind(Kind::Float);
    let variance = x.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
    (x * (variance + eps).rsqrt()).to_kind(weight.kind()) * weight
}

impl T5Encoder {
    /// Loads every tensor of a view found by [`super::encoder_view`].
    pub fn load(w: &Weights, cfg: &T5Config) -> Result<T5Encoder> {
        let blocks = (0..cfg.layers)
            .map(|i| load_block(w, i, cfg))
            .collect::<Result<Vec<_>>>()?;
        T5Encoder::with_blocks(w, cfg, Blocks::Loaded(blocks))
    }

    /// Loads the embedding, position bias and final norm only; each encoding then reads
    /// the blocks from `w` one at a time and frees each after use. The output is the same
    /// as [`T5Encoder::load`]'s; the peak on the device is one block instead of all.
    pub fn streamed(w: &Weights, cfg: &T5Config) -> Result<T5Encoder> {
        T5Encoder::with_blocks(w, cfg, Blocks::Streamed(w.clone()))
    }

    /// Reads every block once (one at a time), so that a broken file fails now rather
    /// than in the first streamed encoding.
    pub fn check_blocks(w: &Weights, cfg: &T5Config) -> Result<()> {
        (0..cfg.layers).try_for_each(|i| load_block(w, i, cfg).map(drop))
    }

    fn with_blocks(w: &Weights, cfg: &T5Config, blocks: Blocks) -> Result<T5Encoder> {
        let embed_name = if w.contains("shared.weight") {
            "shared.weight"
        } else {
            "encoder.embed_tokens.weight"
        };
        Ok(T5Encoder {
            embed: w.get_shaped(embed_name, &[cfg.vocab, cfg.d_model])?,
            relative_bias: w.get_shaped(
                "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                &[cfg.buckets, cfg.heads],
            )?,
            final_norm: w.get_shaped("encoder.final_layer_norm.weight", &[cfg.d_model])?,
            blocks,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &T5Config {
        &self.cfg
    }

    /// Encodes `tokens` (`[batch, tokens]` ids) where `mask` (`[batch, tokens]`, non-zero
    /// for real tokens) says which keys attention may look at. Padded positions still get
    /// an output, as in transformers; the denoiser masks them out again.
    pub fn encode(&self, tokens: &Tensor, mask: &Tensor) -> Result<T5Output> {
        let device = self.embed.device();
        let tokens = tokens.to_device(device);
        let length = tokens.size()[1];
        let mut hidden = self.embed.index_select(0, &tokens.flatten(0, -1));
        hidden = hidden
            .view([-1, length, self.cfg.d_model])
            .to_kind(Kind::Float);
        let bias = self.attention_bias(length, mask)?;
        match &self.blocks {
            Blocks::Loaded(blocks) => {
                for block in blocks {
                    hidden = self.block_forward(block, &hidden, &bias);
                }
            }
            Blocks::Streamed(w) => {
                for i in 0..self.cfg.layers {
                    let block = load_block(w, i, &self.cfg)?;
                    hidden = self.block_forward(&block, &hidden, &bias);
                }
            }
        }
        Ok(T5Output {
            hidden: rms_norm(&hidden, &self.final_norm, self.cfg.eps),
        })
    }

    fn block_forward(&self, block: &Block, hidden: &Tensor, bias: &Tensor) -> Tensor {
        let x = rms_norm(hidden, &block.attn_norm, self.cfg.eps);
        let (b, t) = (x.size()[0], x.size()[1]);
        let heads = |p: &Linear| {
            p.forward(&x)
                .view([b, t, self.cfg.heads, self.cfg.head_dim])
                .transpose(1, 2)
        };
        let (q, k, v) = (heads(&block.q), heads(&block.k), heads(&block.v));
        // T5 has no 1/√d scale: it is folded into the trained weights.
        let attended = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(&bias.to_kind(q.kind())),
            0.0,
            false,
            Some(1.0),
            false,
        );
        let attended = attended.transpose(1, 2).reshape([b, t, -1]);
        let hidden = hidden + block.o.forward(&attended).to_kind(Kind::Float);
        let x = rms_norm(&hidden, &block.ff_norm, self.cfg.eps);
        let out = match &block.dense {
            Dense::Relu { wi, wo } => wo.forward(&wi.forward(&x).relu().to_kind(Kind::Float)),
            Dense::GatedGelu { wi_0, wi_1, wo } => {
                // In fp16 the product overflows before `wo` could bring it back down.
                let gate = wi_0.forward(&x).to_kind(Kind::Float).gelu("tanh");
                wo.forward(&(gate * wi_1.forward(&x).to_kind(Kind::Float)))
            }
        };
        hidden + out
    }

    /// `[batch, heads, tokens, tokens]` in float32: the relative-position bias, and −∞
    /// where the key is padding.
    fn attention_bias(&self, length: i64, mask: &Tensor) -> Result<Tensor> {
        let device = self.embed.device();
        let positions = Tensor::arange(length, (Kind::Int64, device));
        let relative = positions.unsqueeze(0) - positions.unsqueeze(1);
        let buckets = relative_buckets(&relative, self.cfg.buckets, self.cfg.max_distance);
        let bias = self
            .relative_bias
            .to_kind(Kind::Float)
            .index_select(0, &buckets.flatten(0, -1))
            .view([length, length, self.cfg.heads])
            .permute([2, 0, 1])
            .unsqueeze(0);
        let padding = mask.to_device(device).eq(0).view([-1, 1, 1, length]);
        Ok(bias.masked_fill(&padding, f64::NEG_INFINITY))
    }
}

/// Mesh TensorFlow's bidirectional relative-position buckets (`key − query` in, bucket
/// ids out): half the buckets for each direction, exact up to a quarter of them, then
/// logarithmic up to `max_distance`. Computed with the same tensor operations transformers
/// uses, so a distance on a bucket boundary rounds the same way.
fn relative_buckets(relative: &Tensor, buckets: i64, max_distance: i64) -> Tensor {
    let half = buckets / 2;
    let direction = relative.gt(0).to_kind(Kind::Int64) * half;
    let distance = relative.abs();
    let max_exact = half / 2;
    let log_ratio = (distance.to_kind(Kind::Float) / max_exact as f64).log()
        / (max_distance as f64 / max_exact as f64).ln()
        * (half - max_exact) as f64;
    let far = (log_ratio.to_kind(Kind::Int64) + max_exact).clamp_max(half - 1);
    direction + distance.where_self(&distance.lt(max_exact), &far)
}
