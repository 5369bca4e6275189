//! The model as the samplers see it: `denoised = D(x, σ)`, with the network's input
//! scaling, eps- or v-prediction, and classifier-free guidance applied on the denoised
//! images as ComfyUI does (`uncond + (cond − uncond)·cfg`, skipping the uncond pass when
//! cfg is 1). The network is the part that varies by family: the SD UNet or PixArt's DiT.

use crate::checkpoint::Prediction;
use crate::error::{EngineError, Result};
use crate::pixart::PixArtTransformer;
use crate::sampling::ModelSchedule;
use crate::unet::{UNet, UNetInput};
use imagelab_core::memory::CfgBatching;
use tch::{Kind, Tensor};

/// One side of guidance: a context, SDXL's vector input, and for T5 contexts the mask of
/// real tokens (`[1, tokens]`).
#[derive(Debug)]
pub struct GuidanceInput {
    pub context: Tensor,
    pub vector: Option<Tensor>,
    pub mask: Option<Tensor>,
}

/// The denoising network.
#[derive(Debug, Clone, Copy)]
pub enum Network<'a> {
    UNet(&'a UNet),
    PixArt(&'a PixArtTransformer),
}

/// One batch for the network, already scaled and in its precision.
struct NetInput<'a> {
    x: &'a Tensor,
    t: &'a Tensor,
    context: &'a Tensor,
    vector: Option<&'a Tensor>,
    mask: Option<&'a Tensor>,
}

impl Network<'_> {
    /// The prediction for each input, `[B, 4, H, W]` each (PixArt's learned-sigma half
    /// dropped). Several inputs give the same results as separate calls.
    fn run(&self, inputs: &[NetInput<'_>]) -> Result<Vec<Tensor>> {
        match self {
            Network::UNet(unet) => {
                let unet_inputs: Vec<UNetInput<'_>> = inputs
                    .iter()
                    .map(|i| UNetInput {
                        x: i.x,
                        timesteps: i.t,
                        context: i.context,
                        y: i.vector,
                    })
                    .collect();
                unet.forward_many(&unet_inputs)
            }
            Network::PixArt(dit) => Ok(inputs
                .iter()
                .map(|i| {
                    let all = i.context.ones_like().narrow(2, 0, 1).squeeze_dim(2);
                    let mask = i.mask.map_or(all, Tensor::shallow_clone);
                    let out = dit.forward(i.x, i.t, i.context, &mask);
                    out.narrow(1, 0, dit.config().in_channels)
                })
                .collect()),
        }
    }
}

/// Repeats token sequences so two contexts of different chunk counts can share one batch
/// (ComfyUI uses the least common multiple the same way).
fn match_lengths(a: &Tensor, b: &Tensor) -> (Tensor, Tensor) {
    let (la, lb) = (a.size()[1], b.size()[1]);
    if la == lb {
        return (a.shallow_clone(), b.shallow_clone());
    }
    let gcd = |mut x: i64, mut y: i64| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    let lcm = la / gcd(la, lb) * lb;
    (a.repeat([1, lcm / la, 1]), b.repeat([1, lcm / lb, 1]))
}

pub struct Denoiser<'a> {
    pub net: Network<'a>,
    pub schedule: &'a ModelSchedule,
    pub prediction: Prediction,
    pub cond: &'a GuidanceInput,
    pub uncond: &'a GuidanceInput,
    pub cfg: f64,
    /// The network's precision; latents stay in fp32 between steps.
    pub kind: Kind,
    /// Whether guidance's two halves share one network call.
    pub batching: CfgBatching,
}

/// The network's conditioning for a whole call: contexts, vectors and masks, the uncond
/// half first when guided.
struct Conditioning {
    contexts: Tensor,
    vectors: Option<Tensor>,
    masks: Option<Tensor>,
    copies: i64,
}

/// `[u; c]` (or `c` alone) with each side repeated to `batch` rows.
fn stack(c: &Tensor, u: Option<&Tensor>, batch: i64) -> Tensor {
    let rows = |t: &Tensor| {
        let mut shape = t.size();
        shape[0] = batch;
        t.expand(shape, false)
    };
    match u {
        Some(u) => Tensor::cat(&[rows(u), rows(c)], 0),
        None => rows(c),
    }
}

impl Denoiser<'_> {
    fn conditioning(&self, batch: i64, guided: bool) -> Result<Conditioning> {
        let (cond, uncond) = (self.cond, guided.then_some(self.uncond));
        let (c, u) = match uncond {
            Some(u) if cond.mask.is_some() || u.mask.is_some() => {
                if cond.context.size()[1] != u.context.size()[1] {
                    return Err(EngineError::Invalid {
                        field: "negative prompt",
                        value: format!("{} tokens", u.context.size()[1]),
                        expected: format!("{} tokens, as the prompt has", cond.context.size()[1]),
                    });
                }
                (
                    cond.context.shallow_clone(),
                    Some(u.context.shallow_clone()),
                )
            }
            Some(u) => {
                let (c, u) = match_lengths(&cond.context, &u.context);
                (c, Some(u))
            }
            None => (cond.context.shallow_clone(), None),
        };
        let pair = |pick: fn(&GuidanceInput) -> Option<&Tensor>| match uncond {
            Some(u) => pick(cond)
                .zip(pick(u))
                .map(|(c, u)| stack(c, Some(u), batch)),
            None => pick(cond).map(|c| stack(c, None, batch)),
        };
        Ok(Conditioning {
            contexts: stack(&c, u.as_ref(), batch),
            vectors: pair(|g| g.vector.as_ref()),
            masks: pair(|g| g.mask.as_ref()),
            copies: if guided { 2 } else { 1 },
        })
    }

    /// `D(x, σ)` for a batch of latents `x` (fp32), returning fp32 denoised latents.
    pub fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let batch = x.size()[0];
        let guided = (self.cfg - 1.0).abs() > f64::EPSILON;
        let c_in = 1.0 / (sigma * sigma + 1.0).sqrt();
        // The nearest integer step, as ComfyUI's ModelSamplingDiscrete feeds every discrete
        // model (diffusers' Euler interpolates; the two agree at integer timesteps).
        let timestep = self.schedule.nearest_t(sigma);
        let cond = self.conditioning(batch, guided)?;
        let copies = cond.copies;
        let x_in = if copies == 2 {
            Tensor::cat(&[x, x], 0)
        } else {
            x.shallow_clone()
        };
        // Timesteps stay fp32: near t = 999 fp16 resolves only steps of 0.5.
        let t = Tensor::full([batch * copies], timestep, (Kind::Float, x.device()));
        let scaled = (&x_in * c_in).to_kind(self.kind);
        let contexts = cond.contexts.to_kind(self.kind);
        let vectors = cond.vectors.map(|v| v.to_kind(self.kind));
        let masks = cond.masks;
        // Sequential CFG: two calls of batch B instead of one of 2B, so the attention and
        // convolution peaks are those of one half (with streamed blocks, each block runs
        // on both halves while it is on the device).
        let halves = if copies == 2 && self.batching == CfgBatching::Sequential {
            2
        } else {
            1
        };
        let rows = batch * copies / halves;
        let part = |t: &Tensor, half: i64| t.narrow(0, half * rows, rows);
        let parts: Vec<[Tensor; 3]> = (0..halves)
            .map(|h| [part(&scaled, h), part(&t, h), part(&contexts, h)])
            .collect();
        let vector_parts: Option<Vec<Tensor>> = vectors
            .as_ref()
            .map(|v| (0..halves).map(|h| part(v, h)).collect());
        let mask_parts: Option<Vec<Tensor>> = masks
            .as_ref()
            .map(|m| (0..halves).map(|h| part(m, h)).collect());
        let inputs: Vec<NetInput<'_>> = parts
            .iter()
            .enumerate()
            .map(|(h, [x, t, context])| NetInput {
                x,
                t,
                context,
                vector: vector_parts.as_ref().map(|v| &v[h]),
                mask: mask_parts.as_ref().map(|m| &m[h]),
            })
            .collect();
        let out = Tensor::cat(&self.net.run(&inputs)?, 0).to_kind(Kind::Float);
        let denoised = match self.prediction {
            Prediction::Eps => &x_in - out * sigma,
            Prediction::V => {
                let s2 = sigma * sigma + 1.0;
                &x_in / s2 - out * (sigma / s2.sqrt())
            }
        };
        if guided {
            let parts = denoised.chunk(2, 0);
            let (uncond, cond) = (&parts[0], &parts[1]);
            Ok(uncond + (cond - uncond) * self.cfg)
        } else {
            Ok(denoised)
        }
    }
}
