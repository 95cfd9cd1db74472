//! Functional networks whose weights are plain tensors. [`Network::forward_twice`] is built only
//! from operations that burn can differentiate twice: `conv2d`, matmul plus bias (not the fused
//! `linear`), ReLU, and pooling written as reshape plus max/mean (not `max_pool2d`/`avg_pool2d`).
//! [`Network::forward`] is the same function with the fused pooling operations, differentiable
//! once and faster on a large batch (bench/HISTORY.md, change 9).

use burn_autodiff::Autodiff;
use burn_tensor::{activation::relu, backend::Backend, module::{avg_pool2d, conv2d, max_pool2d}, ops::PadMode, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConvNorm, NetKind};
use crate::engine::{ConvImpl, Engine, InnerGrad, OnceImpl};
use crate::conv::stride1;
use crate::error::{Error, Result};
use crate::once::{avg_pool_once, conv2d_once, masked_once, max_pool_once, OnceOps};
use crate::rng::normal;

/// The weights of a network: one flat tensor per parameter, in [`Network::params`] order.
pub type Params<B> = Vec<Tensor<B, 1>>;

/// One parameter: its shape and Xavier fans (zero fans mean a bias, initialised to zero).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParamSpec {
    /// Name, e.g. `conv1.weight`.
    pub name: String,
    /// Shape: `[out, in, k, k]` for convolutions, `[in, out]` for dense layers, `[n]` for biases.
    pub shape: Vec<usize>,
    fan_in: usize,
    fan_out: usize,
}

impl ParamSpec {
    fn conv(name: &str, out: usize, inp: usize, k: usize) -> [Self; 2] {
        [
            Self { name: format!("{name}.weight"), shape: vec![out, inp, k, k], fan_in: inp * k * k, fan_out: out * k * k },
            Self { name: format!("{name}.bias"), shape: vec![out], fan_in: 0, fan_out: 0 },
        ]
    }

    fn dense(name: &str, inp: usize, out: usize) -> [Self; 2] {
        [
            Self { name: format!("{name}.weight"), shape: vec![inp, out], fan_in: inp, fan_out: out },
            Self { name: format!("{name}.bias"), shape: vec![out], fan_in: 0, fan_out: 0 },
        ]
    }

    /// Number of values.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A network architecture for one image size and class count.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    kind: NetKind,
    engine: Engine,
    image_size: usize,
    classes: usize,
    width: usize,
    depth: usize,
    /// Instance norm after each ConvNet convolution ([`ConvNorm::Instance`]).
    norm: bool,
    params: Vec<ParamSpec>,
}

impl Network {
    /// The network of `config` for `classes` classes, computed the engine's default way; fails
    /// when the image is too small for it.
    pub fn new(config: &Config, classes: usize) -> Result<Self> {
        Self::with_engine(config, classes, Engine::default())
    }

    /// [`Network::new`], computed as `engine` says.
    pub fn with_engine(config: &Config, classes: usize, engine: Engine) -> Result<Self> {
        let s = config.image_size;
        let (width, depth) = (config.convnet_width, config.convnet_depth);
        let params = match config.net {
            NetKind::LeNet => {
                // conv1 (5×5, padding 2) keeps s, pooling halves it, conv2 (5×5) takes 4 off.
                let after = (s / 2).checked_sub(4).map(|v| v / 2).unwrap_or(0);
                if after == 0 {
                    return Err(Error::Config(format!(
                        "image_size {s} is too small for LeNet (needs at least 12)"
                    )));
                }
                let m = config.lenet_width;
                [
                    ParamSpec::conv("conv1", 6 * m, 1, 5),
                    ParamSpec::conv("conv2", 16 * m, 6 * m, 5),
                    ParamSpec::dense("fc1", 16 * m * after * after, 120 * m),
                    ParamSpec::dense("fc2", 120 * m, 84 * m),
                    ParamSpec::dense("fc3", 84 * m, classes),
                ]
                .concat()
            }
            NetKind::ConvNet => {
                let after = s >> depth;
                if after == 0 {
                    return Err(Error::Config(format!(
                        "image_size {s} is too small for a ConvNet of depth {depth}"
                    )));
                }
                let mut p = Vec::new();
                for d in 0..depth {
                    p.extend(ParamSpec::conv(&format!("conv{}", d + 1), width, if d == 0 { 1 } else { width }, 3));
                }
                p.extend(ParamSpec::dense("fc", width * after * after, classes));
                p
            }
        };
        let norm = config.net == NetKind::ConvNet && config.convnet_norm == ConvNorm::Instance;
        Ok(Self { kind: config.net, engine, image_size: s, classes, width, depth, norm, params })
    }

    /// The parameters, in order.
    pub fn params(&self) -> &[ParamSpec] {
        &self.params
    }

    /// The number of weights, over all parameters.
    pub fn weights(&self) -> usize {
        self.params.iter().map(|p| p.numel()).sum()
    }

    /// The architecture.
    pub fn kind(&self) -> NetKind {
        self.kind
    }

    /// ConvNet blocks.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// How convolutions are computed.
    pub fn conv(&self) -> ConvImpl {
        self.engine.conv
    }

    /// How inner gradients are computed: by autodiff for a network with instance norm, whose
    /// gradients `grad.rs` does not write out.
    pub fn inner_grad(&self) -> InnerGrad {
        if self.norm { InnerGrad::Nested } else { self.engine.inner_grad }
    }

    /// Whether each ConvNet convolution is followed by instance norm.
    pub fn has_norm(&self) -> bool {
        self.norm
    }

    /// Number of output classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Fresh weights: Xavier-normal (gain 1) weights and zero biases, drawn from `rng`.
    pub fn init<B: Backend>(&self, rng: &mut ChaCha8Rng, device: &B::Device) -> Params<B> {
        self.params
            .iter()
            .map(|p| {
                let n = p.numel();
                let values = if p.fan_in == 0 {
                    vec![0.0; n]
                } else {
                    normal(rng, n, (2.0 / (p.fan_in + p.fan_out) as f64).sqrt())
                };
                Tensor::from_data(TensorData::new(values, [n]), device)
            })
            .collect()
    }

    /// Logits `[n, classes]` of images `[n, 1, size, size]`; differentiable once.
    pub fn forward<B: Backend>(&self, params: &[Tensor<B, 1>], x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_with(params, x, Pooling::Fused, None)
    }

    /// [`Network::forward`] on autodiff tensors: the real minibatch's pass. Where `once_ops` gives
    /// the convolutions to [`OnceOps`] (by default on burn-flex with `conv2d`), they take
    /// [`conv2d_once`]'s backward, and pooling [`avg_pool_once`]'s and [`max_pool_once`]'s (other
    /// backends have their own weight gradient kernels, or run convolutions as im2col).
    pub fn forward_ad<B: Backend>(&self, params: &[Tensor<Autodiff<B>, 1>], x: Tensor<Autodiff<B>, 4>) -> Tensor<Autodiff<B>, 2> {
        let custom = Custom { conv: &conv2d_once::<B>, avg: avg_pool_once::<B>, max: |x| max_pool_once::<B>(x).0, relu: |a| masked_once::<B>(a.clone(), a) };
        self.forward_with(params, x, Pooling::Fused, self.owns_conv::<B>().then_some(&custom))
    }

    /// The once-differentiated operations ([`OnceOps`]) for manual inner gradients on
    /// `Autodiff<B>`, as the setting `once_ops` picks them ([`OnceImpl::Auto`]: pooling on the
    /// CPU backends, convolutions too on flex with `conv2d` convolutions; burn's on the GPU).
    pub fn once_ops<B: Backend>(&self) -> Option<OnceOps<Autodiff<B>>> {
        let cpu = is_flex::<B>() || is_ndarray::<B>();
        let pooling = match self.engine.once_ops {
            OnceImpl::Auto => cpu,
            OnceImpl::Off => false,
            OnceImpl::Pooling | OnceImpl::All => true,
        };
        pooling.then(|| OnceOps::new(self.owns_conv::<B>()))
    }

    /// Whether convolutions take [`conv2d_once`] and its relatives.
    fn owns_conv<B: Backend>(&self) -> bool {
        let wanted = match self.engine.once_ops {
            OnceImpl::Auto => is_flex::<B>(),
            OnceImpl::Off | OnceImpl::Pooling => false,
            OnceImpl::All => true,
        };
        wanted && !uses_im2col::<B>(self.engine.conv)
    }

    /// [`Network::forward`] built from operations that burn differentiates twice (an inner
    /// gradient that is itself differentiated).
    pub fn forward_twice<B: Backend>(&self, params: &[Tensor<B, 1>], x: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_with(params, x, Pooling::Reshape, None)
    }

    fn forward_with<B: Backend>(&self, params: &[Tensor<B, 1>], x: Tensor<B, 4>, pooling: Pooling, custom: Option<&Custom<'_, B>>) -> Tensor<B, 2> {
        let mut p = params.iter().zip(&self.params).map(|(t, spec)| (t.clone(), spec));
        let mut next = || p.next().expect("a tensor for every parameter");
        let im2col = uses_im2col::<B>(self.engine.conv);
        let conv = |x, w, b: Param<'_, B>, padding| match custom {
            Some(c) => (c.conv)(x, reshape(w), b.0, padding),
            None if im2col => conv_im2col(x, w, b, padding),
            None => conv(x, w, b, padding),
        };
        let avg = |x| match custom {
            Some(c) => (c.avg)(x),
            None => pooling.avg(x),
        };
        let max = |x| match custom {
            Some(c) => (c.max)(x),
            None => pooling.max(x),
        };
        let relu4 = |x| match custom {
            Some(c) => (c.relu)(x),
            None => relu(x),
        };
        match self.kind {
            NetKind::LeNet => {
                let x = max(relu4(conv(x, next(), next(), 2)));
                let x = max(relu4(conv(x, next(), next(), 0)));
                let x = flatten(x);
                let x = relu(dense(x, next(), next()));
                let x = relu(dense(x, next(), next()));
                dense(x, next(), next())
            }
            NetKind::ConvNet => {
                let mut x = x;
                for _ in 0..self.depth {
                    let y = conv(x, next(), next(), 1);
                    x = avg(relu4(if self.norm { instance_norm(y) } else { y }));
                }
                debug_assert_eq!(x.dims()[1], self.width);
                debug_assert_eq!(x.dims()[2], self.image_size >> self.depth);
                dense(flatten(x), next(), next())
            }
        }
    }
}

/// Each image's channels normalised over their pixels (mean 0, variance 1, ε 1e-5; no learned
/// scale): the norm of matching's embedder and of the ConvNet with [`ConvNorm::Instance`].
pub fn instance_norm<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let flat = x.reshape([n, c, h * w]);
    let centred = flat.clone() - flat.mean_dim(2);
    let var = centred.clone().powi_scalar(2).mean_dim(2);
    (centred / (var + 1e-5).sqrt()).reshape([n, c, h, w])
}

/// Whether convolutions on backend `B` run as im2col under the setting `conv`.
pub fn uses_im2col<B: Backend>(conv: ConvImpl) -> bool {
    match conv {
        ConvImpl::Direct => false,
        ConvImpl::Im2col => true,
        ConvImpl::Auto => is_ndarray::<B>(),
    }
}

/// Whether `B` is `T`, or `T` under one or two Autodiff layers (the engine nests at most two).
fn is_backend<B: Backend, T: Backend>() -> bool {
    use std::any::TypeId;
    let b = TypeId::of::<B>();
    b == TypeId::of::<T>() || b == TypeId::of::<Autodiff<T>>() || b == TypeId::of::<Autodiff<Autodiff<T>>>()
}

/// Whether `B`'s base backend is burn-flex, by type.
fn is_flex<B: Backend>() -> bool {
    #[cfg(any(feature = "flex", target_arch = "wasm32"))]
    return is_backend::<B, burn_flex::Flex>();
    #[cfg(not(any(feature = "flex", target_arch = "wasm32")))]
    false
}

/// Whether `B`'s base backend is burn-ndarray (in f32 or f64), by type.
fn is_ndarray<B: Backend>() -> bool {
    use burn_ndarray::NdArray;
    is_backend::<B, NdArray<f32>>() || is_backend::<B, NdArray<f64>>()
}

type Param<'a, B> = (Tensor<B, 1>, &'a ParamSpec);

/// A stride-1 convolution of an input, a weight and a bias with the given padding.
type CustomConv<B> = dyn Fn(Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 1>, usize) -> Tensor<B, 4>;

/// The convolution and 2×2 pooling of the real minibatch's pass where they are
/// [`OnceOps`]' (their backward passes run `crate::kernels` on flex).
struct Custom<'a, B: Backend> {
    conv: &'a CustomConv<B>,
    avg: fn(Tensor<B, 4>) -> Tensor<B, 4>,
    max: fn(Tensor<B, 4>) -> Tensor<B, 4>,
    /// The convolutions' ReLU.
    relu: fn(Tensor<B, 4>) -> Tensor<B, 4>,
}

fn reshape<B: Backend, const D: usize>((t, spec): Param<'_, B>) -> Tensor<B, D> {
    let shape: [usize; D] = spec.shape.clone().try_into().expect("parameter rank");
    t.reshape(shape)
}

fn conv<B: Backend>(x: Tensor<B, 4>, w: Param<'_, B>, b: Param<'_, B>, padding: usize) -> Tensor<B, 4> {
    // The bias inside the convolution: a broadcast add of it is several times slower on flex.
    conv2d(x, reshape(w), Some(b.0), stride1(padding))
}

/// The same convolution as [`conv`] (stride 1, square kernel) as one matrix product.
fn conv_im2col<B: Backend>(x: Tensor<B, 4>, w: Param<'_, B>, b: Param<'_, B>, padding: usize) -> Tensor<B, 4> {
    let w: Tensor<B, 4> = reshape(w);
    let out = w.dims()[0];
    im2col_conv(x, w, padding).0 + b.0.reshape([1, out, 1, 1])
}

/// A stride-1 convolution without bias as one matrix product over the `k × k` shifted views of
/// the padded input; returns the output and the columns `[n, c·k·k, ho·wo]`, rows ordered like
/// the weight's `[c, k, k]`.
pub(crate) fn im2col_conv<B: Backend>(x: Tensor<B, 4>, w: Tensor<B, 4>, padding: usize) -> (Tensor<B, 4>, Tensor<B, 3>) {
    let [out, inp, k, _] = w.dims();
    let [n, _, h, wd] = x.dims();
    let (ho, wo) = (h + 2 * padding + 1 - k, wd + 2 * padding + 1 - k);
    let cols = im2col(x, k, padding);
    let y = w.reshape([1, out, inp * k * k]).matmul(cols.clone()).reshape([n, out, ho, wo]);
    (y, cols)
}

/// The im2col columns `[n, c·k·k, ho·wo]` of `x [n, c, h, w]` for a stride-1 `k × k` kernel with
/// `padding`: shifted slices stacked.
pub(crate) fn im2col<B: Backend>(x: Tensor<B, 4>, k: usize, padding: usize) -> Tensor<B, 3> {
    let x = if padding > 0 { x.pad((padding, padding, padding, padding), PadMode::Constant(0.0)) } else { x };
    let [n, c, h, wd] = x.dims();
    let (ho, wo) = (h + 1 - k, wd + 1 - k);
    let shifted: Vec<Tensor<B, 4>> = (0..k * k).map(|s| x.clone().slice([0..n, 0..c, s / k..s / k + ho, s % k..s % k + wo])).collect();
    Tensor::stack::<5>(shifted, 2).reshape([n, c * k * k, ho * wo])
}

fn dense<B: Backend>(x: Tensor<B, 2>, w: Param<'_, B>, b: Param<'_, B>) -> Tensor<B, 2> {
    let w: Tensor<B, 2> = reshape(w);
    let out = w.dims()[1];
    x.matmul(w) + b.0.reshape([1, out])
}

fn flatten<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 2> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c * h * w])
}

/// `[n, c, h, w]` → `[n, c, h/2, 2, w/2, 2]`, dropping an odd last row or column (floor mode).
pub(crate) fn windows<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 6> {
    let [n, c, h, w] = x.dims();
    let (h2, w2) = (h / 2, w / 2);
    let x = if h % 2 == 1 || w % 2 == 1 { x.slice([0..n, 0..c, 0..2 * h2, 0..2 * w2]) } else { x };
    x.reshape([n, c, h2, 2, w2, 2])
}

/// How 2×2 pooling (stride 2, floor mode) is computed.
#[derive(Clone, Copy)]
enum Pooling {
    /// burn's `max_pool2d`/`avg_pool2d`: differentiable once.
    Fused,
    /// Reshape plus max/mean: differentiable twice.
    Reshape,
}

impl Pooling {
    fn max<B: Backend>(self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Fused => max_pool2d(x, [2, 2], [2, 2], [0, 0], [1, 1], false),
            Self::Reshape => max_pool2(x),
        }
    }

    fn avg<B: Backend>(self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        match self {
            Self::Fused => avg_pool2d(x, [2, 2], [2, 2], [0, 0], true, false),
            Self::Reshape => avg_pool2(x),
        }
    }
}

fn max_pool2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    windows(x).max_dim(5).max_dim(3).reshape([n, c, h / 2, w / 2])
}

pub(crate) fn avg_pool2<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    windows(x).mean_dim(5).mean_dim(3).reshape([n, c, h / 2, w / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{rng, Stream};
    use burn_ndarray::NdArray;

    type B = NdArray;

    #[test]
    fn shapes_follow_the_image_size() {
        for (net, size) in [(NetKind::LeNet, 28), (NetKind::LeNet, 32), (NetKind::LeNet, 13), (NetKind::ConvNet, 28), (NetKind::ConvNet, 64)] {
            let cfg = Config { net, image_size: size, ..Config::default() };
            let network = Network::new(&cfg, 3).unwrap();
            let params = network.init::<B>(&mut rng(0, Stream::Training), &Default::default());
            let x = Tensor::<B, 4>::zeros([2, 1, size, size], &Default::default());
            assert_eq!(network.forward(&params, x).dims(), [2, 3], "{net:?} {size}");
        }
        let small = Config { image_size: 11, ..Config::default() };
        assert!(Network::new(&small, 2).unwrap_err().to_string().contains("too small for LeNet"));
    }

    #[test]
    fn instance_norm_makes_the_convnet_blind_to_each_images_contrast() {
        let dev = Default::default();
        let mut r = rng(5, Stream::Training);
        let x = Tensor::<B, 4>::from_data(TensorData::new(normal(&mut r, 2 * 16 * 16, 1.0), [2, 1, 16, 16]), &dev);
        // Image 0 × 3, image 1 × 0.5: each convolution's output (zero padding included) moves
        // by an affine map per channel, which the norm takes out; the plain ConvNet sees it.
        let moved = x.clone() * Tensor::<B, 1>::from_floats([3.0, 0.5], &dev).reshape([2, 1, 1, 1]);
        for (norm, blind) in [(ConvNorm::Instance, true), (ConvNorm::None, false)] {
            let cfg = Config { net: NetKind::ConvNet, image_size: 16, convnet_width: 4, convnet_depth: 2, convnet_norm: norm, ..Config::default() };
            let net = Network::new(&cfg, 3).unwrap();
            assert_eq!(net.has_norm(), blind);
            let params = net.init::<B>(&mut rng(0, Stream::Training), &dev);
            let gap: f32 = (net.forward(&params, x.clone()) - net.forward(&params, moved.clone())).abs().max().into_scalar();
            assert_eq!(gap < 1e-3, blind, "{norm:?}: the logits moved by {gap}");
        }
    }

    #[test]
    fn lenet_width_multiplies_channels_and_hidden_units() {
        let wide = Network::new(&Config { lenet_width: 2, ..Config::default() }, 10).unwrap();
        let shapes: Vec<Vec<usize>> = wide.params().iter().filter(|p| p.shape.len() > 1).map(|p| p.shape.clone()).collect();
        assert_eq!(shapes, vec![vec![12, 1, 5, 5], vec![32, 12, 5, 5], vec![32 * 5 * 5, 240], vec![240, 168], vec![168, 10]]);
        let params = wide.init::<B>(&mut rng(0, Stream::Training), &Default::default());
        let x = Tensor::<B, 4>::zeros([2, 1, 28, 28], &Default::default());
        assert_eq!(wide.forward(&params, x).dims(), [2, 10]);
    }

    #[test]
    fn xavier_init_has_the_right_scale_and_zero_bias() {
        let network = Network::new(&Config::default(), 10).unwrap();
        let params = network.init::<B>(&mut rng(0, Stream::Training), &Default::default());
        let fc1 = params[4].to_data().to_vec::<f32>().unwrap();
        let std = (fc1.iter().map(|v| v * v).sum::<f32>() / fc1.len() as f32).sqrt();
        let want = (2.0f32 / (400.0 + 120.0)).sqrt();
        assert!((std / want - 1.0).abs() < 0.05, "{std} vs {want}");
        assert!(params[1].to_data().to_vec::<f32>().unwrap().iter().all(|&b| b == 0.0));
    }

    #[test]
    fn auto_picks_im2col_on_ndarray_only() {
        use burn_autodiff::Autodiff;
        assert!(uses_im2col::<B>(ConvImpl::Auto));
        assert!(uses_im2col::<Autodiff<Autodiff<B>>>(ConvImpl::Auto));
        assert!(!uses_im2col::<Autodiff<B>>(ConvImpl::Direct));
        assert!(uses_im2col::<Autodiff<NdArray<f64>>>(ConvImpl::Auto));
        #[cfg(feature = "flex")]
        assert!(!uses_im2col::<Autodiff<burn_flex::Flex>>(ConvImpl::Auto));
    }

    #[test]
    fn the_base_backend_is_told_by_type_under_autodiff_layers() {
        use burn_autodiff::Autodiff;
        assert!(is_ndarray::<NdArray<f64>>() && is_ndarray::<Autodiff<Autodiff<NdArray<f32>>>>());
        assert!(!is_flex::<Autodiff<NdArray>>());
        #[cfg(feature = "flex")]
        {
            use burn_flex::Flex;
            assert!(is_flex::<Flex>() && is_flex::<Autodiff<Flex>>() && is_flex::<Autodiff<Autodiff<Flex>>>());
            assert!(!is_ndarray::<Autodiff<Flex>>());
        }
        // The settings that follow from it: pooling and convolutions once-differentiated on flex,
        // pooling only on ndarray.
        let net = Network::new(&Config::default(), 2).unwrap();
        assert!(net.once_ops::<NdArray>().is_some() && !net.owns_conv::<NdArray>());
        #[cfg(feature = "flex")]
        assert!(net.once_ops::<burn_flex::Flex>().is_some() && net.owns_conv::<burn_flex::Flex>());
    }

    #[test]
    fn im2col_convolution_equals_conv2d() {
        let dev = Default::default();
        let mut r = rng(3, Stream::Training);
        for (c, o, k, pad, s) in [(1, 6, 5, 2, 28), (6, 16, 5, 0, 14), (32, 32, 3, 1, 7)] {
            let x = Tensor::<B, 4>::from_data(TensorData::new(normal(&mut r, 2 * c * s * s, 1.0), [2, c, s, s]), &dev);
            let spec = ParamSpec::conv("c", o, c, k);
            let w = Tensor::<B, 1>::from_data(TensorData::new(normal(&mut r, o * c * k * k, 1.0), [o * c * k * k]), &dev);
            let bias = Tensor::<B, 1>::from_data(TensorData::new(normal(&mut r, o, 1.0), [o]), &dev);
            let a = conv(x.clone(), (w.clone(), &spec[0]), (bias.clone(), &spec[1]), pad);
            let b = conv_im2col(x, (w, &spec[0]), (bias, &spec[1]), pad);
            assert_eq!(a.dims(), b.dims());
            let diff = (a.clone() - b).abs().max().into_scalar();
            let scale = a.abs().max().into_scalar();
            assert!(diff <= 1e-5 * scale, "c={c} o={o} k={k}: {diff} vs {scale}");
        }
    }

    #[test]
    fn pooling_matches_its_definition() {
        let x = Tensor::<B, 4>::from_data(
            TensorData::new((0..25).map(|v| v as f32).collect::<Vec<_>>(), [1, 1, 5, 5]),
            &Default::default(),
        );
        let max = max_pool2(x.clone()).into_data().to_vec::<f32>().unwrap();
        assert_eq!(max, vec![6.0, 8.0, 16.0, 18.0]);
        let avg = avg_pool2(x.clone()).into_data().to_vec::<f32>().unwrap();
        assert_eq!(avg, vec![3.0, 5.0, 13.0, 15.0]);
        assert_eq!(Pooling::Fused.max(x.clone()).into_data().to_vec::<f32>().unwrap(), max);
        assert_eq!(Pooling::Fused.avg(x).into_data().to_vec::<f32>().unwrap(), avg);
    }

    #[test]
    fn both_forwards_are_one_function() {
        for (kind, size) in [(NetKind::LeNet, 28), (NetKind::LeNet, 13), (NetKind::ConvNet, 28), (NetKind::ConvNet, 14)] {
            let net = Network::new(&Config { net: kind, image_size: size, ..Config::default() }, 3).unwrap();
            let params = net.init::<B>(&mut rng(1, Stream::Eval), &Default::default());
            let pixels = normal(&mut rng(2, Stream::Eval), 4 * size * size, 1.0);
            let x = Tensor::<B, 4>::from_data(TensorData::new(pixels, [4, 1, size, size]), &Default::default());
            let a = net.forward(&params, x.clone()).into_data().to_vec::<f32>().unwrap();
            let b = net.forward_twice(&params, x).into_data().to_vec::<f32>().unwrap();
            // Max pooling is exact; average pooling sums in another order.
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(diff <= 1e-5 * scale, "{kind:?} at {size}: {diff} of {scale}");
            if kind == NetKind::LeNet {
                assert_eq!(a, b, "{kind:?} at {size}");
            }
        }
    }
}
