//! The UNet's forward pass, over one input or several (the two halves of sequential CFG)
//! block by block: under sequential offload each block's weights then cross to the device
//! once per step, however many inputs run through it.

use super::plan::{build_block, config_mismatch, Layer};
use super::{blocks, timestep_embedding, Blocks, UNet};
use crate::error::{EngineError, Result};
use tch::Tensor;

/// One UNet input: latents `x` `[B, in, H, W]`, `timesteps` `[B]` (or one value; fractional
/// values allowed), text `context` `[B, T, context_dim]` and, for SDXL, `y`
/// `[B, adm_in_channels]`.
#[derive(Debug, Clone, Copy)]
pub struct UNetInput<'a> {
    pub x: &'a Tensor,
    pub timesteps: &'a Tensor,
    pub context: &'a Tensor,
    pub y: Option<&'a Tensor>,
}

/// Which part of the UNet a block belongs to.
#[derive(Debug, Clone, Copy)]
enum Section {
    Input(usize),
    Middle,
    Output(usize),
}

/// A block's layers: the resident ones, or (sequential offload) built for this pass.
enum BlockLayers<'a> {
    Resident(&'a [Layer]),
    Built(Vec<Layer>),
}

impl BlockLayers<'_> {
    fn layers(&self) -> &[Layer] {
        match self {
            BlockLayers::Resident(layers) => layers,
            BlockLayers::Built(layers) => layers,
        }
    }
}

/// One input's state as it goes through the blocks.
struct Pass {
    emb_act: Tensor,
    context: Tensor,
    h: Tensor,
    skips: Vec<Tensor>,
}

impl Pass {
    fn run(&mut self, layers: &[Layer], up_target: Option<(i64, i64)>) {
        // Taken, not cloned: the block's input is freed as soon as its first layer is done
        // with it (in output blocks it is the large concatenation with the skip).
        let mut h = std::mem::replace(&mut self.h, Tensor::new());
        for layer in layers {
            h = match layer {
                Layer::ConvIn(conv) => conv.forward(&h),
                Layer::Res(res) => res.forward(&h, &self.emb_act),
                Layer::Attn(attn) => attn.forward(&h, &self.context),
                Layer::Down(down) => down.forward(&h),
                Layer::Up(up) => up.forward(&h, up_target),
            };
        }
        self.h = h;
    }
}

fn invalid(field: &'static str, value: String, expected: String) -> EngineError {
    EngineError::Invalid {
        field,
        value,
        expected,
    }
}

impl UNet {
    /// Predicts the model output (noise or v) for one input (see [`UNetInput`]).
    pub fn forward(
        &self,
        x: &Tensor,
        timesteps: &Tensor,
        context: &Tensor,
        y: Option<&Tensor>,
    ) -> Result<Tensor> {
        let input = UNetInput {
            x,
            timesteps,
            context,
            y,
        };
        let mut outputs = self.forward_many(&[input])?;
        outputs.pop().ok_or_else(|| config_mismatch("no output"))
    }

    /// [`UNet::forward`] for several inputs: the same results as separate calls. With
    /// streamed blocks (sequential offload) each block runs on every input before the next
    /// is built, so it is built once instead of once per input; with resident blocks the
    /// inputs run one after the other, so only one input's activations exist at a time.
    pub fn forward_many(&self, inputs: &[UNetInput<'_>]) -> Result<Vec<Tensor>> {
        if inputs.len() > 1 && matches!(self.blocks, Blocks::Resident { .. }) {
            return inputs
                .iter()
                .map(|input| self.forward(input.x, input.timesteps, input.context, input.y))
                .collect();
        }
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let mut passes = inputs
            .iter()
            .map(|input| self.prepare(input))
            .collect::<Result<Vec<_>>>()?;
        for i in 0..self.plan.input_blocks.len() {
            let block = self.block(Section::Input(i))?;
            for pass in &mut passes {
                pass.run(block.layers(), None);
                pass.skips.push(pass.h.shallow_clone());
            }
        }
        let block = self.block(Section::Middle)?;
        for pass in &mut passes {
            pass.run(block.layers(), None);
        }
        for i in 0..self.plan.output_blocks.len() {
            let block = self.block(Section::Output(i))?;
            for pass in &mut passes {
                let skip = pass
                    .skips
                    .pop()
                    .ok_or_else(|| config_mismatch("more output blocks than skips"))?;
                let h = std::mem::replace(&mut pass.h, Tensor::new());
                pass.h = Tensor::cat(&[h, skip], 1);
                // An upsampler must reach the size of the next skip it will be joined with.
                let target = pass.skips.last().map(|s| (s.size()[2], s.size()[3]));
                pass.run(block.layers(), target);
            }
        }
        Ok(passes
            .into_iter()
            .map(|pass| {
                let out = self
                    .out_conv
                    .forward(&self.out_norm.forward(&pass.h).silu());
                // Callers get the usual NCHW layout whatever the blocks used inside.
                if self.options.blocks.channels_last {
                    out.contiguous()
                } else {
                    out
                }
            })
            .collect())
    }

    /// The resident layers of a block, or (sequential offload) that block built on the
    /// device now, freed when the returned value is dropped.
    fn block(&self, section: Section) -> Result<BlockLayers<'_>> {
        Ok(match &self.blocks {
            Blocks::Resident {
                input,
                middle,
                output,
            } => BlockLayers::Resident(match section {
                Section::Input(i) => &input[i],
                Section::Middle => middle,
                Section::Output(i) => &output[i],
            }),
            Blocks::Streamed { weights, plan } => {
                let specs = match section {
                    Section::Input(i) => &plan.input_blocks[i],
                    Section::Middle => &plan.middle_block,
                    Section::Output(i) => &plan.output_blocks[i],
                };
                BlockLayers::Built(build_block(specs, weights, &self.cfg, self.options.blocks)?)
            }
        })
    }

    /// Checks one input's shapes and computes what every block of its pass shares: the
    /// activated time (and SDXL label) embedding and the context in the UNet's precision.
    fn prepare(&self, input: &UNetInput<'_>) -> Result<Pass> {
        let UNetInput {
            x,
            timesteps,
            context,
            y,
        } = *input;
        let size = x.size();
        if size.len() != 4 || size[1] != self.cfg.in_channels {
            return Err(invalid(
                "UNet input",
                format!("{size:?}"),
                format!("[batch, {}, h, w]", self.cfg.in_channels),
            ));
        }
        let batch = size[0];
        let ctx = context.size();
        if ctx.len() != 3 || ctx[0] != batch || ctx[2] != self.cfg.context_dim {
            return Err(invalid(
                "UNet context",
                format!("{ctx:?}"),
                format!("[{batch}, tokens, {}]", self.cfg.context_dim),
            ));
        }
        let t = match timesteps.numel() {
            1 => timesteps.reshape([1]).expand([batch], false),
            n if n as i64 == batch => timesteps.reshape([batch]),
            _ => {
                return Err(invalid(
                    "UNet timesteps",
                    format!("{:?}", timesteps.size()),
                    format!("[{batch}] or one value"),
                ))
            }
        };

        let t_emb = timestep_embedding(&t, self.cfg.model_channels).to_kind(x.kind());
        let mut emb = self
            .time_embed
            .1
            .forward(&self.time_embed.0.forward(&t_emb).silu());
        match (&self.label_emb, y, self.cfg.adm_in_channels) {
            (Some((first, second)), Some(y), Some(adm)) => {
                if y.size() != [batch, adm] {
                    return Err(invalid(
                        "UNet y",
                        format!("{:?}", y.size()),
                        format!("[{batch}, {adm}]"),
                    ));
                }
                emb += second.forward(&first.forward(&y.to_kind(x.kind())).silu());
            }
            (None, None, _) => {}
            (Some(_), None, _) | (Some(_), Some(_), None) => {
                return Err(invalid(
                    "UNet y",
                    "none".into(),
                    "a conditioning vector (SDXL: see sdxl_vector)".into(),
                ))
            }
            (None, Some(_), _) => {
                return Err(invalid(
                    "UNet y",
                    "a vector".into(),
                    "none for this model".into(),
                ))
            }
        }
        let h = if self.options.blocks.channels_last {
            blocks::to_channels_last(x)
        } else {
            x.shallow_clone()
        };
        Ok(Pass {
            emb_act: emb.silu(),
            context: context.to_kind(x.kind()),
            h,
            skips: Vec::with_capacity(self.plan.input_blocks.len()),
        })
    }
}
