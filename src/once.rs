//! Operations on `Autodiff<B>` that are differentiated once, with backward passes written with
//! `B`'s own convolution and pooling kernels on contiguous tensors.
//!
//! burn's generic convolution backward (`conv2d_weight_backward`, the bias gradient, the
//! transposed convolution's weight gradient) swaps batch and channel dimensions with views, and
//! on flex each such view is copied element by element (a strided walk) before the kernel runs.
//! The manual inner gradients (`grad.rs`) build their weight gradient the same way, so on
//! `Autodiff<B>` both their forward and the outer backward through them paid for those copies:
//! about a quarter of a ConvNet meta-step (bench/HISTORY.md, changes 12 and 15). Here the swaps
//! are built one channel at a time (2-d copies that flex tiles) and every backward is a kernel
//! call. Same values; differentiable once, which is all the outer pass needs: with manual inner
//! gradients there is one autodiff level.
//!
//! [`OnceOps`] gathers them for the manual inner gradients; [`conv2d_once`] is also the real
//! minibatch's convolution (`Network::forward_ad`).

use burn_autodiff::{
    checkpoint::{base::Checkpointer, strategy::NoCheckpointing},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
    Autodiff,
};
use burn_tensor::{
    backend::Backend,
    module::max_pool2d_with_indices,
    ops::{FloatTensor, IntTensor},
    DType, Int, Tensor, TensorData, TensorPrimitive,
};

use crate::kernels::{self, ConvShape};
use crate::conv::{stride1, transpose1};

/// Whether `B` is burn-flex, whose convolution, transposed convolution, weight gradient and 2×2
/// pooling [`kernels`] replaces on f32 tensors (bench/HISTORY.md, change 20).
fn on_slices<B: Backend>(t: &Tensor<B, 4>) -> bool {
    #[cfg(any(feature = "flex", target_arch = "wasm32"))]
    let flex = std::any::TypeId::of::<B>() == std::any::TypeId::of::<burn_flex::Flex>();
    #[cfg(not(any(feature = "flex", target_arch = "wasm32")))]
    let flex = false;
    flex && t.dtype() == DType::F32
}

/// `f` of the f32 values of flex tensors, borrowed (copied only where a tensor is strided);
/// only where [`on_slices`] holds.
fn with_values<B: Backend, R, const N: usize>(ts: [Tensor<B, 4>; N], f: impl FnOnce([&[f32]; N]) -> R) -> R {
    #[cfg(any(feature = "flex", target_arch = "wasm32"))]
    {
        use burn_flex::FlexTensor;
        let prims = ts.map(float);
        let flex = prims.each_ref().map(|p| {
            let t = (p as &dyn std::any::Any).downcast_ref::<FlexTensor>().expect("a flex tensor");
            if t.as_slice::<f32>().is_some() { t.clone() } else { t.to_contiguous() }
        });
        f(flex.each_ref().map(|t| t.as_slice::<f32>().expect("contiguous f32")))
    }
    #[cfg(not(any(feature = "flex", target_arch = "wasm32")))]
    {
        let _ = (ts, f);
        unreachable!("kernels on slices run on flex only")
    }
}

fn from_values<B: Backend>(v: Vec<f32>, shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// `[a, b, h, w]` → `[b, a, h, w]`, contiguous, one slice of dimension 1 at a time.
fn swap01<B: Backend>(t: Tensor<B, 4>) -> Tensor<B, 4> {
    let [a, b, h, w] = t.dims();
    if a == 1 || b == 1 {
        return t.reshape([b, a, h, w]);
    }
    let slices = (0..b).map(|i| t.clone().narrow(1, i, 1).reshape([1, a, h, w])).collect();
    Tensor::cat(slices, 0)
}

/// A tensor's primitive, and back.
fn float<B: Backend>(t: Tensor<B, 4>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

fn tensor<B: Backend>(t: FloatTensor<B>) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// The weight gradient of a stride-1 convolution, `[out, c, k, k]`: input `x [n, c, h, w]` and
/// output gradient `dy [n, out, ho, wo]` correlated over the batch.
fn weight_grad<B: Backend>(x: Tensor<B, 4>, dy: Tensor<B, 4>, padding: usize) -> Tensor<B, 4> {
    if on_slices(&x) {
        let ([n, c_in, h, w], [_, c_out, ho, _]) = (x.dims(), dy.dims());
        let s = ConvShape { n, c_in, c_out, h, w, k: h + 2 * padding + 1 - ho, padding };
        let device = x.device();
        let dw = with_values([x, dy], |[x, dy]| kernels::weight_grad(x, dy, s));
        return from_values(dw, [c_out, c_in, s.k, s.k], &device);
    }
    let dw = B::conv2d(float(swap01(x)), float(swap01(dy)), None, stride1(padding));
    swap01(tensor(dw))
}

/// The input gradient of a stride-1 convolution by `w`: the transposed convolution of `dy`.
fn input_grad<B: Backend>(dy: Tensor<B, 4>, w: Tensor<B, 4>, padding: usize) -> Tensor<B, 4> {
    if on_slices(&dy) {
        let ([n, c_out, ho, wo], [_, c_in, k, _]) = (dy.dims(), w.dims());
        let s = ConvShape { n, c_in, c_out, h: ho + k - 1 - 2 * padding, w: wo + k - 1 - 2 * padding, k, padding };
        let device = dy.device();
        let dx = with_values([dy, w], |[dy, w]| kernels::input_grad(dy, w, s));
        return from_values(dx, [n, c_in, s.h, s.w], &device);
    }
    tensor(B::conv_transpose2d(float(dy), float(w), None, transpose1(padding)))
}

fn conv<B: Backend>(x: Tensor<B, 4>, w: Tensor<B, 4>, padding: usize) -> Tensor<B, 4> {
    conv_bias(x, w, None, padding)
}

/// A stride-1 convolution, plus a bias where given.
fn conv_bias<B: Backend>(x: Tensor<B, 4>, w: Tensor<B, 4>, b: Option<Tensor<B, 1>>, padding: usize) -> Tensor<B, 4> {
    if on_slices(&x) {
        let ([n, c_in, h, wd], [c_out, _, k, _]) = (x.dims(), w.dims());
        let s = ConvShape { n, c_in, c_out, h, w: wd, k, padding };
        let (ho, wo) = s.out();
        let device = x.device();
        let y = match b {
            Some(b) => with_values([x, w, b.reshape([c_out, 1, 1, 1])], |[x, w, b]| kernels::conv(x, w, Some(b), s)),
            None => with_values([x, w], |[x, w]| kernels::conv(x, w, None, s)),
        };
        return from_values(y, [n, c_out, ho, wo], &device);
    }
    tensor(B::conv2d(float(x), float(w), b.map(|b| b.into_primitive().tensor()), stride1(padding)))
}

/// The weight gradient of each group of consecutive images, `[groups, out·c·k·k]`: row g sums
/// the own weight gradients of images `bounds[g]..bounds[g + 1]` (see
/// [`kernels::group_weight_grads`]). From `cols`, the input's im2col columns `[n, c·k·k, ho·wo]`,
/// where the forward pass made them; else on flex with the kernel, elsewhere from columns made
/// here. Not tracked.
pub(crate) fn group_weight_grads<B: Backend>(x: Tensor<B, 4>, cols: Option<Tensor<B, 3>>, dy: Tensor<B, 4>, padding: usize, bounds: &[usize]) -> Tensor<B, 2> {
    let ([n, c_in, h, w], [_, c_out, ho, wo]) = (x.dims(), dy.dims());
    let k = h + 2 * padding + 1 - ho;
    let groups = bounds.len() - 1;
    if cols.is_none() && on_slices(&x) {
        let s = ConvShape { n, c_in, c_out, h, w, k, padding };
        let device = x.device();
        let dw = with_values([x, dy], |[x, dy]| kernels::group_weight_grads(x, dy, s, bounds));
        return Tensor::from_data(TensorData::new(dw, [groups, c_out * c_in * k * k]), &device);
    }
    let cols = cols.unwrap_or_else(|| crate::net::im2col(x, k, padding));
    let each = dy.reshape([n, c_out, ho * wo]).matmul(cols.swap_dims(1, 2)).reshape([n, c_out * c_in * k * k]);
    group_sum(each, bounds)
}

/// Rows of `each [n, m]` summed over consecutive groups, `[groups, m]`: row g is the sum of rows
/// `bounds[g]..bounds[g + 1]` (no work when every group is one row).
pub(crate) fn group_sum<B: Backend>(each: Tensor<B, 2>, bounds: &[usize]) -> Tensor<B, 2> {
    let [n, m] = each.dims();
    let groups = bounds.len() - 1;
    if groups == n {
        return each;
    }
    let device = each.device();
    let group = Tensor::<B, 1, Int>::from_data(TensorData::new(group_of(bounds), [n]), &device);
    Tensor::zeros([groups, m], &device).select_assign(0, group, each, burn_tensor::IndexingUpdateOp::Add)
}

/// Each row's group under `bounds` (row i is in group g when `bounds[g] ≤ i < bounds[g + 1]`).
pub(crate) fn group_of(bounds: &[usize]) -> Vec<i64> {
    bounds.windows(2).enumerate().flat_map(|(g, b)| std::iter::repeat_n(g as i64, b[1] - b[0])).collect()
}

/// d bias of a convolution: the output gradient summed over batch and space, without a copy.
pub(crate) fn bias_grad<B: Backend>(dy: Tensor<B, 4>) -> Tensor<B, 1> {
    let out = dy.dims()[1];
    dy.sum_dim(3).sum_dim(2).sum_dim(0).reshape([out])
}

type Ad<B> = Autodiff<B>;

/// Stride-1 convolution with bias and `padding` on every side, differentiable once.
pub fn conv2d_once<B: Backend>(x: Tensor<Ad<B>, 4>, w: Tensor<Ad<B>, 4>, b: Tensor<Ad<B>, 1>, padding: usize) -> Tensor<Ad<B>, 4> {
    let (x, w, b) = (x.into_primitive().tensor(), w.into_primitive().tensor(), b.into_primitive().tensor());
    let bias = Tensor::from_primitive(TensorPrimitive::Float(b.primitive));
    let y = float(conv_bias::<B>(tensor(x.primitive.clone()), tensor(w.primitive.clone()), Some(bias), padding));
    let out = match ConvBackward.prepare::<NoCheckpointing>([x.node.clone(), w.node.clone(), b.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((x.primitive, w.primitive, padding), y),
        OpsKind::UnTracked(prep) => prep.finish(y),
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
        let dy = tensor::<B>(grads.consume::<B>(&ops.node));
        let (x, w, padding) = ops.state;
        if let Some(node) = node_x {
            grads.register::<B>(node.id, float(input_grad(dy.clone(), tensor(w), padding)));
        }
        if let Some(node) = node_w {
            grads.register::<B>(node.id, float(weight_grad(tensor(x), dy.clone(), padding)));
        }
        if let Some(node) = node_b {
            grads.register::<B>(node.id, bias_grad(dy).into_primitive().tensor());
        }
    }
}

/// The backward of a bilinear operation `f(a, b)` given its output gradient `g`: the gradients
/// for `a` and for `b`, each only when asked.
type BilinearBack<B> = fn(Tensor<B, 4>, Tensor<B, 4>, usize, Tensor<B, 4>, [bool; 2]) -> [Option<Tensor<B, 4>>; 2];

#[derive(Debug)]
struct Bilinear<B: Backend>(BilinearBack<B>);

impl<B: Backend> Backward<B, 2> for Bilinear<B> {
    /// Both inputs and the padding.
    type State = (FloatTensor<B>, FloatTensor<B>, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_a, node_b] = ops.parents;
        let g = tensor::<B>(grads.consume::<B>(&ops.node));
        let (a, b, padding) = ops.state;
        let [ga, gb] = (self.0)(tensor(a), tensor(b), padding, g, [node_a.is_some(), node_b.is_some()]);
        for (node, grad) in [(node_a, ga), (node_b, gb)] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<B>(node.id, float(grad));
            }
        }
    }
}

fn bilinear_once<B: Backend>(a: Tensor<Ad<B>, 4>, b: Tensor<Ad<B>, 4>, padding: usize, forward: fn(Tensor<B, 4>, Tensor<B, 4>, usize) -> Tensor<B, 4>, back: BilinearBack<B>) -> Tensor<Ad<B>, 4> {
    let (a, b) = (a.into_primitive().tensor(), b.into_primitive().tensor());
    let value = float(forward(tensor(a.primitive.clone()), tensor(b.primitive.clone()), padding));
    let out = match Bilinear(back).prepare::<NoCheckpointing>([a.node.clone(), b.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish((a.primitive, b.primitive, padding), value),
        OpsKind::UnTracked(prep) => prep.finish(value),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// [`weight_grad`] differentiated once: `<G, weight_grad(x, dy)>` is `<conv(x, G), dy>` and
/// `<x, input_grad(dy, G)>`.
pub fn weight_grad_once<B: Backend>(x: Tensor<Ad<B>, 4>, dy: Tensor<Ad<B>, 4>, padding: usize) -> Tensor<Ad<B>, 4> {
    bilinear_once(x, dy, padding, weight_grad, |x, dy, p, g, [want_x, want_dy]| {
        [want_x.then(|| input_grad(dy, g.clone(), p)), want_dy.then(|| conv(x, g, p))]
    })
}

/// [`input_grad`] differentiated once: `<H, input_grad(dy, w)>` is `<conv(H, w), dy>` and
/// `<w, weight_grad(H, dy)>`.
pub fn input_grad_once<B: Backend>(dy: Tensor<Ad<B>, 4>, w: Tensor<Ad<B>, 4>, padding: usize) -> Tensor<Ad<B>, 4> {
    bilinear_once(dy, w, padding, input_grad, |dy, w, p, h, [want_dy, want_w]| {
        [want_dy.then(|| conv(h.clone(), w, p)), want_w.then(|| weight_grad(h, dy, p))]
    })
}

/// `t · [pre > 0]`: `t` times the ReLU's derivative at `pre`, held constant (the ReLU itself
/// where `t` is `pre`); on flex one pass of [`kernels::masked`], else with burn's 0/1 mask.
pub fn masked<B: Backend>(t: Tensor<B, 4>, pre: Tensor<B, 4>) -> Tensor<B, 4> {
    if on_slices(&t) {
        let (shape, device) = (t.dims(), t.device());
        return from_values(with_values([t, pre], |[t, pre]| kernels::masked(t, pre)), shape, &device);
    }
    t * pre.greater_elem(0.0).float()
}

/// [`masked`] differentiated once in `t` (the gate is a constant): its adjoint is itself.
pub fn masked_once<B: Backend>(t: Tensor<Ad<B>, 4>, pre: Tensor<Ad<B>, 4>) -> Tensor<Ad<B>, 4> {
    let pre = pre.inner();
    if on_slices(&pre) {
        let value = masked(t.clone().inner(), pre.clone());
        return linear_once_valued(t, float(pre), value, |pre, g| masked(g, tensor(pre)));
    }
    // Elsewhere the 0/1 mask is built once and kept for the adjoint.
    let mask = pre.greater_elem(0.0).float();
    let value = t.clone().inner() * mask.clone();
    linear_once_valued(t, float(mask), value, |mask, g| g * tensor(mask))
}

/// 2×2 average pooling (stride 2, floor mode) as burn's kernel, and its adjoint.
fn avg_pool<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    if on_slices(&x) {
        let [n, c, h, w] = x.dims();
        let device = x.device();
        return from_values(with_values([x], |[x]| kernels::avg_pool(x, [n, c, h, w])), [n, c, h / 2, w / 2], &device);
    }
    tensor(B::avg_pool2d(float(x), [2, 2], [2, 2], [0, 0], true, false))
}

fn avg_unpool<B: Backend>(like: FloatTensor<B>, dy: Tensor<B, 4>) -> Tensor<B, 4> {
    if on_slices(&dy) {
        let shape = tensor::<B>(like).dims();
        let device = dy.device();
        return from_values(with_values([dy], |[dy]| kernels::avg_unpool(dy, shape)), shape, &device);
    }
    tensor(B::avg_pool2d_backward(like, float(dy), [2, 2], [2, 2], [0, 0], true, false))
}

/// The adjoint of 2×2 max pooling of a `like`-shaped input that chose `indices` (flat within
/// each plane): `dy` sent to the chosen entries.
fn max_unpool<B: Backend>((like, indices): (FloatTensor<B>, IntTensor<B>), dy: Tensor<B, 4>) -> Tensor<B, 4> {
    tensor(B::max_pool2d_with_indices_backward(like, [2, 2], [2, 2], [0, 0], [1, 1], false, float(dy), indices).x_grad)
}

/// Its adjoint: `g` read at the chosen entries.
fn max_gather<B: Backend>((_, indices): (FloatTensor<B>, IntTensor<B>), g: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = g.dims();
    let indices = Tensor::<B, 4, Int>::from_primitive(indices);
    let [_, _, h2, w2] = indices.dims();
    g.reshape([n, c, h * w]).gather(2, indices.reshape([n, c, h2 * w2])).reshape([n, c, h2, w2])
}

#[derive(Debug)]
struct Linear<B: Backend, S>(fn(S, Tensor<B, 4>) -> Tensor<B, 4>);

impl<B: Backend, S: Clone + Send + std::fmt::Debug + 'static> Backward<B, 1> for Linear<B, S> {
    /// What the map takes besides its input (sizes, indices).
    type State = S;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node] = ops.parents;
        let g = tensor::<B>(grads.consume::<B>(&ops.node));
        if let Some(node) = node {
            grads.register::<B>(node.id, float((self.0)(ops.state, g)));
        }
    }
}

/// A linear map `forward(state, x)` with adjoint `back(state, g)`, differentiated once.
fn linear_once<B: Backend, S: Clone + Send + std::fmt::Debug + 'static>(x: Tensor<Ad<B>, 4>, state: S, forward: fn(S, Tensor<B, 4>) -> Tensor<B, 4>, back: fn(S, Tensor<B, 4>) -> Tensor<B, 4>) -> Tensor<Ad<B>, 4> {
    let value = forward(state.clone(), x.clone().inner());
    linear_once_valued(x, state, value, back)
}

/// [`linear_once`] with the map's value at `x` already computed.
fn linear_once_valued<B: Backend, S: Clone + Send + std::fmt::Debug + 'static>(x: Tensor<Ad<B>, 4>, state: S, value: Tensor<B, 4>, back: fn(S, Tensor<B, 4>) -> Tensor<B, 4>) -> Tensor<Ad<B>, 4> {
    let x = x.into_primitive().tensor();
    let value = float(value);
    let out = match Linear(back).prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => prep.finish(state, value),
        OpsKind::UnTracked(prep) => prep.finish(value),
    };
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// 2×2 average pooling, differentiated once (its adjoint spreads a quarter over each window).
pub fn avg_pool_once<B: Backend>(x: Tensor<Ad<B>, 4>) -> Tensor<Ad<B>, 4> {
    let like = x.clone().inner().into_primitive().tensor();
    linear_once(x, like, |_, x| avg_pool(x), avg_unpool)
}

/// The adjoint of 2×2 average pooling of a `like`-shaped input, applied to `dy`, differentiated
/// once (its own adjoint is the pooling).
pub fn avg_unpool_once<B: Backend>(dy: Tensor<Ad<B>, 4>, like: Tensor<Ad<B>, 4>) -> Tensor<Ad<B>, 4> {
    let like = like.inner().into_primitive().tensor();
    linear_once(dy, like, avg_unpool, |_, g| avg_pool(g))
}

/// 2×2 max pooling with the indices it chose: burn's, on `Autodiff<B>` itself differentiated
/// once with the kernel's backward.
pub fn max_pool_indexed<B: Backend>(x: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4, Int>) {
    if on_slices(&x) {
        let [n, c, h, w] = x.dims();
        let device = x.device();
        let (values, indices) = with_values([x], |[x]| kernels::max_pool(x, [n, c, h, w]));
        let shape = [n, c, h / 2, w / 2];
        // i64, as flex's own pooling returns them and its backward reads them.
        let indices = B::int_from_data(TensorData::new(indices, shape), &device);
        return (from_values(values, shape, &device), Tensor::from_primitive(indices));
    }
    max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], false)
}

/// [`max_pool_indexed`] on `Autodiff<B>` with `B`'s pooling (on flex [`kernels::max_pool`]),
/// differentiated once: its adjoint sends the gradient to the chosen entries.
pub fn max_pool_once<B: Backend>(x: Tensor<Ad<B>, 4>) -> (Tensor<Ad<B>, 4>, Tensor<Ad<B>, 4, Int>) {
    let (value, indices) = max_pool_indexed::<B>(x.clone().inner());
    let state = (float(x.clone().inner()), indices.clone().into_primitive());
    let out = linear_once_valued(x, state, value, max_unpool);
    (out, Tensor::from_primitive(indices.into_primitive()))
}

/// The adjoint of [`max_pool_indexed`] of a `like`-shaped input applied to `dy`, differentiated
/// once. Ties send the gradient to the one entry the pooling chose, the first maximal one in
/// row-major order, as `grad.rs`'s masks do.
pub fn max_unpool_once<B: Backend>(dy: Tensor<Ad<B>, 4>, like: Tensor<Ad<B>, 4>, indices: Tensor<Ad<B>, 4, Int>) -> Tensor<Ad<B>, 4> {
    let like = like.inner().into_primitive().tensor();
    linear_once(dy, (like, indices.into_primitive()), max_unpool, max_gather)
}

type T4<B> = Tensor<B, 4>;
type Indices<B> = Tensor<B, 4, Int>;
type Pooled<B> = (T4<B>, Indices<B>);
/// A stride-1 convolution `(x, w, bias, padding)`.
type ConvFn<B> = fn(T4<B>, T4<B>, Tensor<B, 1>, usize) -> T4<B>;

/// The once-differentiated operations the manual inner gradients use on `Autodiff<B>`.
pub struct OnceOps<B: Backend> {
    /// The convolutions', where they replace burn's (flex with `conv2d` convolutions).
    pub convs: Option<ConvOnce<B>>,
    /// 2×2 average pooling.
    pub avg_pool: fn(T4<B>) -> T4<B>,
    /// Its adjoint: `(dy, input)`.
    pub avg_unpool: fn(T4<B>, T4<B>) -> T4<B>,
    /// 2×2 max pooling and the indices it chose.
    pub max_pool: fn(T4<B>) -> Pooled<B>,
    /// Its adjoint: `(dy, input, indices)`.
    pub max_unpool: fn(T4<B>, T4<B>, Indices<B>) -> T4<B>,
    /// `(t, pre)` → `t · [pre > 0]`: the ReLU (`t` = `pre`) and its derivative's product.
    pub masked: fn(T4<B>, T4<B>) -> T4<B>,
}

/// A convolution and its gradients, differentiated once.
pub struct ConvOnce<B: Backend> {
    /// Convolution with bias.
    pub conv: ConvFn<B>,
    /// The weight gradient from the input and the output gradient.
    pub weight_grad: fn(T4<B>, T4<B>, usize) -> T4<B>,
    /// The input gradient from the output gradient and the weight.
    pub input_grad: fn(T4<B>, T4<B>, usize) -> T4<B>,
}

impl<B: Backend> OnceOps<B> {
    /// The same pooling computed with `B`'s kernels and not tracked: for tensors that are not
    /// differentiated (evaluation's training, whose pooling must pick the entries distillation's
    /// picks), never for an autodiff backend whose gradient is wanted.
    pub fn plain() -> Self {
        fn max_unpool_plain<B: Backend>(dy: T4<B>, like: T4<B>, indices: Indices<B>) -> T4<B> {
            max_unpool((float(like), indices.into_primitive()), dy)
        }
        Self {
            convs: None,
            avg_pool,
            avg_unpool: |dy, like| avg_unpool(float(like), dy),
            max_pool: max_pool_indexed,
            max_unpool: max_unpool_plain,
            masked,
        }
    }
}

impl<B: Backend> OnceOps<B> {
    /// [`OnceOps::plain`] with the convolutions too (on flex [`kernels`]), not tracked: for a
    /// pass that is not differentiated at all (differential privacy's per-patient norms).
    pub fn detached() -> Self {
        fn conv_with_bias<B: Backend>(x: T4<B>, w: T4<B>, b: Tensor<B, 1>, padding: usize) -> T4<B> {
            conv_bias(x, w, Some(b), padding)
        }
        Self { convs: Some(ConvOnce { conv: conv_with_bias::<B>, weight_grad: weight_grad::<B>, input_grad: input_grad::<B> }), ..Self::plain() }
    }
}

impl<B: Backend> OnceOps<Ad<B>> {
    /// The operations of this module on `Autodiff<B>`, with or without the convolutions'.
    pub fn new(convs: bool) -> Self {
        Self {
            convs: convs.then_some(ConvOnce { conv: conv2d_once::<B>, weight_grad: weight_grad_once::<B>, input_grad: input_grad_once::<B> }),
            avg_pool: avg_pool_once::<B>,
            avg_unpool: avg_unpool_once::<B>,
            max_pool: max_pool_once::<B>,
            max_unpool: max_unpool_once::<B>,
            masked: masked_once::<B>,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{normal, rng, Stream};
    use burn_ndarray::NdArray;
    use burn_tensor::{module::{conv2d, conv_transpose2d}, ops::PadMode, TensorData};

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

    /// `ours` and `reference` agree in value and in the gradients of a weighted sum of their
    /// output for both inputs (`None` for both where an input does not take part).
    fn agree(ours: impl Fn(Tensor<A, 4>, Tensor<A, 4>) -> Tensor<A, 4>, reference: impl Fn(Tensor<A, 4>, Tensor<A, 4>) -> Tensor<A, 4>, a: [usize; 4], b: [usize; 4], seed: u64) {
        let (x, y) = (tensor(seed, a).require_grad(), tensor(seed + 1, b).require_grad());
        let (o, r) = (ours(x.clone(), y.clone()), reference(x.clone(), y.clone()));
        assert_eq!(o.dims(), r.dims());
        let weights = tensor::<4>(seed + 2, o.dims());
        let (lo, lr) = ((o * weights.clone()).sum(), (r * weights).sum());
        close(lo.clone().inner(), lr.clone().inner());
        let (g1, g2) = (lo.backward(), lr.backward());
        for t in [x, y] {
            match (t.grad(&g1), t.grad(&g2)) {
                (Some(p), Some(q)) => close(p.reshape([-1]), q.reshape([-1])),
                (p, q) => assert_eq!(p.is_some(), q.is_some()),
            }
        }
    }

    #[test]
    fn convolution_gradients_differentiate_as_burns() {
        for (c, padding, s) in [(1, 2, 9), (3, 0, 8), (2, 1, 7)] {
            let so = s + 2 * padding - 2;
            let swapped = |t: Tensor<A, 4>| t.swap_dims(0, 1);
            agree(
                |x, dy| weight_grad_once(x, dy, padding),
                |x, dy| swapped(conv2d(swapped(x), swapped(dy), None, stride1(padding))),
                [5, c, s, s],
                [5, 4, so, so],
                10 + c as u64,
            );
            agree(
                |dy, w| input_grad_once(dy, w, padding),
                |dy, w| conv_transpose2d(dy, w, None, transpose1(padding)),
                [5, 4, so, so],
                [4, c, 3, 3],
                20 + c as u64,
            );
        }
    }

    #[test]
    fn average_pooling_and_its_adjoint_differentiate_as_the_reshaped_pooling() {
        for s in [8, 7] {
            agree(|x, _| avg_pool_once(x), |x, _| crate::net::avg_pool2(x), [3, 2, s, s], [1, 1, 1, 1], 30 + s as u64);
            let h = s / 2;
            let spread = |dy: Tensor<A, 4>, _| {
                let d = dy.reshape([3, 2, h, 1, h, 1]).expand([3, 2, h, 2, h, 2]).reshape([3, 2, 2 * h, 2 * h]).mul_scalar(0.25);
                d.pad((0, s - 2 * h, 0, s - 2 * h), PadMode::Constant(0.0))
            };
            let like = Tensor::<A, 4>::zeros([3, 2, s, s], &Default::default());
            agree(|dy, _| avg_unpool_once(dy, like.clone()), spread, [3, 2, h, h], [1, 1, 1, 1], 40 + s as u64);
        }
    }

    #[test]
    fn max_pooling_adjoint_differentiates_as_the_masked_spread() {
        for s in [8, 7] {
            let h = s / 2;
            // The windows' masks of `x` (no ties in normal draws), as `grad.rs` builds them.
            let spread = move |dy: Tensor<A, 4>, x: Tensor<A, 4>| {
                let win = crate::net::windows(x.detach());
                let max = win.clone().max_dim(5).max_dim(3).expand([3, 2, h, 2, h, 2]);
                let d = dy.reshape([3, 2, h, 1, h, 1]).expand([3, 2, h, 2, h, 2]) * win.equal(max).float();
                d.reshape([3, 2, 2 * h, 2 * h]).pad((0, s - 2 * h, 0, s - 2 * h), PadMode::Constant(0.0))
            };
            let ours = |dy: Tensor<A, 4>, x: Tensor<A, 4>| {
                let (_, indices) = max_pool_indexed(x.clone().detach());
                max_unpool_once(dy, x.detach(), indices)
            };
            agree(ours, spread, [3, 2, h, h], [3, 2, s, s], 50 + s as u64);
            agree(|x, _| max_pool_indexed(x).0, |x, _| crate::net::windows(x).max_dim(5).max_dim(3).reshape([3, 2, h, h]), [3, 2, s, s], [1, 1, 1, 1], 60 + s as u64);
            agree(|x, _| max_pool_once(x).0, |x, _| crate::net::windows(x).max_dim(5).max_dim(3).reshape([3, 2, h, h]), [3, 2, s, s], [1, 1, 1, 1], 70 + s as u64);
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex_and_ndarray_pooling_choose_the_first_of_tied_entries() {
        fn indices<B: Backend>() -> Vec<i64> {
            let x = Tensor::<B, 4>::full([1, 2, 4, 6], 0.5, &Default::default());
            let (_, i) = max_pool2d_with_indices(x, [2, 2], [2, 2], [0, 0], [1, 1], false);
            i.into_data().convert::<i64>().to_vec::<i64>().unwrap()
        }
        let first = vec![0, 2, 4, 12, 14, 16];
        assert_eq!(indices::<NdArray>(), [first.clone(), first.clone()].concat());
        assert_eq!(indices::<burn_flex::Flex>(), [first.clone(), first].concat());
    }
}
