//! Where each loaded weight ended up: a map from a component's tensor names to the tensors
//! its modules actually use, so a LoRA can patch them in place and restore them later.
//!
//! [`Weights::get`](super::Weights::get) records every float tensor it hands out. Code that
//! replaces a loaded tensor with another (a fused q/k/v projection, open_clip's split
//! `in_proj`, an NHWC copy) registers the replacement under the original names, so an entry
//! never points at a tensor the modules no longer use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tch::Tensor;

/// One weight as the modules hold it: the whole tensor, or rows `start..start + len` of a
/// tensor that fuses several weights along dimension 0.
#[derive(Debug)]
pub struct ParamSlot {
    pub tensor: Tensor,
    pub rows: Option<(i64, i64)>,
}

impl ParamSlot {
    /// The weight's shape: the rows' shape for a fused slot.
    pub fn shape(&self) -> Vec<i64> {
        let mut shape = self.tensor.size();
        if let Some((_, len)) = self.rows {
            shape[0] = len;
        }
        shape
    }

    /// A view of exactly this weight's elements (writing to it writes the module's tensor).
    pub fn view(&self) -> Tensor {
        match self.rows {
            Some((start, len)) => self.tensor.narrow(0, start, len),
            None => self.tensor.shallow_clone(),
        }
    }
}

/// The registry of one component (a UNet, one text encoder), keyed by tensor name relative
/// to the component's root view. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct ParamRegistry {
    slots: Arc<Mutex<HashMap<String, ParamSlot>>>,
}

impl ParamRegistry {
    pub(super) fn insert(&self, name: String, slot: ParamSlot) {
        self.lock().insert(name, slot);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ParamSlot>> {
        // A panic while holding the lock leaves a map that is still whole: keep using it.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the slot named `name`, if there is one.
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&ParamSlot) -> R) -> Option<R> {
        self.lock().get(name).map(f)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
