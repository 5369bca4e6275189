//! Build script: keeps libtorch_cuda linked (see build-support/link_torch.rs).
include!("../../build-support/link_torch.rs");

fn main() {
    link_torch();
}
