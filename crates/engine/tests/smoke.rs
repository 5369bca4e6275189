//! Checks that the test binaries link libtorch and can run a tensor op on the CPU.
use tch::Tensor;

#[test]
fn libtorch_runs_on_the_cpu() {
    let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    assert_eq!((&t * 2).sum(tch::Kind::Float).double_value(&[]), 12.0);
}
