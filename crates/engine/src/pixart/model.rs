//! The PixArt transformer's forward pass: patches with a 2-D sin-cos position embedding,
//! adaLN-single modulation from one timestep MLP, blocks of self-attention, unnormed
//! cross-attention to the caption and a tanh-GELU MLP, and a modulated final projection
//! back to latent patches.

use super::names::Part;
use super::{PixArtConfig, PixArtLayout};
use crate::error::Result;
use crate::layers::{attention, AttentionMode, Conv2d, Linear};
use crate::unet::timestep_embedding;
use crate::weights::Weights;
use tch::{Kind, Tensor};

/// What diffusers adds to masked caption scores (not −∞: a row of all padding stays finite).
const MASKED_SCORE: f64 = -10000.0;
const NORM_EPS: f64 = 1e-6;

#[derive(Debug)]
struct Block {
    /// `[6, hidden]`, added to the shared modulation.
    table: Tensor,
    qkv: Linear,
    self_out: Linear,
    cross_query: Linear,
    cross_kv: Linear,
    cross_out: Linear,
    fc1: Linear,
    fc2: Linear,
}

/// A loaded PixArt transformer; tensors live on the device and dtype of its [`Weights`].
#[derive(Debug)]
pub struct PixArtTransformer {
    cfg: PixArtConfig,
    patch: Conv2d,
    time_1: Linear,
    time_2: Linear,
    modulation: Linear,
    caption_1: Linear,
    caption_2: Linear,
    blocks: Vec<Block>,
    final_table: Tensor,
    final_proj: Linear,
    attention: AttentionMode,
}

fn linear(w: &Weights, name: &str, in_dim: i64, out_dim: i64) -> Result<Linear> {
    Linear::load(w, name, in_dim, out_dim)
}

fn load_block(w: &Weights, l: PixArtLayout, i: i64, cfg: &PixArtConfig) -> Result<Block> {
    let (d, mlp) = (cfg.hidden, cfg.mlp_hidden);
    Ok(Block {
        table: w.get_shaped(&l.block(i, Part::Table), &[6, d])?,
        qkv: l.self_qkv(w, i, d)?,
        self_out: linear(w, &l.block(i, Part::SelfOut), d, d)?,
        cross_query: linear(w, &l.block(i, Part::CrossQuery), d, d)?,
        cross_kv: l.cross_kv(w, i, d)?,
        cross_out: linear(w, &l.block(i, Part::CrossOut), d, d)?,
        fc1: linear(w, &l.block(i, Part::Fc1), d, mlp)?,
        fc2: linear(w, &l.block(i, Part::Fc2), mlp, d)?,
    })
}

/// Layer norm without affine parameters, as every PixArt norm is.
fn plain_norm(x: &Tensor) -> Tensor {
    let dim = *x.size().last().unwrap_or(&1);
    x.layer_norm([dim], None::<&Tensor>, None::<&Tensor>, NORM_EPS, true)
}

/// `x·(1 + scale) + shift`.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Tensor {
    x * (scale + 1.0) + shift
}

/// diffusers' 2-D sin-cos embedding for a `rows × cols` patch grid, `[rows·cols, dim]` in
/// float32: the first half encodes each token's column, the second its row, each as
/// `[sin | cos]` of the coordinate times `10000^(−k / (dim/4))`. Coordinates are scaled so
/// each side spans `0..scale` whatever its length; frequencies are taken in float64.
pub fn position_embedding(
    rows: i64,
    cols: i64,
    dim: i64,
    scale: f64,
    device: tch::Device,
) -> Tensor {
    let axis = |len: i64| Tensor::arange(len, (Kind::Float, device)) / (len as f64 / scale);
    let one_d = |coords: &Tensor| {
        let quarter = dim / 4;
        let exponent = Tensor::arange(quarter, (Kind::Double, device)) / quarter as f64;
        let omega = (exponent * -(10000f64.ln())).exp();
        let angles = coords.to_kind(Kind::Double).unsqueeze(1) * omega.unsqueeze(0);
        Tensor::cat(&[angles.sin(), angles.cos()], 1)
    };
    let col = axis(cols)
        .unsqueeze(0)
        .expand([rows, cols], false)
        .reshape([-1]);
    let row = axis(rows)
        .unsqueeze(1)
        .expand([rows, cols], false)
        .reshape([-1]);
    Tensor::cat(&[one_d(&col), one_d(&row)], 1).to_kind(Kind::Float)
}

impl PixArtTransformer {
    /// Loads a view found by [`super::transformer_view`] in `cfg.layout`.
    pub fn load(w: &Weights, cfg: &PixArtConfig) -> Result<PixArtTransformer> {
        let (l, d) = (cfg.layout, cfg.hidden);
        let blocks = (0..cfg.layers)
            .map(|i| load_block(w, l, i, cfg))
            .collect::<Result<Vec<_>>>()?;
        let patch_out = cfg.patch * cfg.patch * cfg.out_channels;
        Ok(PixArtTransformer {
            patch: Conv2d::load(
                w,
                l.patch_conv(),
                cfg.in_channels,
                d,
                cfg.patch,
                cfg.patch,
                0,
            )?,
            time_1: linear(w, &l.time(1), 256, d)?,
            time_2: linear(w, &l.time(2), d, d)?,
            modulation: linear(w, l.modulation(), d, 6 * d)?,
            caption_1: linear(w, &l.caption(1), cfg.caption_channels, d)?,
            caption_2: linear(w, &l.caption(2), d, d)?,
            final_table: w.get_shaped(l.final_table(), &[2, d])?,
            final_proj: linear(w, l.final_proj(), d, patch_out)?,
            blocks,
            cfg: cfg.clone(),
            attention: AttentionMode::Sdpa,
        })
    }

    /// The same model computing attention in `mode` (query slices for low memory).
    pub fn with_attention(mut self, mode: AttentionMode) -> PixArtTransformer {
        self.attention = mode;
        self
    }

    pub fn config(&self) -> &PixArtConfig {
        &self.cfg
    }

    /// The model's output for latents `x` `[B, C, H, W]` at timesteps `t` `[B]`, given
    /// caption tokens `[B, L, caption_channels]` and their mask `[B, L]` (1 for a real
    /// token): `[B, out_channels, H, W]` in the weights' precision (for a learned-sigma
    /// model the first `in_channels` are the noise prediction). `H` and `W` must be
    /// multiples of the patch size.
    pub fn forward(&self, x: &Tensor, t: &Tensor, caption: &Tensor, mask: &Tensor) -> Tensor {
        let kind = self.patch.weight.kind();
        let (batch, _, height, width) = x.size4().expect("latents are [B, C, H, W]");
        let p = self.cfg.patch;
        let (rows, cols) = (height / p, width / p);
        let pos = position_embedding(
            rows,
            cols,
            self.cfg.hidden,
            self.cfg.position_scale,
            x.device(),
        );
        let tokens = self
            .patch
            .forward(&x.to_kind(kind))
            .flatten(2, -1)
            .transpose(1, 2);
        let mut h = (tokens.to_kind(Kind::Float) + pos.unsqueeze(0)).to_kind(kind);

        let embedded = self.time_2.forward(
            &self
                .time_1
                .forward(&timestep_embedding(t, 256).to_kind(kind))
                .silu(),
        );
        let modulation = self
            .modulation
            .forward(&embedded.silu())
            .view([batch, 6, -1]);
        let caption = self
            .caption_2
            .forward(&self.caption_1.forward(&caption.to_kind(kind)).gelu("tanh"));
        let score_bias = ((mask.to_kind(kind).ones_like() - mask.to_kind(kind)) * MASKED_SCORE)
            .view([batch, 1, 1, -1]);
        for block in &self.blocks {
            h = self.block_forward(block, &h, &modulation, &caption, &score_bias);
        }
        let final_mod = self.final_table.unsqueeze(0) + embedded.unsqueeze(1);
        let (shift, scale) = (final_mod.narrow(1, 0, 1), final_mod.narrow(1, 1, 1));
        let out = self
            .final_proj
            .forward(&modulate(&plain_norm(&h), &shift, &scale));
        let c = self.cfg.out_channels;
        out.view([batch, rows, cols, p, p, c])
            .permute([0, 5, 1, 3, 2, 4])
            .reshape([batch, c, height, width])
    }

    fn block_forward(
        &self,
        block: &Block,
        h: &Tensor,
        modulation: &Tensor,
        caption: &Tensor,
        score_bias: &Tensor,
    ) -> Tensor {
        let heads = self.cfg.heads;
        let m = (block.table.unsqueeze(0) + modulation).chunk(6, 1);
        let (shift_msa, scale_msa, gate_msa) = (&m[0], &m[1], &m[2]);
        let (shift_mlp, scale_mlp, gate_mlp) = (&m[3], &m[4], &m[5]);

        let x = modulate(&plain_norm(h), shift_msa, scale_msa);
        let qkv = block.qkv.forward(&x).chunk(3, -1);
        let attended = attention(&qkv[0], &qkv[1], &qkv[2], heads, None, self.attention);
        let h = h + gate_msa * block.self_out.forward(&attended);

        let q = block.cross_query.forward(&h);
        let kv = block.cross_kv.forward(caption).chunk(2, -1);
        let attended = attention(&q, &kv[0], &kv[1], heads, Some(score_bias), self.attention);
        let h = &h + block.cross_out.forward(&attended);

        let x = modulate(&plain_norm(&h), shift_mlp, scale_mlp);
        let mlp = block.fc2.forward(&block.fc1.forward(&x).gelu("tanh"));
        &h + gate_mlp * mlp
    }
}
