//! Build script: keeps libtorch_cuda linked (see the imagelab-build-torch crate) and
//! compiles the allocator shim `csrc/device_memory.cpp` (see `src/device_memory.rs`).

fn main() {
    imagelab_build_torch::link_torch();
    build_allocator_shim();
}

/// Compiles the shim against libtorch's headers. Without them the build still succeeds:
/// nothing is compiled and `imagelab_no_alloc_shim` is set, so the Rust side reports the
/// allocator figures as unavailable.
fn build_allocator_shim() {
    const SOURCE: &str = "csrc/device_memory.cpp";
    println!("cargo::rustc-check-cfg=cfg(imagelab_no_alloc_shim)");
    println!("cargo:rerun-if-changed={SOURCE}");
    let include = imagelab_build_torch::libtorch_include_dir()
        .filter(|dir| dir.join("c10/core/CachingDeviceAllocator.h").is_file());
    let Some(include) = include else {
        println!(
            "cargo:warning=libtorch headers with c10/core/CachingDeviceAllocator.h not found; \
             the CUDA allocator shim is left out (no allocator statistics or empty_cache)"
        );
        println!("cargo:rustc-cfg=imagelab_no_alloc_shim");
        return;
    };
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .pic(true)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .define(
            "_GLIBCXX_USE_CXX11_ABI",
            imagelab_build_torch::cxx11_abi().as_str(),
        )
        // libtorch's own headers are not warning-clean (unused parameters).
        .warnings(false)
        .file(SOURCE)
        .compile("imagelab_device_memory");
    // The shim refers to c10 (GetAllocator, DeviceAllocator's typeinfo); torch-sys links
    // it too, but name it after the static shim so the link order is right on its own.
    println!("cargo:rustc-link-lib=dylib=c10");
}
