//! Getting a tensor out of a memory-mapped safetensors file onto its device and precision
//! with as few copies as libtorch allows, and the byte size used for memory accounting.

use crate::error::Result;
use tch::{Device, Kind, Tensor};

/// Copies one tensor's bytes out of the memory map onto `device` in `target` precision,
/// without first building a host copy in the file's precision: the map itself is viewed as
/// a tensor (no copy) and libtorch copies from it straight to the device (CUDA: one
/// host-to-device copy from the page cache, then the cast on the GPU) or casts it into an
/// owned CPU tensor. The view never outlives this call, so the map outlives every read of it.
pub(super) fn copy_out_of_map(
    bytes: &[u8],
    shape: &[i64],
    file_kind: Kind,
    device: Device,
    target: Kind,
) -> Result<Tensor> {
    let aligned = (bytes.as_ptr() as usize).is_multiple_of(file_kind.elt_size_in_bytes());
    if !aligned || bytes.is_empty() {
        // A header whose length is not a multiple of the element size leaves the data
        // unaligned; libtorch's kernels may assume alignment, so copy through safe code.
        let host = Tensor::f_from_data_size(bytes, shape, file_kind)?;
        return Ok(host.f_to_device(device)?.f_to_kind(target)?);
    }
    let strides = contiguous_strides(shape);
    // SAFETY: `bytes` is a live, read-only slice of exactly numel × element size bytes
    // (checked by the caller) that outlives `view`: every use of `view` below returns a new
    // tensor with its own storage (the copy is synchronous), and `view` is dropped before
    // this function returns. Nothing writes through `view`.
    let view =
        unsafe { Tensor::f_from_blob(bytes.as_ptr(), shape, &strides, file_kind, Device::Cpu)? };
    let owned = match device {
        // A CPU target needs its own storage: the map is read-only and is unmapped when
        // the file is dropped, so force a copy even when the kind is unchanged.
        Device::Cpu => view.f_to_dtype(target, false, true)?,
        // Copy in the file's precision (fewest host bytes touched twice), cast on the device.
        _ => view.f_to_device(device)?.f_to_kind(target)?,
    };
    drop(view);
    Ok(owned)
}

/// The bytes a tensor's elements occupy (`numel × element size`).
pub fn tensor_bytes(t: &Tensor) -> u64 {
    t.numel() as u64 * t.kind().elt_size_in_bytes() as u64
}

fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    strides
}
