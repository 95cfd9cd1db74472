//! The pieces shared by distillation and evaluation: one inner SGD step's gradients, the
//! replay of a step sequence, and the ordinary training loop a receiver would run (the losses
//! are in `loss`).

use burn_tensor::{
    backend::{AutodiffBackend, Backend},
    Int, Tensor, TensorData,
};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamConfig};
use crate::rng::permutation;

use crate::engine::InnerGrad;
use crate::loss::soft_cross_entropy;
use crate::grad::manual_loss_grads;
use crate::net::{Network, Params};
use crate::once::OnceOps;

/// The inner loss of `net` at `params` on `(x, targets)` and its gradient for every parameter.
/// When the tensors' backend is autodiff, the gradients stay differentiable with respect to
/// `params`, `x` and `targets`: that is the hyper-gradient's second derivative. With
/// [`InnerGrad::Nested`] they are taken with the autodiff backend `AD` one level above the
/// tensors' own; with [`InnerGrad::Manual`] they are written out (`grad.rs`), with `ops` when
/// given ([`Network::once_ops`]), and `AD` is unused.
pub fn loss_grads<AD: AutodiffBackend>(
    net: &Network,
    params: &[Tensor<AD::InnerBackend, 1>],
    x: Tensor<AD::InnerBackend, 4>,
    targets: Tensor<AD::InnerBackend, 2>,
    ops: Option<&OnceOps<AD::InnerBackend>>,
) -> (Tensor<AD::InnerBackend, 1>, Params<AD::InnerBackend>) {
    match net.inner_grad() {
        InnerGrad::Nested => nested_loss_grads::<AD>(net, params, x, targets),
        InnerGrad::Manual => manual_loss_grads(net, params, x, targets, ops),
    }
}

/// [`loss_grads`] by autodiff one level up.
pub fn nested_loss_grads<AD: AutodiffBackend>(
    net: &Network,
    params: &[Tensor<AD::InnerBackend, 1>],
    x: Tensor<AD::InnerBackend, 4>,
    targets: Tensor<AD::InnerBackend, 2>,
) -> (Tensor<AD::InnerBackend, 1>, Params<AD::InnerBackend>) {
    let lifted: Vec<Tensor<AD, 1>> =
        params.iter().map(|p| Tensor::from_inner(p.clone()).require_grad()).collect();
    // The gradient is differentiated again only when the tensors' own backend is autodiff.
    let logits = if <AD::InnerBackend as Backend>::ad_enabled(&x.device()) {
        net.forward_twice(&lifted, Tensor::from_inner(x))
    } else {
        net.forward(&lifted, Tensor::from_inner(x))
    };
    let loss = soft_cross_entropy(logits, Tensor::from_inner(targets));
    let grads = loss.backward();
    let g = lifted
        .iter()
        .zip(params)
        .map(|(p, orig)| p.grad(&grads).unwrap_or_else(|| orig.zeros_like()))
        .collect();
    (loss.inner(), g)
}

/// `params − lr · grads`, parameter by parameter; `lr` is a one-element tensor.
pub fn sgd_update<B: Backend>(params: Params<B>, grads: Params<B>, lr: Tensor<B, 1>) -> Params<B> {
    params.into_iter().zip(grads).map(|(p, g)| p - g * lr.clone()).collect()
}

/// One distilled step: the images `[m, 1, h, w]` and the label targets `[m, classes]` it trains on.
pub type Step<B> = (Tensor<B, 4>, Tensor<B, 2>);

/// Trains `params` by plain SGD on `steps` replayed `epochs` times, step `i` of the unrolled
/// sequence with learning rate `lrs[i]` (`lrs` has `steps × epochs` entries). Not differentiable:
/// its pooling runs as [`OnceOps::plain`].
pub fn replay<B: Backend>(net: &Network, mut params: Params<B>, steps: &[Step<B>], lrs: &Tensor<B, 1>, epochs: usize) -> Params<B> {
    let ops = OnceOps::plain();
    let mut i = 0;
    for _ in 0..epochs {
        for (x, y) in steps {
            let (_, g) = loss_grads::<burn_autodiff::Autodiff<B>>(net, &params, x.clone(), y.clone(), Some(&ops));
            params = sgd_update(params, g, lrs.clone().narrow(0, i, 1));
            i += 1;
        }
    }
    params
}

/// The network's outputs (logits) for each image, evaluated in chunks of 512 images.
pub fn logits<B: Backend>(net: &Network, params: &[Tensor<B, 1>], x: Tensor<B, 4>) -> Tensor<B, 2> {
    let n = x.dims()[0];
    let chunks: Vec<_> = (0..n).step_by(512).map(|s| net.forward(params, x.clone().narrow(0, s, 512.min(n - s)))).collect();
    Tensor::cat(chunks, 0)
}

/// The indices `idx` as a tensor, for `select`.
pub fn indices<B: Backend>(idx: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    Tensor::from_data(TensorData::new(idx.iter().map(|&i| i as i64).collect::<Vec<_>>(), [idx.len()]), device)
}

/// An ordinary training loop, the way a receiver trains a network on images and label rows:
/// Adam (β 0.9 and 0.999, ε 1e-8) at `lr` on the soft cross-entropy against the label rows, in
/// minibatches of `batch` (capped by the images) reshuffled every pass, the rest of a pass
/// that does not fill a minibatch left out, for `epochs` passes; with `augment`, each
/// minibatch transformed image by image ([`crate::augment`]). The archive of a matching run
/// records it (`manifest.json`, `recipe`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// Passes over the images.
    pub epochs: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Images per minibatch (at most all of them).
    pub batch: usize,
    /// Each minibatch is augmented, one transform an image ([`crate::augment::draw`]); archives
    /// written before the setting existed did not augment.
    #[serde(default)]
    pub augment: bool,
}

/// Trains `params` on `(x, targets)` by `recipe`, shuffling with `r`.
pub fn ordinary<B: Backend>(net: &Network, mut params: Params<B>, x: &Tensor<B, 4>, targets: &Tensor<B, 2>, recipe: &Recipe, r: &mut ChaCha8Rng) -> Params<B> {
    let n = x.dims()[0];
    let batch = recipe.batch.min(n);
    let adam = AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    let mut moments: Vec<Adam<B, 1>> = params.iter().map(Adam::new).collect();
    let device = x.device();
    for _ in 0..recipe.epochs {
        let order = permutation(r, n);
        for chunk in order.chunks_exact(batch) {
            let idx = indices::<B>(chunk, &device);
            let (mut xb, yb) = (x.clone().select(0, idx.clone()), targets.clone().select(0, idx));
            if recipe.augment {
                xb = crate::augment::apply(xb, &crate::augment::draw(r, chunk.len(), x.dims()[2]));
            }
            let (_, grads) = loss_grads::<burn_autodiff::Autodiff<B>>(net, &params, xb, yb, Some(&OnceOps::plain()));
            params = params.into_iter().zip(grads).zip(moments.iter_mut()).map(|((p, g), m)| m.step(adam, recipe.lr, p, g)).collect();
        }
    }
    params
}

/// How a set of images trains a fresh network: the learned steps replayed with their learning
/// rates (the unrolled objective's set), or an ordinary loop (a matching set, and any set a
/// receiver trains their own way).
pub enum Program<B: Backend> {
    /// [`replay`] of `steps`, `epochs` times, with `lrs`.
    Replay {
        /// The steps in order.
        steps: Vec<Step<B>>,
        /// One learning rate per replayed step.
        lrs: Tensor<B, 1>,
        /// Replays of the sequence.
        epochs: usize,
    },
    /// [`ordinary`] training on all the images.
    Ordinary {
        /// `[n, 1, h, w]`.
        images: Tensor<B, 4>,
        /// `[n, classes]` label rows.
        targets: Tensor<B, 2>,
        /// The loop.
        recipe: Recipe,
    },
}

impl<B: Backend> Program<B> {
    /// `params` trained by the program (an ordinary loop shuffles with `r`; a replay draws nothing).
    pub fn train(&self, net: &Network, params: Params<B>, r: &mut ChaCha8Rng) -> Params<B> {
        match self {
            Program::Replay { steps, lrs, epochs } => replay(net, params, steps, lrs, *epochs),
            Program::Ordinary { images, targets, recipe } => ordinary(net, params, images, targets, recipe, r),
        }
    }
}
