//! The hyper-gradient (images, labels, learning rates) against central finite differences in f64.

use anondistill::{
    config::{Config, LabelMode, NetKind},
    engine::{ConvImpl, Engine, InnerGrad},
    data::{Dataset, Normalization},
    distill::{DistilledTensors, Distiller},
    rng::{normal, rng, Stream},
};
use burn_ndarray::NdArray;
use burn_tensor::{Tensor, TensorData};

type B = NdArray<f64>;

fn random_dataset(classes: usize, per_class: usize, size: usize) -> Dataset {
    let mut r = rng(99, Stream::Baseline);
    let n = classes * per_class;
    let pixels = normal(&mut r, n * size * size, 0.3).into_iter().map(|v| (v + 0.5).clamp(0.0, 1.0)).collect();
    Dataset::new(size, pixels, (0..n).map(|i| i % classes).collect(), (0..classes).map(|c| c.to_string()).collect())
}

fn direction<const D: usize>(like: &Tensor<B, D>, seed: u64) -> Tensor<B, D> {
    let values: Vec<f64> = normal(&mut rng(seed, Stream::Eval), like.shape().num_elements(), 1.0).into_iter().map(f64::from).collect();
    Tensor::from_data(TensorData::new(values, like.shape()), &like.device())
}

fn dot<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f64 {
    (a * b).sum().into_scalar()
}

/// Checks d loss along a random direction of each learnable tensor, and single coordinates.
fn check(config: Config, engine: Engine) {
    let data = random_dataset(2, 8, config.image_size);
    let device = Default::default();
    let mut d = Distiller::<B>::with_engine(config, engine, &data, Normalization::of(&data), &device).unwrap();
    let init = d.sample_init();
    let batch: Vec<usize> = (0..data.len()).collect();
    let g = d.meta_gradient(&init, &batch);
    // Only meaningful in double precision (burn keeps one default dtype per device and process).
    assert_eq!(g.images.dtype(), burn_tensor::DType::F64);
    assert_eq!(g.raw_lrs.dtype(), burn_tensor::DType::F64);
    let base = d.state().clone();
    let eps = 1e-6;
    let loss_at = |d: &mut Distiller<B>, s: DistilledTensors<B>| -> f64 {
        d.set_state(s);
        d.meta_gradient(&init, &batch).loss.into_scalar()
    };
    let mut worst: f64 = 0.0;
    let mut compare = |name: &str, analytic: f64, plus: f64, minus: f64| {
        let fd = (plus - minus) / (2.0 * eps);
        let rel = (fd - analytic).abs() / fd.abs().max(analytic.abs()).max(1e-10);
        println!("{name}: analytic {analytic:.10e} finite-difference {fd:.10e} relative error {rel:.2e}");
        assert!(analytic.abs() > 1e-9, "{name}: gradient vanished, the check would be empty");
        assert!(rel < 1e-4, "{name}: relative error {rel}");
        worst = worst.max(rel);
    };
    for (k, seed) in [(0, 1u64), (1, 2), (2, 3)] {
        let mut plus = base.clone();
        let mut minus = base.clone();
        let analytic = match k {
            0 => {
                let dir = direction(&base.images, seed);
                plus.images = base.images.clone() + dir.clone().mul_scalar(eps);
                minus.images = base.images.clone() - dir.clone().mul_scalar(eps);
                dot(g.images.clone(), dir)
            }
            1 => {
                let dir = direction(&base.labels, seed);
                plus.labels = base.labels.clone() + dir.clone().mul_scalar(eps);
                minus.labels = base.labels.clone() - dir.clone().mul_scalar(eps);
                dot(g.labels.clone(), dir)
            }
            _ => {
                let dir = direction(&base.raw_lrs, seed);
                plus.raw_lrs = base.raw_lrs.clone() + dir.clone().mul_scalar(eps);
                minus.raw_lrs = base.raw_lrs.clone() - dir.clone().mul_scalar(eps);
                dot(g.raw_lrs.clone(), dir)
            }
        };
        let (lp, lm) = (loss_at(&mut d, plus), loss_at(&mut d, minus));
        compare(["images", "labels", "lrs"][k], analytic, lp, lm);
    }
    // Single coordinates: the last learning rate (last unrolled step) and the first one.
    let lrs = g.raw_lrs.clone().into_data().to_vec::<f64>().unwrap();
    for i in [0, lrs.len() - 1] {
        let mut onehot = vec![0.0; lrs.len()];
        onehot[i] = eps;
        let delta = Tensor::<B, 1>::from_data(TensorData::new(onehot, [lrs.len()]), &device);
        let plus = DistilledTensors { raw_lrs: base.raw_lrs.clone() + delta.clone(), ..base.clone() };
        let minus = DistilledTensors { raw_lrs: base.raw_lrs.clone() - delta, ..base.clone() };
        let (lp, lm) = (loss_at(&mut d, plus), loss_at(&mut d, minus));
        compare(&format!("lr[{i}]"), lrs[i], lp, lm);
    }
    println!("worst relative error {worst:.2e}");
}

fn small(net: NetKind, size: usize) -> Config {
    Config {
        net,
        image_size: size,
        steps: 3,
        epochs: 2,
        convnet_width: 4,
        convnet_depth: 2,
        lr_init: 0.1,
        seed: 3,
        ..Config::default()
    }
}

/// burn's autodiff nested in itself; the tests name `Manual` where they mean it.
fn nested(conv: ConvImpl) -> Engine {
    Engine { conv, inner_grad: InnerGrad::Nested, ..Engine::default() }
}

fn manual(conv: ConvImpl) -> Engine {
    Engine { conv, inner_grad: InnerGrad::Manual, ..Engine::default() }
}

#[test]
fn lenet_hypergradient_matches_finite_differences() {
    check(small(NetKind::LeNet, 12), nested(ConvImpl::Auto));
}

#[test]
fn convnet_hypergradient_matches_finite_differences() {
    check(small(NetKind::ConvNet, 8), nested(ConvImpl::Auto));
}

#[test]
fn softmax_labels_and_known_init_hypergradient_matches_finite_differences() {
    check(Config { label_mode: LabelMode::Softmax, known_init: true, ..small(NetKind::ConvNet, 8) }, nested(ConvImpl::Auto));
}

#[test]
fn im2col_lenet_hypergradient_matches_finite_differences() {
    check(small(NetKind::LeNet, 12), nested(ConvImpl::Im2col));
}

#[test]
fn im2col_convnet_hypergradient_matches_finite_differences() {
    check(small(NetKind::ConvNet, 8), nested(ConvImpl::Im2col));
}

#[test]
fn manual_inner_gradients_hypergradient_matches_finite_differences() {
    check(small(NetKind::LeNet, 12), manual(ConvImpl::Im2col));
    check(small(NetKind::LeNet, 13), manual(ConvImpl::Direct));
    check(small(NetKind::ConvNet, 8), manual(ConvImpl::Im2col));
    check(Config { label_mode: LabelMode::Softmax, known_init: true, ..small(NetKind::ConvNet, 8) }, manual(ConvImpl::Direct));
}

/// Values of `t` on backend `To`, through the host.
#[cfg(feature = "flex")]
fn to_backend<From: burn_tensor::backend::Backend, To: burn_tensor::backend::Backend, const D: usize>(t: &Tensor<From, D>, device: &To::Device) -> Tensor<To, D> {
    let data = t.clone().into_data().convert::<f32>();
    Tensor::from_data(data, device)
}

/// The path that ships natively and in the page's CPU backend (burn-flex, f32, manual inner
/// gradients, the once-differentiated operations on `kernels`): its hyper-gradient along a
/// random direction of each learnable tensor, against central differences of the same loss
/// computed in f64 (burn-ndarray), from the same state and the same initial network. Flex works
/// in f32 only, so its own differences would drown in rounding; the f64 loss is the same function
/// (`tests/backends.rs` holds flex and ndarray to 1e-5 on it).
#[cfg(feature = "flex")]
fn check_flex(config: Config) {
    use anondistill::OnceImpl;
    use burn_flex::Flex;
    // The shipping path is the default engine.
    assert_eq!((Engine::default().inner_grad, Engine::default().once_ops), (InnerGrad::Manual, OnceImpl::Auto));
    let data = random_dataset(2, 8, config.image_size);
    let norm = Normalization::of(&data);
    let mut reference = Distiller::<B>::new(config.clone(), &data, norm, &Default::default()).unwrap();
    let mut flex = Distiller::<Flex>::new(config, &data, norm, &Default::default()).unwrap();
    let init = reference.sample_init();
    let flex_init: Vec<Tensor<Flex, 1>> = init.iter().map(|p| to_backend(p, &Default::default())).collect();
    let base = reference.state().clone();
    flex.set_state(DistilledTensors {
        images: to_backend(&base.images, &Default::default()),
        labels: to_backend(&base.labels, &Default::default()),
        raw_lrs: to_backend(&base.raw_lrs, &Default::default()),
    });
    let batch: Vec<usize> = (0..data.len()).collect();
    let g = flex.meta_gradient(&flex_init, &batch);
    let host = |t: Tensor<Flex, 1>| t.into_data().convert::<f64>().to_vec::<f64>().unwrap();
    let (gi, gl, gr) = (host(g.images.reshape([-1])), host(g.labels.reshape([-1])), host(g.raw_lrs));
    let eps = 1e-6;
    let mut loss_at = |s: DistilledTensors<B>| -> f64 {
        reference.set_state(s);
        reference.meta_gradient(&init, &batch).loss.into_scalar()
    };
    let flat = |t: Tensor<B, 1>| t.into_data().to_vec::<f64>().unwrap();
    for (k, name) in ["images", "labels", "lrs"].into_iter().enumerate() {
        let (mut plus, mut minus) = (base.clone(), base.clone());
        let analytic = match k {
            0 => {
                let dir = direction(&base.images, 11);
                plus.images = base.images.clone() + dir.clone().mul_scalar(eps);
                minus.images = base.images.clone() - dir.clone().mul_scalar(eps);
                flat(dir.reshape([-1])).iter().zip(&gi).map(|(a, b)| a * b).sum::<f64>()
            }
            1 => {
                let dir = direction(&base.labels, 12);
                plus.labels = base.labels.clone() + dir.clone().mul_scalar(eps);
                minus.labels = base.labels.clone() - dir.clone().mul_scalar(eps);
                flat(dir.reshape([-1])).iter().zip(&gl).map(|(a, b)| a * b).sum::<f64>()
            }
            _ => {
                let dir = direction(&base.raw_lrs, 13);
                plus.raw_lrs = base.raw_lrs.clone() + dir.clone().mul_scalar(eps);
                minus.raw_lrs = base.raw_lrs.clone() - dir.clone().mul_scalar(eps);
                flat(dir).iter().zip(&gr).map(|(a, b)| a * b).sum::<f64>()
            }
        };
        let fd = (loss_at(plus) - loss_at(minus)) / (2.0 * eps);
        let rel = (fd - analytic).abs() / fd.abs().max(analytic.abs());
        println!("flex {name}: analytic (f32) {analytic:.8e} finite-difference (f64) {fd:.8e} relative error {rel:.2e}");
        assert!(analytic.abs() > 1e-7, "{name}: gradient vanished, the check would be empty");
        assert!(rel < 2e-4, "{name}: relative error {rel}"); // measured here: at most 1.9e-5
    }
}

#[cfg(feature = "flex")]
#[test]
fn the_shipping_flex_path_matches_finite_differences() {
    // LeNet at 28 (the default size: the kernels' 'same'-width im2col and 2×2 pooling) and the ConvNet.
    check_flex(small(NetKind::LeNet, 28));
    check_flex(small(NetKind::ConvNet, 8));
}
