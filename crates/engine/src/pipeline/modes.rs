//! Speed switches ([`Tuning`]) and the offloaded form of a component ([`OnDemand`]): the
//! memory modes of `imagelab_core::memory` as the loaded pipeline carries them out.

use crate::error::Result;
use serde::Serialize;

/// Speed switches that never change what is computed, only how: each can be turned off to
/// measure what it saves (`imagelab bench --no-fused-qkv`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Tuning {
    /// One GEMM for self-attention's q, k, v (and cross-attention's k, v).
    pub fused_qkv: bool,
    /// NHWC convolutions in the UNet. Only on CUDA (cuDNN's tensor-core layout); off by
    /// default until a GPU measurement shows it pays (GroupNorm may copy back to NCHW).
    pub channels_last: bool,
    /// cuDNN picks the fastest convolution algorithm per shape on first use (the first
    /// step at a new size is slower, every later one faster).
    pub cudnn_benchmark: bool,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            fused_qkv: true,
            channels_last: false,
            cudnn_benchmark: true,
        }
    }
}

/// A component that is either kept on its device, or (offload) built there from the
/// memory-mapped weights each time it is used and freed right after.
pub(super) enum OnDemand<T> {
    Resident(T),
    Rebuilt {
        build: Box<dyn Fn() -> Result<T> + Send>,
        /// Builds since the load's check (for tests: a cache should spare them).
        builds: std::sync::atomic::AtomicU64,
    },
}

impl<T> OnDemand<T> {
    /// Builds once to check the weights now (a bad file fails the load, not a job), then
    /// keeps only the recipe.
    pub fn offloaded(build: Box<dyn Fn() -> Result<T> + Send>) -> Result<OnDemand<T>> {
        drop(build()?);
        Ok(OnDemand::Rebuilt {
            build,
            builds: Default::default(),
        })
    }

    /// How often an offloaded component was built for a use (0 when resident).
    pub fn builds(&self) -> u64 {
        match self {
            OnDemand::Resident(_) => 0,
            OnDemand::Rebuilt { builds, .. } => builds.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    pub fn is_resident(&self) -> bool {
        matches!(self, OnDemand::Resident(_))
    }

    /// Runs `f` on the component, building it first when it is offloaded.
    pub fn with<R>(&self, f: impl FnOnce(&T) -> Result<R>) -> Result<R> {
        match self {
            OnDemand::Resident(component) => f(component),
            OnDemand::Rebuilt { build, builds } => {
                builds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let component = build()?;
                f(&component)
            }
        }
    }
}
