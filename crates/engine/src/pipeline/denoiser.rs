//! The model as the samplers see it: `denoised = D(x, σ)`, with the UNet's input scaling,
//! eps- or v-prediction, and classifier-free guidance applied on the denoised images as
//! ComfyUI does (`uncond + (cond − uncond)·cfg`, skipping the uncond pass when cfg is 1).

use crate::checkpoint::Prediction;
use crate::error::Result;
use crate::sampling::ModelSchedule;
use crate::unet::{UNet, UNetInput};
use imagelab_core::memory::CfgBatching;
use tch::{Kind, Tensor};

/// One side of guidance: a context and, for SDXL, the vector input.
#[derive(Debug)]
pub struct GuidanceInput {
    pub context: Tensor,
    pub vector: Option<Tensor>,
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
    pub unet: &'a UNet,
    pub schedule: &'a ModelSchedule,
    pub prediction: Prediction,
    pub cond: &'a GuidanceInput,
    pub uncond: &'a GuidanceInput,
    pub cfg: f64,
    /// The UNet's precision; latents stay in fp32 between steps.
    pub kind: Kind,
    /// Whether guidance's two halves share one UNet call.
    pub batching: CfgBatching,
}

impl Denoiser<'_> {
    /// `D(x, σ)` for a batch of latents `x` (fp32), returning fp32 denoised latents.
    pub fn denoise(&self, x: &Tensor, sigma: f64) -> Result<Tensor> {
        let batch = x.size()[0];
        let guided = (self.cfg - 1.0).abs() > f64::EPSILON;
        let c_in = 1.0 / (sigma * sigma + 1.0).sqrt();
        let timestep = self.schedule.sigma_to_t(sigma);
        let (contexts, vectors, copies) = if guided {
            let (c, u) = match_lengths(&self.cond.context, &self.uncond.context);
            let ctx = Tensor::cat(
                &[
                    u.expand([batch, -1, -1], false),
                    c.expand([batch, -1, -1], false),
                ],
                0,
            );
            let vec = match (&self.cond.vector, &self.uncond.vector) {
                (Some(c), Some(u)) => Some(Tensor::cat(
                    &[u.expand([batch, -1], false), c.expand([batch, -1], false)],
                    0,
                )),
                _ => None,
            };
            (ctx, vec, 2)
        } else {
            let ctx = self.cond.context.expand([batch, -1, -1], false);
            let vec = self
                .cond
                .vector
                .as_ref()
                .map(|v| v.expand([batch, -1], false));
            (ctx, vec, 1)
        };
        let x_in = if copies == 2 {
            Tensor::cat(&[x, x], 0)
        } else {
            x.shallow_clone()
        };
        let device = x.device();
        // Timesteps stay fp32: near t = 999 fp16 resolves only steps of 0.5.
        let t = Tensor::full([batch * copies as i64], timestep, (Kind::Float, device));
        let scaled = (&x_in * c_in).to_kind(self.kind);
        let contexts = contexts.to_kind(self.kind);
        let vectors = vectors.map(|v| v.to_kind(self.kind));
        let out = if copies == 2 && self.batching == CfgBatching::Sequential {
            // Two calls of batch B instead of one of 2B: the attention and convolution peaks
            // are those of one half (with streamed blocks, each block runs on both halves
            // while it is on the device, so the other half's skips are kept meanwhile).
            let part = |t: &Tensor, half: i64| t.narrow(0, half * batch, batch);
            let (xs, ts, cs) = (
                [part(&scaled, 0), part(&scaled, 1)],
                [part(&t, 0), part(&t, 1)],
                [part(&contexts, 0), part(&contexts, 1)],
            );
            let ys = vectors.as_ref().map(|v| [part(v, 0), part(v, 1)]);
            let inputs: Vec<UNetInput<'_>> = (0..2)
                .map(|i| UNetInput {
                    x: &xs[i],
                    timesteps: &ts[i],
                    context: &cs[i],
                    y: ys.as_ref().map(|y| &y[i]),
                })
                .collect();
            Tensor::cat(&self.unet.forward_many(&inputs)?, 0)
        } else {
            self.unet
                .forward(&scaled, &t, &contexts, vectors.as_ref())?
        }
        .to_kind(Kind::Float);
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
