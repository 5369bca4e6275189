//! libtorch's CUDA caching allocator from Rust: its memory statistics, `emptyCache` and
//! peak reset, through the C shim in `csrc/device_memory.cpp`.
//!
//! Why: tch 0.24 binds none of these. Without `empty_cache`, memory freed by dropping
//! tensors stays reserved by the caching allocator (other processes see it as used until
//! this one exits); without the statistics, the only memory figure is NVML's per-process
//! total, which also counts the CUDA context and never shows the peak.
//!
//! The shim uses only the device-generic `c10::DeviceAllocator` interface, so it builds
//! without CUDA headers. Where libtorch's headers were not found at build time it is left
//! out (`cfg(imagelab_no_alloc_shim)`) and every function here reports "unavailable".
//! Without a GPU, or before CUDA has been used in this process, the functions report
//! "unavailable" too: there is no allocator to ask.

/// The CUDA caching allocator's figures for one device, in bytes, all pools together.
/// "Allocated" is what live tensors use; "reserved" is what the allocator holds from the
/// driver (allocated plus cached free blocks). Peaks run since the process started or the
/// last [`reset_peak`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct AllocatorStats {
    pub allocated: u64,
    pub peak_allocated: u64,
    pub reserved: u64,
    pub peak_reserved: u64,
}

#[cfg(not(imagelab_no_alloc_shim))]
mod ffi {
    // Return codes: 0 done, 1 no initialised CUDA allocator, -1 an error (see the C++).
    extern "C" {
        pub fn imagelab_cuda_memory_stats(device: i32, out4: *mut i64) -> i32;
        pub fn imagelab_cuda_empty_cache() -> i32;
        pub fn imagelab_cuda_reset_peak(device: i32) -> i32;
        pub fn imagelab_cuda_mem_info(device: i32, out2: *mut i64) -> i32;
    }
}

/// A device number as the shim takes it; `None` past `i32::MAX` (the shim refuses
/// anything past 127, libtorch's largest device index).
#[cfg(not(imagelab_no_alloc_shim))]
fn device_arg(device: usize) -> Option<i32> {
    i32::try_from(device).ok()
}

/// The allocator's figures for CUDA device `device`; `None` when there is no initialised
/// CUDA allocator (no GPU, CUDA not used yet, or the shim not built) or on an error (such as
/// a device that does not exist).
pub fn allocator_stats(device: usize) -> Option<AllocatorStats> {
    #[cfg(not(imagelab_no_alloc_shim))]
    {
        let device = device_arg(device)?;
        let mut out = [0i64; 4];
        // SAFETY: the shim writes at most four i64 into `out`, which has room for four;
        // it catches every C++ exception, so nothing unwinds into Rust.
        let rc = unsafe { ffi::imagelab_cuda_memory_stats(device, out.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        let bytes = |v: i64| u64::try_from(v).unwrap_or(0);
        Some(AllocatorStats {
            allocated: bytes(out[0]),
            peak_allocated: bytes(out[1]),
            reserved: bytes(out[2]),
            peak_reserved: bytes(out[3]),
        })
    }
    #[cfg(imagelab_no_alloc_shim)]
    {
        let _ = device;
        None
    }
}

/// Hands the allocator's cached free blocks (every device) back to the driver, like
/// `torch.cuda.empty_cache()`. Returns whether it ran: false without an initialised CUDA
/// allocator (nothing to release) or on an error. Memory still used by live tensors stays.
pub fn empty_cache() -> bool {
    #[cfg(not(imagelab_no_alloc_shim))]
    {
        // SAFETY: no arguments; the shim catches every C++ exception.
        unsafe { ffi::imagelab_cuda_empty_cache() == 0 }
    }
    #[cfg(imagelab_no_alloc_shim)]
    {
        false
    }
}

/// Free and total bytes of CUDA device `device` as the driver sees them (other processes'
/// use included), like `torch.cuda.mem_get_info()`. Creates this process's CUDA context
/// on the device first if CUDA has not been used yet. `None` without a GPU or the shim.
pub fn free_and_total(device: usize) -> Option<(u64, u64)> {
    if !tch::Cuda::is_available() || device as i64 >= tch::Cuda::device_count() {
        return None;
    }
    // The allocator answers only once initialised: one tiny allocation does it.
    drop(tch::Tensor::zeros(
        [1],
        (tch::Kind::Float, tch::Device::Cuda(device)),
    ));
    #[cfg(not(imagelab_no_alloc_shim))]
    {
        let device = device_arg(device)?;
        let mut out = [0i64; 2];
        // SAFETY: the shim writes at most two i64 into `out`, which has room for two; it
        // catches every C++ exception.
        let rc = unsafe { ffi::imagelab_cuda_mem_info(device, out.as_mut_ptr()) };
        if rc != 0 {
            return None;
        }
        Some((u64::try_from(out[0]).ok()?, u64::try_from(out[1]).ok()?))
    }
    #[cfg(imagelab_no_alloc_shim)]
    {
        None
    }
}

/// Sets the peak figures of CUDA device `device` to the current ones, so the next
/// [`allocator_stats`] reports the peak of what ran since. Returns whether it ran.
pub fn reset_peak(device: usize) -> bool {
    #[cfg(not(imagelab_no_alloc_shim))]
    {
        let Some(device) = device_arg(device) else {
            return false;
        };
        // SAFETY: plain integer argument; the shim catches every C++ exception.
        unsafe { ffi::imagelab_cuda_reset_peak(device) == 0 }
    }
    #[cfg(imagelab_no_alloc_shim)]
    {
        let _ = device;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Without CUDA every call says "unavailable" and nothing crashes; with CUDA the
    /// figures follow a 64 MiB tensor and `empty_cache` gives its block back.
    #[test]
    fn allocator_figures_follow_cuda_use_or_report_unavailable() {
        if !tch::Cuda::is_available() {
            assert_eq!(allocator_stats(0), None);
            assert!(!empty_cache());
            assert!(!reset_peak(0));
            // A device index libtorch cannot represent is an error, not a crash.
            assert_eq!(allocator_stats(1000), None);
            assert!(!reset_peak(usize::MAX));
            assert_eq!(free_and_total(0), None);
            return;
        }
        let (free, total) = free_and_total(0).expect("free and total memory on CUDA");
        assert!(free > 0 && free <= total, "free {free} of {total}");
        let device = tch::Device::Cuda(0);
        // Use CUDA once so the allocator is initialised, then start from a clean cache.
        let warm = tch::Tensor::zeros([1], (tch::Kind::Float, device));
        drop(warm);
        tch::Cuda::synchronize(0);
        assert!(
            empty_cache(),
            "empty_cache did not run with CUDA in use (shim built: {})",
            !cfg!(imagelab_no_alloc_shim)
        );
        assert!(reset_peak(0));
        let before = allocator_stats(0).expect("allocator statistics with CUDA in use");

        let big = tch::Tensor::zeros([16 * MIB as i64], (tch::Kind::Float, device));
        tch::Cuda::synchronize(0);
        let with = allocator_stats(0).expect("allocator statistics with CUDA in use");
        assert!(
            with.allocated >= before.allocated + 64 * MIB,
            "allocated {} after a 64 MiB tensor (before: {})",
            with.allocated,
            before.allocated
        );
        assert!(with.peak_allocated >= with.allocated);
        assert!(with.reserved >= with.allocated);
        assert!(with.peak_reserved >= with.reserved);

        drop(big);
        tch::Cuda::synchronize(0);
        let cached = allocator_stats(0).expect("allocator statistics with CUDA in use");
        assert!(cached.allocated < with.allocated);
        assert!(
            cached.peak_allocated >= with.allocated,
            "the peak forgot the 64 MiB tensor"
        );
        assert!(empty_cache());
        let emptied = allocator_stats(0).expect("allocator statistics with CUDA in use");
        assert!(
            emptied.reserved < with.reserved,
            "reserved {} after drop + empty_cache (was {})",
            emptied.reserved,
            with.reserved
        );
        assert!(reset_peak(0));
        let reset = allocator_stats(0).expect("allocator statistics with CUDA in use");
        assert!(reset.peak_allocated < with.allocated);
    }
}
