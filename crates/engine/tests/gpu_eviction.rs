//! On CUDA, evicting a pipeline from the cache hands its memory back to the driver: the
//! caching allocator's reserved bytes (read through the engine's allocator shim) fall by at
//! least the pipeline's weights. A test binary of its own, so no other test allocates on
//! the GPU meanwhile (the allocator's figures are per process). Skips without a GPU.
#![allow(clippy::unwrap_used)]

mod common;

use imagelab_core::{DType, DeviceSpec};
use imagelab_engine::pipeline::{ModelChoice, PipelineCache};

#[test]
fn evicting_a_gpu_pipeline_gives_its_memory_back_to_the_driver() {
    if !tch::Cuda::is_available() {
        eprintln!("skipped: no CUDA device");
        return;
    }
    let choice = ModelChoice::new(
        common::pipeline_model("sd1"),
        DeviceSpec::Cuda(0),
        DType::Fp32,
    );
    let mut cache = PipelineCache::new(1);
    let pipeline = cache.get_or_load(&choice).unwrap();
    let weights: u64 = pipeline.memory_report().iter().map(|c| c.bytes).sum();
    assert!(weights > 0);
    drop(pipeline); // the cache now holds the only reference
    tch::Cuda::synchronize(0);
    let loaded = imagelab_engine::allocator_stats(0).expect("allocator figures on CUDA");
    assert!(
        loaded.allocated >= weights,
        "allocated {} < weights {weights}",
        loaded.allocated
    );

    cache.clear();
    let evicted = imagelab_engine::allocator_stats(0).expect("allocator figures on CUDA");
    assert!(
        evicted.allocated + weights <= loaded.allocated,
        "allocated {} after eviction (loaded: {}, weights {weights})",
        evicted.allocated,
        loaded.allocated
    );
    assert!(
        evicted.reserved + weights <= loaded.reserved,
        "reserved {} after eviction (loaded: {}, weights {weights}): not given back",
        evicted.reserved,
        loaded.reserved
    );
}
