//! Merging LoRAs into loaded weights and taking them out again, exactly.
//!
//! Each patched weight's original is copied to the CPU the first time a LoRA touches it.
//! A new LoRA set first writes every original back, then computes each patched weight from
//! its original (`original + Σ weight · ΔW`, summed in fp32, cast once), so the result
//! depends only on the set, never on what was applied before: A, then B, then A again
//! gives the same bits as a fresh load with A. Nothing is ever subtracted.

use super::keys::Network;
use super::{targets, LoraApplication, LoraFile, LoraModule};
use crate::clip::ClipLayout;
use crate::error::{EngineError, Result};
use crate::unet::diffusers_keys::DiffusersLayout;
use crate::weights::ParamRegistry;
use std::collections::{BTreeMap, HashMap};
use tch::{Device, Kind, Tensor};

/// A network LoRAs can patch: its registry and how to name its weights.
#[derive(Debug, Clone)]
pub enum PatchTarget {
    Unet(ParamRegistry, DiffusersLayout),
    TextEncoder(ParamRegistry, ClipLayout),
}

impl PatchTarget {
    fn registry(&self) -> &ParamRegistry {
        match self {
            PatchTarget::Unet(registry, _) | PatchTarget::TextEncoder(registry, _) => registry,
        }
    }

    fn weight_name(&self, module: &str) -> Option<String> {
        match self {
            PatchTarget::Unet(_, layout) => targets::unet_weight(module, layout),
            PatchTarget::TextEncoder(_, layout) => targets::text_weight(module, *layout),
        }
    }
}

/// One weight and what goes onto it.
type Plan<'a> = BTreeMap<(Network, String), Vec<(&'a LoraModule, f64)>>;

/// The LoRA state of one loaded pipeline.
#[derive(Debug, Default)]
pub struct LoraPatcher {
    unet: Option<PatchTarget>,
    encoders: Vec<PatchTarget>,
    originals: HashMap<(Network, String), Tensor>,
    applied: Vec<LoraApplication>,
}

impl LoraPatcher {
    /// A patcher for these networks; `None` for the UNet when the pipeline cannot be
    /// patched (its weights are not kept loaded).
    pub fn new(unet: Option<PatchTarget>, encoders: Vec<PatchTarget>) -> LoraPatcher {
        LoraPatcher {
            unet,
            encoders,
            ..LoraPatcher::default()
        }
    }

    pub fn can_patch(&self) -> bool {
        self.unet.is_some()
    }

    /// The LoRAs merged now, in the order given.
    pub fn applied(&self) -> &[LoraApplication] {
        &self.applied
    }

    fn target(&self, network: Network) -> Option<&PatchTarget> {
        match network {
            Network::Unet => self.unet.as_ref(),
            Network::TextEncoder(i) => self.encoders.get(i),
        }
    }

    /// Every module of every file matched to a weight of the right shape, before anything
    /// changes: a LoRA for another family or with a key that fits nothing fails here.
    fn plan<'a>(&self, loras: &'a [(LoraApplication, LoraFile)]) -> Result<Plan<'a>> {
        let mut plan: Plan<'a> = BTreeMap::new();
        for (lora, file) in loras {
            for module in &file.modules {
                let unmatched = |why: String| EngineError::Incompatible {
                    what: "LoRA",
                    path: file.path.clone(),
                    reason: format!(
                        "{} {why} (is it made for another model family?)",
                        module.key
                    ),
                };
                let target = self.target(module.network).ok_or_else(|| {
                    unmatched("is for a text encoder this model does not have".into())
                })?;
                let name = target
                    .weight_name(&module.module)
                    .filter(|name| target.registry().contains(name))
                    .ok_or_else(|| unmatched("matches no layer of this model".into()))?;
                let shape = target
                    .registry()
                    .with(&name, |slot| slot.shape())
                    .unwrap_or_default();
                if !module.fits(&shape) {
                    return Err(unmatched(format!(
                        "makes a {:?} change for {name}, which is {shape:?}",
                        module.shape()
                    )));
                }
                let weight = match module.network {
                    Network::Unet => lora.unet_weight,
                    Network::TextEncoder(_) => lora.te_weight,
                };
                plan.entry((module.network, name))
                    .or_default()
                    .push((module, weight));
            }
        }
        Ok(plan)
    }

    /// Makes `loras` (with their files, already read) the merged set. On an error nothing
    /// has changed when it is a mismatch; the originals are back when a write failed.
    pub fn apply(&mut self, loras: &[(LoraApplication, LoraFile)]) -> Result<()> {
        let wanted: Vec<LoraApplication> = loras.iter().map(|(l, _)| l.clone()).collect();
        if wanted == self.applied {
            return Ok(());
        }
        if !self.can_patch() && !loras.is_empty() {
            return Err(EngineError::Invalid {
                field: "loras",
                value: wanted[0].name.clone(),
                expected: "a model loaded without offload (LoRAs are merged into the loaded \
                           weights; use --offload none)"
                    .into(),
            });
        }
        let plan = self.plan(loras)?;
        let _guard = tch::no_grad_guard();
        self.restore();
        for ((network, name), parts) in &plan {
            if let Err(err) = self.patch_one(*network, name, parts) {
                self.restore();
                return Err(err);
            }
        }
        self.applied = wanted;
        Ok(())
    }

    fn patch_one(
        &mut self,
        network: Network,
        name: &str,
        parts: &[(&LoraModule, f64)],
    ) -> Result<()> {
        let target = self
            .target(network)
            .expect("planned against this target")
            .clone();
        let registry = target.registry();
        let key = (network, name.to_string());
        let original = match self.originals.get(&key) {
            Some(original) => original.shallow_clone(),
            None => {
                let view = registry.with(name, |slot| slot.view()).expect("planned");
                let mut copy = Tensor::empty(view.size(), (view.kind(), Device::Cpu));
                copy.copy_(&view);
                self.originals.insert(key, copy.shallow_clone());
                copy
            }
        };
        registry
            .with(name, |slot| -> Result<()> {
                let mut view = slot.view();
                let (device, kind, shape) = (view.device(), view.kind(), view.size());
                // Not in place: on the CPU in fp32 `sum` starts as the original itself.
                let mut sum = original.to_device(device).to_kind(Kind::Float);
                for (module, weight) in parts {
                    if *weight != 0.0 {
                        sum = sum.f_add(&module.delta(*weight, &shape, device))?;
                    }
                }
                view.f_copy_(&sum.to_kind(kind))?;
                Ok(())
            })
            .expect("planned")
    }

    /// Writes every original back: the weights are as loaded.
    pub fn restore(&mut self) {
        let _guard = tch::no_grad_guard();
        for ((network, name), original) in std::mem::take(&mut self.originals) {
            if let Some(target) = self.target(network) {
                target
                    .registry()
                    .with(&name, |slot| slot.view().copy_(&original));
            }
        }
        self.applied.clear();
    }
}
