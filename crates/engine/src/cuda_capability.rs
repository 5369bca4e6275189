//! A CUDA device's compute capability, read from the driver, to tell cards with native
//! bf16 (Ampere, compute 8.0, and later) from those without (V100 is 7.0, T4 7.5).
//!
//! Why: T5 and the SDXL VAE overflow in fp16, so under `--dtype fp16` they run in bf16.
//! Cards before Ampere emulate bf16 (slowly, where libtorch allows it at all), so there
//! they take the safeguards instead (see [`crate::pipeline`]'s precision choice). tch 0.24
//! binds no device properties; the driver's `libcuda.so.1`, which every CUDA process has,
//! is opened at run time, so nothing is linked and a machine without it gets `None`.

use std::sync::OnceLock;

/// `CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR` / `_MINOR` (cuda.h).
const CAPABILITY_MAJOR: i32 = 75;
const CAPABILITY_MINOR: i32 = 76;

type CuInit = unsafe extern "C" fn(flags: u32) -> i32;
type CuDeviceGet = unsafe extern "C" fn(device: *mut i32, ordinal: i32) -> i32;
type CuDeviceGetAttribute =
    unsafe extern "C" fn(value: *mut i32, attribute: i32, device: i32) -> i32;

fn driver() -> Option<&'static libloading::Library> {
    static DRIVER: OnceLock<Option<libloading::Library>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            // SAFETY: loading the NVIDIA driver library runs no initialisers beyond its own;
            // libtorch loads the same library in any process that uses CUDA.
            unsafe { libloading::Library::new("libcuda.so.1") }.ok()
        })
        .as_ref()
}

/// The compute capability `(major, minor)` of CUDA device `ordinal` as this process numbers
/// it (after `CUDA_VISIBLE_DEVICES`), or `None` without a driver or such a device.
pub fn compute_capability(ordinal: usize) -> Option<(i32, i32)> {
    let lib = driver()?;
    let ordinal = i32::try_from(ordinal).ok()?;
    // SAFETY: the symbols are the driver API's, with the signatures of cuda.h; each call
    // writes only to the one i32 it is given, and a non-zero result is an error code.
    unsafe {
        let init: libloading::Symbol<CuInit> = lib.get(b"cuInit\0").ok()?;
        let get: libloading::Symbol<CuDeviceGet> = lib.get(b"cuDeviceGet\0").ok()?;
        let attribute: libloading::Symbol<CuDeviceGetAttribute> =
            lib.get(b"cuDeviceGetAttribute\0").ok()?;
        if init(0) != 0 {
            return None;
        }
        let mut device = 0;
        if get(&mut device, ordinal) != 0 {
            return None;
        }
        let read = |which| {
            let mut value = 0;
            (attribute(&mut value, which, device) == 0).then_some(value)
        };
        Some((read(CAPABILITY_MAJOR)?, read(CAPABILITY_MINOR)?))
    }
}

/// Whether `device` runs bf16 natively: the CPU does, a CUDA card from compute 8.0 on. A
/// card whose capability cannot be read is taken to (what every card since 2020 has).
pub fn native_bf16(device: tch::Device) -> bool {
    match device {
        tch::Device::Cuda(i) => compute_capability(i).is_none_or(|(major, _)| major >= 8),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_runs_bf16_and_a_missing_device_has_no_capability() {
        assert!(native_bf16(tch::Device::Cpu));
        assert_eq!(compute_capability(usize::MAX), None);
        if tch::Cuda::device_count() == 0 {
            assert_eq!(compute_capability(0), None, "no CUDA device, no capability");
        }
    }
}
