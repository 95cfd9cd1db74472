//! The options of the convolutions every network and gradient uses: stride 1, no dilation, one
//! group, the same padding on every side. A module of its own so that the networks (`net`), the
//! once-differentiated operations (`once`), the manual gradients (`grad`) and the kernels'
//! tests share them without depending on each other.

use burn_tensor::ops::{ConvOptions, ConvTransposeOptions};

/// Options of a stride-1, undilated, ungrouped convolution with `padding` on every side.
pub fn stride1(padding: usize) -> ConvOptions<2> {
    ConvOptions::new([1, 1], [padding, padding], [1, 1], 1)
}

/// Options of the transposed convolution that undoes [`stride1`]'s (the input gradient): the
/// output is exactly the convolution's input size.
pub fn transpose1(padding: usize) -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([1, 1], [padding, padding], [0, 0], [1, 1], 1)
}
