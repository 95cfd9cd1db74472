//! The convolution of the real minibatch's pass, on `Autodiff<B>`, with its own backward.
//!
//! burn's generic weight gradient (`conv2d_weight_backward`) convolves the input and the output
//! gradient with their batch and channel dimensions swapped, and its bias gradient sums the
//! swapped output gradient. On flex each swap is a copy element by element (a 3-d strided
//! walk): a fifth of a LeNet meta-step at batch 1024 (bench/README.md, change 12). Here the
//! gradients are those of the manual inner steps (`grad::direct_conv_grads`) with the swaps
//! built from one channel at a time (each a 2-d strided copy that flex tiles), and the bias
//! gradient a sum over batch and space without any copy. Same values; differentiable once,
//! which is all the real minibatch's pass needs.

use burn_autodiff::{
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
    Autodiff,
};
use burn_tensor::{backend::Backend, ops::FloatTensor, Tensor, TensorPrimitive};

use crate::grad::direct_conv_grads;
use crate::net::stride1;

/// `[a, b, h, w]` → `[b, a, h, w]`, contiguous, one slice of dimension 1 at a time.
pub(crate) fn swap01<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 4> {
    let [a, b, h, w] = t.dims();
    if a == 1 || b == 1 {
        return t.reshape([b, a, h, w]);
    }
    let slices = (0..b).map(|i| t.clone().narrow(1, i, 1).reshape([1, a, h, w])).collect();
    Tensor::cat(slices, 0)
}

/// Stride-1 convolution with bias and `padding` on every side, differentiable once.
pub fn conv2d_once<B: Backend>(x: Tensor<Autodiff<B>, 4>, w: Tensor<Autodiff<B>, 4>, b: Tensor<Autodiff<B>, 1>, padding: usize) -> Tensor<Autodiff<B>, 4> {
    let options = stride1(padding);
    let (x, w, b) = (x.into_primitive().tensor(), w.into_primitive().tensor(), b.into_primitive().tensor());
    let out = match ConvBackward.prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let state = (x.primitive.clone(), w.primitive.clone(), padding);
            prep.finish(state, B::conv2d(x.primitive, w.primitive, Some(b.primitive), options))
        }
        OpsKind::UnTracked(prep) => prep.finish(B::conv2d(x.primitive, w.primitive, Some(b.primitive), options)),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

#[derive(Debug)]
struct ConvBackward;

impl<B: Backend> Backward<B, 3> for ConvBackward {
    /// The input, the weight and the padding.
    type State = (FloatTensor<B>, FloatTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w, node_b] = ops.parents;
        let tensor = |t: FloatTensor<B>| Tensor::<B, 4>::from_primitive(TensorPrimitive::Float(t));
        let dy = tensor(grads.consume::<B>(&ops.node));
        let (x, w, padding) = ops.state;
        let (dx, dw, db) = direct_conv_grads(tensor(x), tensor(w), dy, padding, node_x.is_some(), swap01);
        for (node, g) in [(node_x, dx.map(|t| t.into_primitive().tensor())), (node_w, Some(dw.into_primitive().tensor())), (node_b, Some(db.into_primitive().tensor()))] {
            if let (Some(node), Some(g)) = (node, g) {
                grads.register::<B>(node.id, g);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{normal, rng, Stream};
    use burn_ndarray::NdArray;
    use burn_tensor::{module::conv2d, TensorData};

    type A = Autodiff<NdArray>;

    fn tensor<const D: usize>(seed: u64, shape: [usize; D]) -> Tensor<A, D> {
        let n = shape.iter().product();
        Tensor::from_data(TensorData::new(normal(&mut rng(seed, Stream::Eval), n, 1.0), shape), &Default::default())
    }

    fn close(a: Tensor<NdArray, 1>, b: Tensor<NdArray, 1>) {
        let (a, b) = (a.into_data().to_vec::<f32>().unwrap(), b.into_data().to_vec::<f32>().unwrap());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-5 * scale, "{diff} of {scale}");
    }

    #[test]
    fn swap01_is_swap_dims() {
        let t = tensor(1, [3, 4, 5, 6]).inner();
        assert_eq!(swap01(t.clone()).into_data(), t.clone().swap_dims(0, 1).into_data());
        let one = t.narrow(1, 0, 1);
        assert_eq!(swap01(one.clone()).into_data(), one.swap_dims(0, 1).into_data());
    }

    #[test]
    fn gradients_equal_burns_conv2d() {
        for (c, padding) in [(1, 2), (3, 0), (2, 1)] {
            let (x, w, b) = (tensor(2, [5, c, 9, 9]).require_grad(), tensor(3, [4, c, 3, 3]).require_grad(), tensor(4, [4]).require_grad());
            let weights = tensor::<4>(5, [5, 4, 9 + 2 * padding - 2, 9 + 2 * padding - 2]);
            let ours = (conv2d_once(x.clone(), w.clone(), b.clone(), padding) * weights.clone()).sum();
            let burns = (conv2d(x.clone(), w.clone(), Some(b.clone()), stride1(padding)) * weights).sum();
            close(ours.clone().inner(), burns.clone().inner());
            let (g1, g2) = (ours.backward(), burns.backward());
            close(x.grad(&g1).unwrap().reshape([-1]), x.grad(&g2).unwrap().reshape([-1]));
            close(w.grad(&g1).unwrap().reshape([-1]), w.grad(&g2).unwrap().reshape([-1]));
            close(b.grad(&g1).unwrap(), b.grad(&g2).unwrap());
        }
    }
}
