//! The small building blocks every network here is made of (linear, conv, norms,
//! attention), each loaded from a [`Weights`] view with its shape checked.

use crate::error::Result;
use crate::weights::Weights;
pub use imagelab_core::memory::AttentionMode;
use tch::{Kind, Tensor};

/// Loads `{name}.bias` if the file has one, checking it has `len` elements.
fn optional_bias(w: &Weights, name: &str, len: i64) -> Result<Option<Tensor>> {
    let bias_name = format!("{name}.bias");
    if w.contains(&bias_name) {
        w.get_shaped(&bias_name, &[len]).map(Some)
    } else {
        Ok(None)
    }
}

/// `y = x Wᵀ + b`.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Loads `{name}.weight` (shape `[out, in]`) and `{name}.bias` if present.
    pub fn load(w: &Weights, name: &str, in_dim: i64, out_dim: i64) -> Result<Linear> {
        let weight = w.get_shaped(&format!("{name}.weight"), &[out_dim, in_dim])?;
        let bias = optional_bias(w, name, out_dim)?;
        Ok(Linear { weight, bias })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// One projection computing several that share an input: the weights (and biases)
    /// stacked along the output dimension, so one GEMM replaces `parts.len()` (split the
    /// result with `split` on the last dimension). A part without a bias gets zeros there
    /// when another has one.
    pub fn fused(parts: Vec<Linear>) -> Linear {
        let any_bias = parts.iter().any(|p| p.bias.is_some());
        let bias = any_bias.then(|| {
            let biases: Vec<Tensor> = parts
                .iter()
                .map(|p| match &p.bias {
                    Some(b) => b.shallow_clone(),
                    None => {
                        Tensor::zeros([p.weight.size()[0]], (p.weight.kind(), p.weight.device()))
                    }
                })
                .collect();
            Tensor::cat(&biases, 0)
        });
        let weights: Vec<Tensor> = parts.into_iter().map(|p| p.weight).collect();
        Linear {
            weight: Tensor::cat(&weights, 0),
            bias,
        }
    }

    pub fn out_features(&self) -> i64 {
        self.weight.size()[0]
    }
}

/// A 2-D convolution with square kernel, stride and padding.
#[derive(Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: i64,
    pub padding: i64,
}

impl Conv2d {
    pub fn load(
        w: &Weights,
        name: &str,
        in_ch: i64,
        out_ch: i64,
        kernel: i64,
        stride: i64,
        padding: i64,
    ) -> Result<Conv2d> {
        let weight = w.get_shaped(&format!("{name}.weight"), &[out_ch, in_ch, kernel, kernel])?;
        let bias = optional_bias(w, name, out_ch)?;
        Ok(Conv2d {
            weight,
            bias,
            stride,
            padding,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(
            &self.weight,
            self.bias.as_ref(),
            [self.stride],
            [self.padding],
            [1],
            1,
        )
    }
}

/// Group normalization over channels.
#[derive(Debug)]
pub struct GroupNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub groups: i64,
    pub eps: f64,
}

impl GroupNorm {
    pub fn load(
        w: &Weights,
        name: &str,
        channels: i64,
        groups: i64,
        eps: f64,
    ) -> Result<GroupNorm> {
        Ok(GroupNorm {
            weight: w.get_shaped(&format!("{name}.weight"), &[channels])?,
            bias: w.get_shaped(&format!("{name}.bias"), &[channels])?,
            groups,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.group_norm(
            self.groups,
            Some(&self.weight),
            Some(&self.bias),
            self.eps,
            true,
        )
    }
}

/// Layer normalization over the last dimension.
#[derive(Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(w: &Weights, name: &str, dim: i64, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: w.get_shaped(&format!("{name}.weight"), &[dim])?,
            bias: w.get_shaped(&format!("{name}.bias"), &[dim])?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let dim = *x.size().last().unwrap_or(&1);
        x.layer_norm([dim], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// Multi-head attention core on `[batch, tokens, heads*head_dim]` inputs: through
/// `scaled_dot_product_attention` (flash / memory-efficient kernels on CUDA), or in query
/// slices (see [`AttentionMode::Sliced`]).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: i64,
    causal_mask: Option<&Tensor>,
    mode: AttentionMode,
) -> Tensor {
    let (b, tq, inner) = q
        .size3()
        .expect("attention expects [batch, tokens, channels]");
    let tk = k.size()[1];
    let head_dim = inner / heads;
    let split = |t: &Tensor, tokens: i64| t.view([b, tokens, heads, head_dim]).transpose(1, 2);
    let (q, k, v) = (split(q, tq), split(k, tk), split(v, tk));
    let out = match mode {
        AttentionMode::Sdpa => {
            Tensor::scaled_dot_product_attention(&q, &k, &v, causal_mask, 0.0, false, None, false)
        }
        AttentionMode::Sliced { query_chunk } => {
            let chunk = match query_chunk {
                Some(n) => i64::from(n),
                None => auto_query_chunk(b * heads, tk, q.kind().elt_size_in_bytes() as i64),
            };
            sliced_attention(&q, &k, &v, causal_mask, chunk)
        }
    };
    out.transpose(1, 2).reshape([b, tq, inner])
}

/// The score bytes one slice of [`sliced_attention`] may hold when no chunk is given.
const SLICE_SCORE_BUDGET: i64 = 256 << 20;

/// Queries per slice so that one slice's scores stay within the budget: per score, the
/// product in the input's precision, the fp32 softmax and the probabilities cast back.
fn auto_query_chunk(rows: i64, keys: i64, element_bytes: i64) -> i64 {
    let per_score = 2 * element_bytes + 4;
    (SLICE_SCORE_BUDGET / (per_score * rows.max(1) * keys.max(1))).max(1)
}

/// `softmax(q kᵀ / √d + mask) v` on `[batch, heads, tokens, head_dim]`, `chunk` queries at
/// a time. The scale is applied to `q` before the product, so fp16 products stay √d
/// times further from overflow than unscaled ones, and the softmax runs in fp32.
fn sliced_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    chunk: i64,
) -> Tensor {
    let tq = q.size()[2];
    let head_dim = *q.size().last().unwrap_or(&1);
    let scaled_q = q * (1.0 / (head_dim as f64).sqrt());
    let keys_t = k.transpose(-2, -1);
    let mut outputs = Vec::with_capacity(((tq + chunk - 1) / chunk.max(1)) as usize);
    let mut start = 0;
    while start < tq {
        let len = chunk.min(tq - start);
        let mut scores = scaled_q.narrow(2, start, len).matmul(&keys_t);
        if let Some(mask) = mask {
            // A mask over every query ([.., tq, tk]) is sliced like the queries; one
            // broadcast over them ([.., 1, tk]) applies as is.
            let rows = if mask.dim() >= 2 {
                mask.size()[mask.dim() - 2]
            } else {
                1
            };
            let part = if rows == tq && tq > 1 {
                mask.narrow(-2, start, len)
            } else {
                mask.shallow_clone()
            };
            scores = if part.kind() == Kind::Bool {
                scores.masked_fill(&part.logical_not(), f64::NEG_INFINITY)
            } else {
                scores + part
            };
        }
        let probs = scores.softmax(-1, Kind::Float).to_kind(v.kind());
        outputs.push(probs.matmul(v));
        start += len;
    }
    Tensor::cat(&outputs, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// Deterministic values in [-1, 1] without libtorch's global generator, which other
    /// tests in this process reseed concurrently (the samplers' noise uses it).
    fn random(shape: &[i64], seed: i64) -> Tensor {
        let n: i64 = shape.iter().product();
        (Tensor::arange(n, (Kind::Float, Device::Cpu)) * (0.7 + 0.31 * seed as f64))
            .sin()
            .view(shape)
    }

    #[test]
    fn sliced_attention_matches_sdpa() {
        // 2 images, 3 heads of 8, 10 queries over 10 or 6 keys; slices of 1, 3 (a
        // remainder of 1), 10 and more than there are queries.
        let q = random(&[2, 10, 24], 1) * 3.0;
        for keys in [10, 6] {
            let k = random(&[2, keys, 24], 2);
            let v = random(&[2, keys, 24], 3);
            let exact = attention(&q, &k, &v, 3, None, AttentionMode::Sdpa);
            for chunk in [1, 3, 10, 64] {
                let mode = AttentionMode::Sliced {
                    query_chunk: Some(chunk),
                };
                let sliced = attention(&q, &k, &v, 3, None, mode);
                assert_eq!(sliced.size(), exact.size());
                let err = max_diff(&sliced, &exact);
                assert!(err < 1e-5, "keys {keys}, chunk {chunk}: {err}");
            }
            let auto = attention(
                &q,
                &k,
                &v,
                3,
                None,
                AttentionMode::Sliced { query_chunk: None },
            );
            assert!(max_diff(&auto, &exact) < 1e-5);
        }
    }

    #[test]
    fn sliced_attention_applies_a_causal_mask_per_slice() {
        let (q, k, v) = (
            random(&[1, 7, 8], 4),
            random(&[1, 7, 8], 5),
            random(&[1, 7, 8], 6),
        );
        let causal = Tensor::ones([7, 7], (Kind::Bool, Device::Cpu)).tril(0);
        let exact = attention(&q, &k, &v, 2, Some(&causal), AttentionMode::Sdpa);
        let unmasked = attention(&q, &k, &v, 2, None, AttentionMode::Sdpa);
        assert!(
            max_diff(&exact, &unmasked) > 1e-2,
            "the mask must matter here"
        );
        let sliced = attention(
            &q,
            &k,
            &v,
            2,
            Some(&causal),
            AttentionMode::Sliced {
                query_chunk: Some(3),
            },
        );
        assert!(max_diff(&sliced, &exact) < 1e-5);
    }

    #[test]
    fn sliced_attention_stays_finite_in_half_precision_where_scores_are_large() {
        // q·k = 40² × 64 = 102,400 overflows fp16 (max 65,504) unless q is scaled first
        // (÷ 8: 12,800); the softmax runs in fp32.
        let q = (Tensor::ones([1, 4, 64], (Kind::Float, Device::Cpu)) * 40.0).to_kind(Kind::Half);
        let k = q.shallow_clone();
        let v = random(&[1, 4, 64], 7).to_kind(Kind::Half);
        let out = attention(
            &q,
            &k,
            &v,
            1,
            None,
            AttentionMode::Sliced {
                query_chunk: Some(2),
            },
        );
        assert_eq!(out.kind(), Kind::Half);
        assert!(out.isfinite().all().int64_value(&[]) == 1, "{out}");
        // Equal scores everywhere: every query gets the mean of the values.
        let mean = v.to_kind(Kind::Float).mean_dim(1, true, Kind::Float);
        let err = max_diff(&out.to_kind(Kind::Float), &mean.expand([1, 4, 64], false));
        assert!(err < 1e-2, "{err}");
    }

    #[test]
    fn auto_slices_keep_the_scores_within_the_budget() {
        // SDXL's VAE at 1024²: one head over 16,384 tokens.
        // fp16: 2 + 4 + 2 bytes per score.
        let chunk = auto_query_chunk(1, 16_384, 2);
        assert!(chunk * 16_384 * 8 <= SLICE_SCORE_BUDGET);
        assert!((chunk + 1) * 16_384 * 8 > SLICE_SCORE_BUDGET);
        assert_eq!(auto_query_chunk(1, 16_384, 4), chunk * 8 / 12);
        assert_eq!(auto_query_chunk(1 << 20, 1 << 20, 4), 1);
    }

    #[test]
    fn a_fused_projection_computes_its_parts() {
        let x = random(&[2, 5, 6], 8);
        let parts: Vec<Linear> = (0..3)
            .map(|i| Linear {
                weight: random(&[4, 6], 10 + i),
                bias: None,
            })
            .collect();
        let separate: Vec<Tensor> = parts.iter().map(|p| p.forward(&x)).collect();
        let fused = Linear::fused(parts);
        assert_eq!(fused.out_features(), 12);
        for (got, want) in fused.forward(&x).split(4, -1).iter().zip(&separate) {
            assert!(max_diff(got, want) < 1e-5);
        }
        // With a bias on one part only, the others get zeros and all stay exact.
        let parts: Vec<Linear> = (0..3)
            .map(|i| Linear {
                weight: random(&[4, 6], 20 + i),
                bias: (i == 1).then(|| random(&[4], 30)),
            })
            .collect();
        let separate: Vec<Tensor> = parts.iter().map(|p| p.forward(&x)).collect();
        let fused = Linear::fused(parts);
        for (got, want) in fused.forward(&x).split(4, -1).iter().zip(&separate) {
            assert!(max_diff(got, want) < 1e-5);
        }
    }

    #[test]
    fn sliced_attention_takes_every_mask_shape_sdpa_takes() {
        let (q, k, v) = (
            random(&[2, 6, 8], 40),
            random(&[2, 5, 8], 41),
            random(&[2, 5, 8], 42),
        );
        let float_mask = random(&[2, 2, 6, 5], 43);
        let masks = [
            Tensor::ones([1, 5], (Kind::Bool, Device::Cpu)).index_fill(
                1,
                &Tensor::from_slice(&[3i64]),
                0,
            ),
            float_mask.shallow_clone(),
            float_mask.narrow(2, 0, 1),
        ];
        for mask in &masks {
            let exact = attention(&q, &k, &v, 2, Some(mask), AttentionMode::Sdpa);
            let sliced = attention(
                &q,
                &k,
                &v,
                2,
                Some(mask),
                AttentionMode::Sliced {
                    query_chunk: Some(4),
                },
            );
            let err = max_diff(&sliced, &exact);
            assert!(err < 1e-5, "mask {:?}: {err}", mask.size());
        }
    }
}
