//! The inner loss's gradient written out layer by layer with plain tensor operations (softmax
//! minus target, matrix products, ReLU and pooling masks, the convolution's transposes), instead
//! of asking autodiff for it. On an autodiff backend the result stays differentiable, so one
//! first-order backward through the unrolled steps gives the exact hyper-gradient, and no
//! autodiff is nested in another.
//!
//! Ties in max pooling send the gradient to the first maximal entry of the window in row-major
//! order, as burn's and PyTorch's pooling kernels and burn's `max_dim` do: on digits and X-rays
//! with flat backgrounds a window of equal positive activations is common, and sending the
//! gradient to all of them would make distillation and evaluation train different networks.

use burn_tensor::{
    activation::softmax,
    backend::Backend,
    module::{conv2d, conv_transpose2d},
    ops::PadMode,
    Int, Tensor, TensorData,
};

use crate::config::NetKind;
use crate::conv::{stride1, transpose1};
use crate::net::{avg_pool2, im2col_conv, uses_im2col, windows, Network, Params};
use crate::once::{bias_grad, group_of, group_sum, group_weight_grads, ConvOnce, OnceOps};
use crate::loss::soft_cross_entropy;

/// What a convolution's backward pass needs from its forward pass.
struct ConvCache<B: Backend> {
    /// The input `[n, c, h, w]` (unpadded).
    x: Tensor<B, 4>,
    /// im2col columns `[n, c·k·k, ho·wo]`, when convolutions run as im2col.
    cols: Option<Tensor<B, 3>>,
    padding: usize,
}

fn conv_forward<B: Backend>(x: Tensor<B, 4>, w: Tensor<B, 4>, b: Tensor<B, 1>, padding: usize, im2col: bool, ops: Option<&ConvOnce<B>>) -> (Tensor<B, 4>, ConvCache<B>) {
    let out = w.dims()[0];
    if !im2col {
        let y = match ops {
            Some(ops) => (ops.conv)(x.clone(), w, b, padding),
            None => conv2d(x.clone(), w, Some(b), stride1(padding)),
        };
        return (y, ConvCache { x, cols: None, padding });
    }
    let (y, cols) = im2col_conv(x.clone(), w, padding);
    (y + b.reshape([1, out, 1, 1]), ConvCache { x, cols: Some(cols), padding })
}

/// Gradients of a stride-1 convolution: (d input when `need_dx`, d weight, d bias).
fn conv_backward<B: Backend>(cache: ConvCache<B>, w: Tensor<B, 4>, dy: Tensor<B, 4>, need_dx: bool, ops: Option<&ConvOnce<B>>) -> (Option<Tensor<B, 4>>, Tensor<B, 4>, Tensor<B, 1>) {
    let [out, inp, k, _] = w.dims();
    let [n, _, ho, wo] = dy.dims();
    let p = cache.padding;
    match cache.cols {
        Some(cols) => {
            let db = bias_grad(dy.clone());
            let dym = dy.clone().reshape([n, out, ho * wo]);
            let dw = dym.matmul(cols.swap_dims(1, 2)).sum_dim(0).reshape([out, inp, k, k]);
            let dx = need_dx.then(|| im2col_input_grad(dy, w, p));
            (dx, dw, db)
        }
        None => match ops {
            Some(ops) => (need_dx.then(|| (ops.input_grad)(dy.clone(), w, p)), (ops.weight_grad)(cache.x, dy.clone(), p), bias_grad(dy)),
            None => direct_conv_grads(cache.x, w, dy, p, need_dx),
        },
    }
}

/// d input of a stride-1 convolution by `w` with `padding`, given the output gradient `dy`: the
/// "full" convolution of `dy` with the kernel flipped and its channel dimensions swapped, as
/// im2col.
fn im2col_input_grad<B: Backend>(dy: Tensor<B, 4>, w: Tensor<B, 4>, padding: usize) -> Tensor<B, 4> {
    let k = w.dims()[2];
    im2col_conv(dy, w.swap_dims(0, 1).flip([2, 3]), k - 1 - padding).0
}

/// Gradients of the stride-1 convolution of `x` by `w` with `padding`, given the output
/// gradient `dy`, with burn's convolutions: (d input when `need_dx`, d weight, d bias).
fn direct_conv_grads<B: Backend>(x: Tensor<B, 4>, w: Tensor<B, 4>, dy: Tensor<B, 4>, padding: usize, need_dx: bool) -> (Option<Tensor<B, 4>>, Tensor<B, 4>, Tensor<B, 1>) {
    let db = bias_grad(dy.clone());
    // d weight: the input and the output gradient correlated over the batch, i.e. a convolution
    // with batch and channel dimensions swapped ([c, n, h, w] by [out, n, ho, wo] is [c, out, k, k]).
    let dw = conv2d(x.swap_dims(0, 1), dy.clone().swap_dims(0, 1), None, stride1(padding)).swap_dims(0, 1);
    // d input: the transposed convolution (stride 1, so exactly the input's size).
    let dx = need_dx.then(|| conv_transpose2d(dy, w, None, transpose1(padding)));
    (dx, dw, db)
}

/// 1 where the pre-activation is positive, else 0: the ReLU's derivative, held constant.
fn relu_mask<B: Backend, const D: usize>(pre: &Tensor<B, D>) -> Tensor<B, D> {
    pre.clone().greater_elem(0.0).float()
}

/// A convolution block's ReLU gate: `t` times the ReLU's derivative at the block's
/// pre-activation, held constant. With `ops`, one `ops.masked` per use (a single pass on flex);
/// without, the 0/1 mask built once and multiplied.
enum Gate<B: Backend> {
    Pre(Tensor<B, 4>),
    Mask(Tensor<B, 4>),
}

impl<B: Backend> Gate<B> {
    fn new(pre: &Tensor<B, 4>, ops: Option<&OnceOps<B>>) -> Self {
        if ops.is_some() { Gate::Pre(pre.clone()) } else { Gate::Mask(relu_mask(pre)) }
    }

    fn apply(&self, t: Tensor<B, 4>, ops: Option<&OnceOps<B>>) -> Tensor<B, 4> {
        match (self, ops) {
            (Gate::Pre(pre), Some(ops)) => (ops.masked)(t, pre.clone()),
            (Gate::Mask(mask), _) => t * mask.clone(),
            (Gate::Pre(_), None) => unreachable!("a pre-activation gate comes with `ops`"),
        }
    }
}

/// Spreads `dy [n, c, h/2, w/2]` over the 2×2 windows of an `[n, c, h, w]` input, times `weight`
/// (`[n, c, h/2, 2, w/2, 2]`), padding back a dropped odd row or column with zeros.
fn unpool<B: Backend>(dy: Tensor<B, 4>, weight: Tensor<B, 6>, h: usize, w: usize) -> Tensor<B, 4> {
    let [n, c, h2, w2] = dy.dims();
    let spread = dy.reshape([n, c, h2, 1, w2, 1]).expand([n, c, h2, 2, w2, 2]) * weight;
    let d = spread.reshape([n, c, 2 * h2, 2 * w2]);
    if 2 * h2 == h && 2 * w2 == w { d } else { d.pad((0, w - 2 * w2, 0, h - 2 * h2), PadMode::Constant(0.0)) }
}

fn max_pool_forward<B: Backend>(x: Tensor<B, 4>, ops: Option<&OnceOps<B>>) -> (Tensor<B, 4>, Pool<B>) {
    if let Some(ops) = ops {
        let (y, indices) = (ops.max_pool)(x.clone());
        return (y, Pool::MaxAt(x, indices));
    }
    let [n, c, h, w] = x.dims();
    let win = windows(x);
    let y = win.clone().max_dim(5).max_dim(3);
    let maximal = win.equal(y.clone().expand([n, c, h / 2, 2, w / 2, 2])).float();
    (y.reshape([n, c, h / 2, w / 2]), Pool::Max(first_of(maximal)))
}

/// Of a window's 0/1 marks `[n, c, h2, 2, w2, 2]`, the first in row-major order.
fn first_of<B: Backend>(marks: Tensor<B, 6>) -> Tensor<B, 6> {
    let at = |r: usize, c: usize| marks.clone().narrow(3, r, 1).narrow(5, c, 1);
    let mut none_before = at(0, 0).ones_like();
    let mut firsts = Vec::with_capacity(4);
    for (r, c) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
        let m = at(r, c);
        firsts.push(m.clone() * none_before.clone());
        none_before = none_before * (m.neg() + 1.0);
    }
    let [k00, k01, k10, k11]: [Tensor<B, 6>; 4] = firsts.try_into().expect("four positions");
    Tensor::cat(vec![Tensor::cat(vec![k00, k01], 5), Tensor::cat(vec![k10, k11], 5)], 3)
}

/// How a block's pooling is undone in the backward pass.
enum Pool<B: Backend> {
    /// Max pooling: the windows' 0/1 weights.
    Max(Tensor<B, 6>),
    /// Max pooling of this input, which chose these indices.
    MaxAt(Tensor<B, 4>, Tensor<B, 4, Int>),
    /// Average pooling of this input.
    Avg(Tensor<B, 4>),
}

/// What the forward pass keeps for the backward pass.
struct Tape<B: Backend> {
    /// Each convolution block's cache, its output's shape and its ReLU gate.
    convs: Vec<(ConvCache<B>, [usize; 4], Gate<B>)>,
    /// Each block's pooling.
    pools: Vec<Pool<B>>,
    /// The input of each dense layer.
    dense_in: Vec<Tensor<B, 2>>,
    /// The pre-activation of each dense layer but the last.
    dense_pre: Vec<Tensor<B, 2>>,
}

/// The network's weights in their layers' shapes.
struct Shaped<'a, B: Backend> {
    net: &'a Network,
    params: &'a [Tensor<B, 1>],
}

impl<B: Backend> Shaped<'_, B> {
    fn conv(&self, i: usize) -> Tensor<B, 4> {
        self.params[i].clone().reshape(<[usize; 4]>::try_from(self.net.params()[i].shape.clone()).expect("conv weight"))
    }

    fn dense(&self, i: usize) -> Tensor<B, 2> {
        self.params[i].clone().reshape(<[usize; 2]>::try_from(self.net.params()[i].shape.clone()).expect("dense weight"))
    }
}

/// The inner loss of `net` at `params` on `(x, targets)` and its gradient for every parameter,
/// in [`Network::params`] order, written out by hand (see the module documentation). With `ops`
/// (on `Autodiff<B>`, see [`OnceOps`]) pooling, and convolutions with their gradients where `ops`
/// has them, run as once-differentiated operations; without, as burn's (differentiable twice).
pub fn manual_loss_grads<B: Backend>(net: &Network, params: &[Tensor<B, 1>], x: Tensor<B, 4>, targets: Tensor<B, 2>, ops: Option<&OnceOps<B>>) -> (Tensor<B, 1>, Params<B>) {
    let w = Shaped { net, params };
    let n = x.dims()[0];
    let (tape, logits) = forward(&w, x, ops, uses_im2col::<B>(net.conv()));
    let loss = soft_cross_entropy(logits.clone(), targets.clone());
    let mass = targets.clone().sum_dim(1);
    let dz = (softmax(logits, 1) * mass - targets).div_scalar(n as f64);
    (loss, backward(&w, tape, dz, ops))
}

/// The forward pass, keeping what the backward needs (the convolutions' im2col columns when
/// `im2col`); returns the logits too.
fn forward<B: Backend>(w: &Shaped<'_, B>, x: Tensor<B, 4>, ops: Option<&OnceOps<B>>, im2col: bool) -> (Tape<B>, Tensor<B, 2>) {
    let (net, params) = (w.net, w.params);
    let conv_ops = ops.and_then(|o| o.convs.as_ref());
    let n = x.dims()[0];
    match net.kind() {
        NetKind::LeNet => {
            let (a1, c1) = conv_forward(x, w.conv(0), params[1].clone(), 2, im2col, conv_ops);
            let m1 = Gate::new(&a1, ops);
            let (p1, w1) = max_pool_forward(m1.apply(a1.clone(), ops), ops);
            let (a2, c2) = conv_forward(p1, w.conv(2), params[3].clone(), 0, im2col, conv_ops);
            let m2 = Gate::new(&a2, ops);
            let (p2, w2) = max_pool_forward(m2.apply(a2.clone(), ops), ops);
            let f = p2.clone().reshape([n as i32, -1]);
            let h1 = f.clone().matmul(w.dense(4)) + params[5].clone().unsqueeze();
            let q1 = h1.clone() * relu_mask(&h1);
            let h2 = q1.clone().matmul(w.dense(6)) + params[7].clone().unsqueeze();
            let q2 = h2.clone() * relu_mask(&h2);
            let z = q2.clone().matmul(w.dense(8)) + params[9].clone().unsqueeze();
            let tape = Tape { convs: vec![(c1, a1.dims(), m1), (c2, a2.dims(), m2)], pools: vec![w1, w2], dense_in: vec![f, q1, q2], dense_pre: vec![h1, h2] };
            (tape, z)
        }
        NetKind::ConvNet => {
            let mut convs = Vec::new();
            let mut pools = Vec::new();
            let mut x = x;
            for d in 0..net.depth() {
                let (a, c) = conv_forward(x, w.conv(2 * d), params[2 * d + 1].clone(), 1, im2col, conv_ops);
                let m = Gate::new(&a, ops);
                let r = m.apply(a.clone(), ops);
                x = match ops {
                    Some(ops) => (ops.avg_pool)(r.clone()),
                    None => avg_pool2(r.clone()),
                };
                convs.push((c, a.dims(), m));
                pools.push(Pool::Avg(r));
            }
            let f = x.reshape([n as i32, -1]);
            let k = 2 * net.depth();
            let z = f.clone().matmul(w.dense(k)) + params[k + 1].clone().unsqueeze();
            (Tape { convs, pools, dense_in: vec![f], dense_pre: vec![] }, z)
        }
    }
}

/// The backward pass from `dz`, d loss / d logits: the gradient of every parameter.
fn backward<B: Backend>(w: &Shaped<'_, B>, tape: Tape<B>, dz: Tensor<B, 2>, ops: Option<&OnceOps<B>>) -> Params<B> {
    let conv_ops = ops.and_then(|o| o.convs.as_ref());
    walk_back(
        w,
        tape,
        dz,
        ops,
        |a, dz| (a.clone().transpose().matmul(dz.clone()).reshape([-1]), dz.clone().sum_dim(0).reshape([-1])),
        |cache, kernel, da, need_dx| {
            let (dx, dw, db) = conv_backward(cache, kernel, da, need_dx, conv_ops);
            (dx, dw.reshape([-1]), db)
        },
    )
}

/// The layers of the backward pass from `dz` (d loss / d logits), last to first: `dense(input,
/// d output)` gives a dense layer's weight and bias gradients, `conv(cache, kernel, d
/// pre-activation, need_dx)` a convolution's input gradient (when asked) and its weight and
/// bias gradients. Returns the gradients in [`Network::params`] order.
fn walk_back<B: Backend, T>(
    w: &Shaped<'_, B>,
    tape: Tape<B>,
    mut dz: Tensor<B, 2>,
    ops: Option<&OnceOps<B>>,
    dense: impl Fn(&Tensor<B, 2>, &Tensor<B, 2>) -> (T, T),
    mut conv: impl FnMut(ConvCache<B>, Tensor<B, 4>, Tensor<B, 4>, bool) -> (Option<Tensor<B, 4>>, T, T),
) -> Vec<T> {
    let n = dz.dims()[0];
    let mut grads: Vec<Option<T>> = (0..w.params.len()).map(|_| None).collect();
    let Tape { convs, pools, dense_in, dense_pre } = tape;

    // Dense layers, last to first.
    let first_dense = 2 * convs.len();
    for layer in (0..dense_in.len()).rev() {
        let wi = first_dense + 2 * layer;
        let (gw, gb) = dense(&dense_in[layer], &dz);
        (grads[wi], grads[wi + 1]) = (Some(gw), Some(gb));
        let dx = dz.matmul(w.dense(wi).transpose());
        dz = if layer > 0 { dx * relu_mask(&dense_pre[layer - 1]) } else { dx };
    }

    // Convolution blocks, last to first; `dz` is now d loss / d flattened features.
    let mut dy = {
        let (_, [_, c, h, w], _) = &convs[convs.len() - 1];
        Some(dz.reshape([n, *c, h / 2, w / 2]))
    };
    for (d, ((cache, [_, _, h, wd], mask), pool)) in convs.into_iter().zip(pools).enumerate().rev() {
        let da = block_grad(dy.take().expect("the gradient of the block's output"), pool, &mask, h, wd, ops);
        let (dx, dw, db) = conv(cache, w.conv(2 * d), da, d > 0);
        (grads[2 * d], grads[2 * d + 1]) = (Some(dw), Some(db));
        dy = dx;
    }
    grads.into_iter().map(|g| g.expect("a gradient for every parameter")).collect()
}

/// d loss / d a convolution block's pre-activation, from the gradient `dy` of its pooled output.
fn block_grad<B: Backend>(dy: Tensor<B, 4>, pool: Pool<B>, mask: &Gate<B>, h: usize, wd: usize, ops: Option<&OnceOps<B>>) -> Tensor<B, 4> {
    let dr = match (pool, ops) {
        (Pool::Max(win), _) => unpool(dy, win, h, wd),
        (Pool::MaxAt(input, indices), Some(ops)) => (ops.max_unpool)(dy, input, indices),
        (Pool::MaxAt(..), None) => unreachable!("indices come from `ops`"),
        (Pool::Avg(input), Some(ops)) => (ops.avg_unpool)(dy, input),
        (Pool::Avg(_), None) => {
            let [bn, c, h2, w2] = dy.dims();
            let quarter = Tensor::<B, 6>::full([bn, c, h2, 2, w2, 2], 0.25, &dy.device());
            unpool(dy, quarter, h, wd)
        }
    };
    mask.apply(dr, ops)
}

/// One network's per-patient gradients on a chunk of whole patients, kept in the form that
/// their norms and their weighted sum need (differential privacy's per-patient clipping,
/// `crate::privacy`). Patient p is images `bounds[p]..bounds[p + 1]` of the chunk, and its
/// gradient g_p is that of its own summed loss Σ_{i∈p} ℓ_i (soft cross-entropy, not averaged).
pub struct PatientGrads<B: Backend> {
    /// Per parameter ([`Network::params`] order): each patient's ‖g_p‖² in it, `[patients]`.
    pub sq_norms: Vec<Tensor<B, 1>>,
    /// Σ ℓ_i over the chunk's images, `[1]`.
    pub loss_sum: Tensor<B, 1>,
    parts: Vec<Part<B>>,
    bounds: Vec<usize>,
}

/// One parameter's per-patient gradients.
enum Part<B: Backend> {
    /// Each patient's gradient, `[patients, numel]` (the convolutions': small).
    Each(Tensor<B, 2>),
    /// A dense layer's weight, whose per-image gradient is the outer product of its input `[n,
    /// in]` and output gradient `[n, out]`: never materialised.
    Dense(Tensor<B, 2>, Tensor<B, 2>),
    /// A dense layer's bias: its output gradient `[n, out]`.
    Bias(Tensor<B, 2>),
}

impl<B: Backend> PatientGrads<B> {
    /// Each patient's squared norm over every parameter, `[patients]`.
    pub fn total_sq_norms(&self) -> Tensor<B, 1> {
        self.sq_norms.iter().cloned().reduce(|a, b| a + b).expect("parameters")
    }

    /// Σ_p w_p g_p, flattened per parameter, for each patient's weight `w [patients]`. A
    /// patient whose gradient has a non-finite entry has a non-finite squared norm, and must
    /// have weight 0 (as [`crate::distill::Distiller::round_weights`] gives it): its entries are
    /// read as 0, so that it adds exactly nothing (0 × NaN would be NaN in the sum).
    pub fn weighted(&self, w: Tensor<B, 1>) -> Vec<Tensor<B, 1>> {
        let patients = self.bounds.len() - 1;
        let n = self.bounds[patients];
        // Each image's weight: its patient's.
        let per_image = if patients == n { w.clone() } else { w.clone().select(0, Tensor::from_data(TensorData::new(group_of(&self.bounds), [n]), &w.device())) };
        let per_image = per_image.reshape([n, 1]);
        self.parts
            .iter()
            .map(|part| match part {
                Part::Each(g) => w.clone().reshape([1, patients]).matmul(finite(g)).reshape([-1]),
                Part::Dense(a, dz) => finite(a).transpose().matmul(finite(dz) * per_image.clone()).reshape([-1]),
                Part::Bias(dz) => (finite(dz) * per_image.clone()).sum_dim(0).reshape([-1]),
            })
            .collect()
    }
}

/// `t` with its non-finite entries read as 0.
fn finite<B: Backend>(t: &Tensor<B, 2>) -> Tensor<B, 2> {
    t.clone().mask_fill(t.clone().is_finite().bool_not(), 0.0)
}

/// [`PatientGrads`] of `net` at `params` on `(x, targets)`, patients given by `bounds` (`0 = b_0
/// < … < b_P = n`). Runs on any backend, detached: convolutions as im2col where the engine
/// chooses it on this backend, else, and pooling, with the backend's own kernels
/// ([`OnceOps::detached`]). The convolutions' per-patient gradients are materialised
/// (`[patients, numel]`, one product per image, [`group_weight_grads`]); a dense layer's squared
/// per-patient norms come from Gram matrices, ‖Σ_{i∈p} a_i δ_iᵀ‖² = Σ_{i,j∈p} (a_i·a_j)(δ_i·δ_j),
/// and its weighted sum is one product `Aᵀ·(w ⊙ Δ)`, so no per-image dense gradient exists.
pub fn patient_grads<B: Backend>(net: &Network, params: &[Tensor<B, 1>], x: Tensor<B, 4>, targets: Tensor<B, 2>, bounds: &[usize]) -> PatientGrads<B> {
    let w = Shaped { net, params };
    let n = x.dims()[0];
    assert!(bounds.first() == Some(&0) && bounds.last() == Some(&n) && bounds.windows(2).all(|b| b[0] < b[1]), "patient bounds {bounds:?} for {n} images");
    let ops = OnceOps::detached();
    let convs = ops.convs.as_ref().expect("detached convolutions");
    let im2col = uses_im2col::<B>(net.conv());
    let (tape, logits) = forward(&w, x, Some(&ops), im2col);
    let loss_sum = soft_cross_entropy(logits.clone(), targets.clone()).mul_scalar(n as f64);
    let mass = targets.clone().sum_dim(1);
    let dz = softmax(logits, 1) * mass - targets;
    let sq = |g: &Tensor<B, 2>| (g.clone() * g.clone()).sum_dim(1).reshape([-1]);
    let grads = walk_back(
        &w,
        tape,
        dz,
        Some(&ops),
        |a, dz| {
            let (weight, bias) = dense_sq_norms(a, dz, bounds);
            ((weight, Part::Dense(a.clone(), dz.clone())), (bias, Part::Bias(dz.clone())))
        },
        |cache, kernel, da, need_dx| {
            let out = kernel.dims()[0];
            let p = cache.padding;
            let gb = group_sum(da.clone().sum_dim(3).sum_dim(2).reshape([n, out]), bounds);
            // With im2col (the engine's choice on this backend), from the forward's columns.
            let dx = need_dx.then(|| if im2col { im2col_input_grad(da.clone(), kernel, p) } else { (convs.input_grad)(da.clone(), kernel, p) });
            let gw = group_weight_grads(cache.x, cache.cols, da, p, bounds);
            (dx, (sq(&gw), Part::Each(gw)), (sq(&gb), Part::Each(gb)))
        },
    );
    let (sq_norms, parts) = grads.into_iter().unzip();
    PatientGrads { sq_norms, loss_sum, parts, bounds: bounds.to_vec() }
}

/// A dense layer's per-patient squared norms (weight, bias) from its input `a [n, in]` and
/// output gradient `dz [n, out]`: Σ_{i,j∈p} (a_i·a_j)(δ_i·δ_j) and Σ_{i,j∈p} δ_i·δ_j, each
/// patient's rows padded with zero rows to the largest patient's size and multiplied as a batch
/// of Gram matrices (with one image per patient, ‖a_i‖²‖δ_i‖² and ‖δ_i‖²).
fn dense_sq_norms<B: Backend>(a: &Tensor<B, 2>, dz: &Tensor<B, 2>, bounds: &[usize]) -> (Tensor<B, 1>, Tensor<B, 1>) {
    let n = a.dims()[0];
    let patients = bounds.len() - 1;
    let rows = |t: &Tensor<B, 2>| (t.clone() * t.clone()).sum_dim(1).reshape([n]);
    if patients == n {
        let d = rows(dz);
        return (rows(a) * d.clone(), d);
    }
    let size = bounds.windows(2).map(|b| b[1] - b[0]).max().unwrap_or(1);
    // Row n of the extended tensors is zeros: the padding.
    let idx: Vec<i64> = bounds.windows(2).flat_map(|b| (b[0]..b[1]).chain(std::iter::repeat_n(n, size - (b[1] - b[0])))).map(|i| i as i64).collect();
    let device = a.device();
    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [patients * size]), &device);
    let gram = |t: &Tensor<B, 2>| {
        let m = t.dims()[1];
        let padded = Tensor::cat(vec![t.clone(), Tensor::zeros([1, m], &device)], 0).select(0, idx.clone()).reshape([patients, size, m]);
        padded.clone().matmul(padded.swap_dims(1, 2))
    };
    let (ga, gd) = (gram(a), gram(dz));
    let total = |t: Tensor<B, 3>| t.sum_dim(2).sum_dim(1).reshape([patients]);
    (total(ga * gd.clone()), total(gd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::{ConvImpl, Engine};
    use crate::rng::{normal, rng, Stream};
    use crate::once::OnceOps;
    use crate::train::nested_loss_grads;
    use burn_autodiff::Autodiff;
    use burn_ndarray::NdArray;
    use burn_tensor::{ElementConversion, TensorData};

    type B = NdArray;

    #[test]
    fn manual_gradients_equal_autodiff() {
        let dev = Default::default();
        // (network, image size, LeNet's width multiplier)
        let cases = [(NetKind::LeNet, 28, 1), (NetKind::LeNet, 13, 1), (NetKind::LeNet, 13, 2), (NetKind::ConvNet, 16, 1), (NetKind::ConvNet, 14, 1)];
        for (net, size, lenet_width) in cases {
            for conv in [ConvImpl::Direct, ConvImpl::Im2col] {
                let cfg = Config { net, image_size: size, convnet_width: 4, convnet_depth: 2, lenet_width, ..Config::default() };
                let network = Network::with_engine(&cfg, 3, Engine { conv, ..Engine::default() }).unwrap();
                let mut r = rng(5, Stream::Training);
                let params = network.init::<B>(&mut r, &dev);
                // Non-zero biases so that every ReLU mask and pooling window is exercised.
                let params: Vec<_> = params.into_iter().map(|p| { let n = p.dims()[0]; p + Tensor::from_data(TensorData::new(normal(&mut r, n, 0.05), [n]), &dev) }).collect();
                let x = Tensor::<B, 4>::from_data(TensorData::new(normal(&mut r, 4 * size * size, 1.0), [4, 1, size, size]), &dev);
                // Raw soft labels whose rows do not sum to one, as learned labels can be.
                let y = Tensor::<B, 2>::from_data(TensorData::new(normal(&mut r, 12, 1.0), [4, 3]), &dev);
                let (l1, g1) = nested_loss_grads::<Autodiff<B>>(&network, &params, x.clone(), y.clone());
                let (l2, g2) = manual_loss_grads(&network, &params, x, y, None);
                let (l1, l2) = (l1.into_scalar(), l2.into_scalar());
                assert!((l1 - l2).abs() <= 1e-5 * l1.abs().max(1.0), "{net:?} {size} {conv:?}: loss {l1} vs {l2}");
                for (k, (a, b)) in g1.into_iter().zip(g2).enumerate() {
                    let scale = a.clone().abs().max().into_scalar().max(1e-6);
                    let diff = (a - b).abs().max().into_scalar();
                    assert!(diff <= 1e-4 * scale, "{net:?} {size} {conv:?}: parameter {k} differs by {diff} (scale {scale})");
                }
            }
        }
    }

    #[test]
    fn pooling_ties_go_to_the_first_entry_in_every_path() {
        // A flat image with positive biases: every first-layer window is a tie of equal positive
        // activations. The masks, burn's kernels (plain and once-differentiated) and burn's
        // `max_dim` under nested autodiff must send the gradient to the same entry.
        let dev = Default::default();
        let cfg = Config { net: NetKind::LeNet, image_size: 12, ..Config::default() };
        let network = Network::with_engine(&cfg, 3, Engine { conv: ConvImpl::Direct, ..Engine::default() }).unwrap();
        let mut r = rng(6, Stream::Training);
        let params: Vec<_> = network.init::<B>(&mut r, &dev).into_iter().map(|p| p + 0.1).collect();
        let x = Tensor::<B, 4>::full([2, 1, 12, 12], 0.5, &dev);
        let y = Tensor::<B, 2>::from_data(TensorData::new(normal(&mut r, 6, 1.0), [2, 3]), &dev);
        let (_, nested) = nested_loss_grads::<Autodiff<B>>(&network, &params, x.clone(), y.clone());
        let (_, masks) = manual_loss_grads(&network, &params, x.clone(), y.clone(), None);
        let (_, plain) = manual_loss_grads(&network, &params, x.clone(), y.clone(), Some(&OnceOps::plain()));
        let lift = |t: &Tensor<B, 1>| Tensor::<Autodiff<B>, 1>::from_inner(t.clone());
        let lifted: Vec<_> = params.iter().map(lift).collect();
        let (_, once) = manual_loss_grads(&network, &lifted, lift(&x.reshape([-1])).reshape([2, 1, 12, 12]), Tensor::from_inner(y), Some(&OnceOps::new(false)));
        for (k, g) in nested.iter().enumerate() {
            let scale = g.clone().abs().max().into_scalar().max(1e-6);
            for (name, other) in [("masks", &masks[k]), ("plain", &plain[k]), ("once", &once[k].clone().inner())] {
                let diff = (g.clone() - other.clone()).abs().max().into_scalar();
                assert!(diff <= 1e-4 * scale, "{name}: parameter {k} differs by {diff} (scale {scale})");
            }
        }
    }

    #[test]
    fn patient_gradients_are_each_patient_s_own_gradient() {
        patient_gradients_on::<B>();
        #[cfg(feature = "flex")]
        patient_gradients_on::<burn_flex::Flex>();
    }

    /// Per-patient gradients without the batch's per-image ones: patient p's squared norm in
    /// each parameter, and the weighted sum Σ_p w_p g_p, must equal what the gradient of p's
    /// images alone, times their number (ℓ summed, not averaged), gives: with patients of
    /// several images (the Gram path) and of one each (the direct path), convolutions as im2col
    /// and not (on flex, its kernels).
    fn patient_gradients_on<B: Backend>() {
        let dev = Default::default();
        let cases = [(NetKind::LeNet, 28, ConvImpl::Im2col), (NetKind::LeNet, 13, ConvImpl::Direct), (NetKind::ConvNet, 16, ConvImpl::Im2col), (NetKind::ConvNet, 16, ConvImpl::Direct)];
        for (net, size, conv) in cases {
            let cfg = Config { net, image_size: size, convnet_width: 4, convnet_depth: 2, ..Config::default() };
            let network = Network::with_engine(&cfg, 3, Engine { conv, ..Engine::default() }).unwrap();
            let mut r = rng(8, Stream::Training);
            let params: Vec<_> = network.init::<B>(&mut r, &dev).into_iter().map(|p| { let n = p.dims()[0]; p + Tensor::from_data(TensorData::new(normal(&mut r, n, 0.05), [n]), &dev) }).collect();
            let n = 6;
            let x = Tensor::<B, 4>::from_data(TensorData::new(normal(&mut r, n * size * size, 1.0), [n, 1, size, size]), &dev);
            let y = crate::loss::one_hot::<B>(&[0, 1, 2, 0, 1, 2], 3, &dev);
            for bounds in [vec![0, 2, 3, 6], vec![0, 1, 2, 3, 4, 5, 6]] {
                let got = patient_grads(&network, &params, x.clone(), y.clone(), &bounds);
                let patients = bounds.len() - 1;
                let weights: Vec<f32> = (0..patients).map(|p| 0.5 + 0.25 * p as f32).collect();
                let weighted = got.weighted(Tensor::from_data(TensorData::new(weights.clone(), [patients]), &dev));
                let mut want_sum: Vec<Option<Tensor<B, 1>>> = vec![None; params.len()];
                let mut want_loss = 0.0;
                for (p, b) in bounds.windows(2).enumerate() {
                    let sel = Tensor::<B, 1, Int>::from_data(TensorData::new((b[0]..b[1]).map(|i| i as i64).collect::<Vec<_>>(), [b[1] - b[0]]), &dev);
                    let (loss, own) = manual_loss_grads(&network, &params, x.clone().select(0, sel.clone()), y.clone().select(0, sel), None);
                    want_loss += loss.into_scalar().elem::<f32>() * (b[1] - b[0]) as f32;
                    for (k, g) in own.into_iter().enumerate() {
                        let g = g * (b[1] - b[0]) as f32;
                        let norm = (g.clone() * g.clone()).sum().into_scalar().elem::<f32>();
                        let have = got.sq_norms[k].clone().narrow(0, p, 1).into_scalar().elem::<f32>();
                        assert!((norm - have).abs() <= 1e-4 * norm.max(1e-6), "{net:?} {size} {bounds:?}: patient {p}, parameter {k}: ‖g‖² {have} vs {norm}");
                        let term = g * weights[p];
                        want_sum[k] = Some(match want_sum[k].take() { Some(s) => s + term, None => term });
                    }
                }
                for (k, (have, want)) in weighted.into_iter().zip(want_sum).enumerate() {
                    let want = want.unwrap();
                    let scale = want.clone().abs().max().into_scalar().elem::<f32>().max(1e-6);
                    let diff = (want - have).abs().max().into_scalar().elem::<f32>();
                    assert!(diff <= 1e-4 * scale, "{net:?} {size} {bounds:?}: weighted sum of parameter {k} differs by {diff} (scale {scale})");
                }
                let loss = got.loss_sum.into_scalar().elem::<f32>();
                assert!((loss - want_loss).abs() <= 1e-4 * want_loss, "{net:?} {size}: loss {loss} vs {want_loss}");
            }
        }
    }
}
