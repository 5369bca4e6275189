//! The small building blocks every network here is made of (linear, conv, norms,
//! attention), each loaded from a [`Weights`] view with its shape checked.

use crate::error::Result;
use crate::weights::Weights;
use tch::Tensor;

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

/// Multi-head attention core on `[batch, tokens, heads*head_dim]` inputs, through
/// `scaled_dot_product_attention` (flash / memory-efficient kernels on CUDA).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: i64,
    causal_mask: Option<&Tensor>,
) -> Tensor {
    let (b, tq, inner) = q
        .size3()
        .expect("attention expects [batch, tokens, channels]");
    let tk = k.size()[1];
    let head_dim = inner / heads;
    let split = |t: &Tensor, tokens: i64| t.view([b, tokens, heads, head_dim]).transpose(1, 2);
    let out = Tensor::scaled_dot_product_attention(
        &split(q, tq),
        &split(k, tk),
        &split(v, tk),
        causal_mask,
        0.0,
        false,
        None,
        false,
    );
    out.transpose(1, 2).reshape([b, tq, inner])
}
