//! Build script: keeps libtorch_cuda linked (see the imagelab-build-torch crate).

fn main() {
    imagelab_build_torch::link_torch();
}
