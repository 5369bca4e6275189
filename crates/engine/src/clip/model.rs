//! The CLIP text transformer: token + position embeddings, pre-norm causal self-attention
//! blocks, a final layer norm, pooling at the EOS position and an optional projection.

use super::config::{Activation, ClipConfig, KeyNames, PoolPosition};
use super::ClipLayout;
use crate::error::{EngineError, Result};
use crate::layers::{attention, AttentionMode, LayerNorm, Linear};
use crate::weights::Weights;
use tch::{Kind, Tensor};

/// Which hidden state becomes the conditioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerChoice {
    /// The output of the last block (`hidden_states[-1]`).
    Last,
    /// `hidden_states[-n]` in transformers terms: the output after `layers + 1 - n` blocks.
    /// `FromEnd(1)` is [`LayerChoice::Last`], `FromEnd(2)` the penultimate ("clip skip 2").
    FromEnd(usize),
}

/// What one call to [`ClipTextEncoder::encode`] returns.
#[derive(Debug)]
pub struct ClipOutput {
    /// `[batch, tokens, hidden]`: the chosen layer, with the final norm if asked for.
    pub hidden: Tensor,
    /// `[batch, hidden]`: the last layer after the final norm, at the pooling position.
    pub pooled: Tensor,
    /// `[batch, proj]`: `pooled` through `text_projection`, when the model has one.
    pub projected: Option<Tensor>,
}

#[derive(Debug)]
struct Block {
    norm1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// A loaded text encoder; tensors live on the device and dtype of the [`Weights`] view.
#[derive(Debug)]
pub struct ClipTextEncoder {
    cfg: ClipConfig,
    token_embedding: Tensor,
    position_embedding: Tensor,
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    /// Stored as a bias-free Linear weight `[proj, hidden]` whatever the file layout.
    projection: Option<Linear>,
}

/// open_clip's fused `in_proj_{weight,bias}` (`[3C, C]` / `[3C]`, rows q, k, v) as three
/// Linears, split once here so encoding runs the same code for both layouts.
fn split_in_proj(w: &Weights, prefix: &str, c: i64) -> Result<(Linear, Linear, Linear)> {
    let weight_name = format!("{prefix}in_proj_weight");
    let bias_name = format!("{prefix}in_proj_bias");
    let weight = w.get_shaped(&weight_name, &[3 * c, c])?;
    let bias = w.get_shaped(&bias_name, &[3 * c])?;
    let ws = weight.split(c, 0);
    let bs = bias.split(c, 0);
    // Registered under Hugging Face's names (`q_proj.weight`, …), so a LoRA written for
    // transformers' CLIP finds the rows it patches.
    let part = |i: usize, hf_name: &str| {
        let weight = ws[i].contiguous();
        w.register(&format!("{prefix}{hf_name}.weight"), &weight, None);
        Linear {
            weight,
            bias: Some(bs[i].contiguous()),
        }
    };
    Ok((part(0, "q_proj"), part(1, "k_proj"), part(2, "v_proj")))
}

fn load_block(w: &Weights, keys: &KeyNames, i: i64, cfg: &ClipConfig) -> Result<Block> {
    let (c, inner, eps) = (cfg.hidden, cfg.intermediate, cfg.layer_norm_eps);
    let p = keys.layer(i);
    Ok(match keys.layout {
        ClipLayout::OpenClip => {
            let (q, k, v) = split_in_proj(w, &format!("{p}attn."), c)?;
            Block {
                norm1: LayerNorm::load(w, &format!("{p}ln_1"), c, eps)?,
                q,
                k,
                v,
                out: Linear::load(w, &format!("{p}attn.out_proj"), c, c)?,
                norm2: LayerNorm::load(w, &format!("{p}ln_2"), c, eps)?,
                fc1: Linear::load(w, &format!("{p}mlp.c_fc"), c, inner)?,
                fc2: Linear::load(w, &format!("{p}mlp.c_proj"), inner, c)?,
            }
        }
        ClipLayout::HuggingFace | ClipLayout::HuggingFaceNoRoot => Block {
            norm1: LayerNorm::load(w, &format!("{p}layer_norm1"), c, eps)?,
            q: Linear::load(w, &format!("{p}self_attn.q_proj"), c, c)?,
            k: Linear::load(w, &format!("{p}self_attn.k_proj"), c, c)?,
            v: Linear::load(w, &format!("{p}self_attn.v_proj"), c, c)?,
            out: Linear::load(w, &format!("{p}self_attn.out_proj"), c, c)?,
            norm2: LayerNorm::load(w, &format!("{p}layer_norm2"), c, eps)?,
            fc1: Linear::load(w, &format!("{p}mlp.fc1"), c, inner)?,
            fc2: Linear::load(w, &format!("{p}mlp.fc2"), inner, c)?,
        },
    })
}

fn load_projection(w: &Weights, keys: &KeyNames, cfg: &ClipConfig) -> Result<Option<Linear>> {
    let Some(proj) = cfg.projection_dim else {
        return Ok(None);
    };
    let name = keys.projection();
    let weight = match keys.layout {
        // open_clip computes `pooled @ text_projection`, so its matrix is the transpose.
        ClipLayout::OpenClip => w.get_shaped(name, &[cfg.hidden, proj])?.tr().contiguous(),
        _ => w.get_shaped(name, &[proj, cfg.hidden])?,
    };
    Ok(Some(Linear { weight, bias: None }))
}

impl ClipTextEncoder {
    /// Loads every tensor `cfg` describes from `w` (extra keys such as `logit_scale`,
    /// `visual.*` or `position_ids` are ignored: positions are always `0..tokens`, which
    /// also sidesteps old single files whose float `position_ids` were saved off by rounding).
    pub fn load(w: &Weights, cfg: &ClipConfig) -> Result<Self> {
        let keys = KeyNames { layout: cfg.layout };
        if cfg.heads <= 0 || cfg.hidden % cfg.heads != 0 {
            return Err(EngineError::Invalid {
                field: "CLIP head count",
                value: cfg.heads.to_string(),
                expected: format!("a divisor of the width {}", cfg.hidden),
            });
        }
        let token_embedding = w.get_shaped(&keys.token_embedding(), &[cfg.vocab, cfg.hidden])?;
        let position_embedding =
            w.get_shaped(&keys.position_embedding(), &[cfg.max_positions, cfg.hidden])?;
        let blocks = (0..cfg.layers)
            .map(|i| load_block(w, &keys, i, cfg))
            .collect::<Result<Vec<_>>>()?;
        let final_norm = LayerNorm::load(w, &keys.final_norm(), cfg.hidden, cfg.layer_norm_eps)?;
        let projection = load_projection(w, &keys, cfg)?;
        Ok(ClipTextEncoder {
            cfg: cfg.clone(),
            token_embedding,
            position_embedding,
            blocks,
            final_norm,
            projection,
        })
    }

    pub fn config(&self) -> &ClipConfig {
        &self.cfg
    }

    /// Encodes `tokens` (`[batch, tokens]` integer ids, at most `max_positions` long).
    ///
    /// `hidden` is the chosen layer, passed through the final layer norm when
    /// `final_norm_on_hidden` (see [`super::ClipRole`] for what each model family uses).
    /// `pooled` always comes from the last layer after the final norm, at the position
    /// [`ClipConfig::pool`] picks.
    pub fn encode(
        &self,
        tokens: &Tensor,
        layer: LayerChoice,
        final_norm_on_hidden: bool,
    ) -> Result<ClipOutput> {
        self.encode_with_vectors(tokens, &[], layer, final_norm_on_hidden)
    }

    /// [`ClipTextEncoder::encode`] with some positions' token embeddings replaced by given
    /// vectors (`(position, [hidden])`, batch 1): how textual-inversion embeddings enter.
    pub fn encode_with_vectors(
        &self,
        tokens: &Tensor,
        vectors: &[(i64, Tensor)],
        layer: LayerChoice,
        final_norm_on_hidden: bool,
    ) -> Result<ClipOutput> {
        let from_end = match layer {
            LayerChoice::Last => 1,
            LayerChoice::FromEnd(n) => n,
        };
        let layers = self.blocks.len();
        if from_end < 1 || from_end > layers {
            return Err(EngineError::Invalid {
                field: "CLIP layer",
                value: format!("{layer:?}"),
                expected: format!("Last or FromEnd(1..={layers})"),
            });
        }
        let tokens = self.check_tokens(tokens)?;
        tch::no_grad(|| {
            let mut x = Tensor::embedding(&self.token_embedding, &tokens, -1, false, false);
            self.place_vectors(&mut x, vectors)?;
            self.forward(&tokens, x, layers - from_end, final_norm_on_hidden)
        })
    }

    fn place_vectors(&self, x: &mut Tensor, vectors: &[(i64, Tensor)]) -> Result<()> {
        let (batch, n, width) = x.size3()?;
        for (position, vector) in vectors {
            if batch != 1 || !(0..n).contains(position) || vector.size() != [width] {
                return Err(EngineError::Invalid {
                    field: "embedding vector",
                    value: format!("{:?} at {position}", vector.size()),
                    expected: format!("[{width}] at a position in 0..{n}, batch 1"),
                });
            }
            let row = vector.f_to_device(x.device())?.f_to_kind(x.kind())?;
            x.narrow(1, *position, 1).copy_(&row.view([1, 1, width]));
        }
        Ok(())
    }

    fn check_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        let invalid = |value: String, expected: String| EngineError::Invalid {
            field: "CLIP tokens",
            value,
            expected,
        };
        let size = tokens.size();
        if size.len() != 2 || size[1] < 1 || size[1] > self.cfg.max_positions {
            return Err(invalid(
                format!("shape {size:?}"),
                format!("[batch, 1..={}] token ids", self.cfg.max_positions),
            ));
        }
        let tokens = tokens
            .f_to_device(self.token_embedding.device())?
            .f_to_kind(Kind::Int64)?;
        // An out-of-range id would be a device-side assert on CUDA; refuse it here instead.
        let (lo, hi) = (
            tokens.f_min()?.int64_value(&[]),
            tokens.f_max()?.int64_value(&[]),
        );
        if lo < 0 || hi >= self.cfg.vocab {
            return Err(invalid(
                format!("ids {lo}..={hi}"),
                format!("ids in 0..{}", self.cfg.vocab),
            ));
        }
        Ok(tokens)
    }

    /// Runs all blocks on the token embeddings `x`, keeping the output of block `keep`
    /// (0-based); `tokens` picks the pooled position.
    fn forward(
        &self,
        tokens: &Tensor,
        x: Tensor,
        keep: usize,
        final_norm_on_hidden: bool,
    ) -> Result<ClipOutput> {
        let n = tokens.size()[1];
        let positions = self.position_embedding.narrow(0, 0, n);
        let mut x = x + positions;
        // Causal: token i sees tokens 0..=i (true = may attend). CLIP uses no padding mask.
        let causal = Tensor::ones([n, n], (Kind::Bool, x.device())).tril(0);
        let mut kept = None;
        for (i, block) in self.blocks.iter().enumerate() {
            x = self.block_forward(block, &x, &causal);
            if i == keep {
                kept = Some(x.shallow_clone());
            }
        }
        let last = self.final_norm.forward(&x);
        let kept = kept.unwrap_or_else(|| x.shallow_clone());
        let hidden = if !final_norm_on_hidden {
            kept
        } else if keep + 1 == self.blocks.len() {
            last.shallow_clone()
        } else {
            self.final_norm.forward(&kept)
        };
        let index = match self.cfg.pool {
            PoolPosition::HighestTokenId => tokens.argmax(-1, false),
            PoolPosition::FirstToken(id) => tokens.eq(id).to_kind(Kind::Int).argmax(-1, false),
        };
        let (batch, c) = (tokens.size()[0], self.cfg.hidden);
        let pooled = last
            .gather(
                1,
                &index.view([batch, 1, 1]).expand([batch, 1, c], false),
                false,
            )
            .squeeze_dim(1);
        let projected = self.projection.as_ref().map(|p| p.forward(&pooled));
        Ok(ClipOutput {
            hidden,
            pooled,
            projected,
        })
    }

    fn block_forward(&self, b: &Block, x: &Tensor, causal: &Tensor) -> Tensor {
        let h = b.norm1.forward(x);
        let a = attention(
            &b.q.forward(&h),
            &b.k.forward(&h),
            &b.v.forward(&h),
            self.cfg.heads,
            Some(causal),
            // 77 tokens: the scores are tiny, slicing would only cost time.
            AttentionMode::Sdpa,
        );
        let x = x + b.out.forward(&a);
        let h = b.fc1.forward(&b.norm2.forward(&x));
        let h = match self.cfg.activation {
            Activation::QuickGelu => &h * (&h * 1.702).sigmoid(),
            Activation::Gelu => h.gelu("none"),
        };
        x + b.fc2.forward(&h)
    }
}
