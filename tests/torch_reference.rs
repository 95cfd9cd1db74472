//! The engine against an independent implementation: one meta-step (loss, and its gradient with
//! respect to the images, labels and raw learning rates) computed by PyTorch in float64 from the
//! papers' description (`tests/fixtures/torch/make.py`, which wrote `meta_step.safetensors` with
//! its inputs), on the same inputs: burn-ndarray in f64 with burn's nested autodiff, and the path
//! that ships (burn-flex, f32, manual inner gradients, the once-differentiated kernels).

use anondistill::{
    config::{Config, LabelMode},
    data::{Dataset, Normalization},
    distill::{DistilledTensors, Distiller},
    engine::{Engine, InnerGrad},
};
use burn_tensor::{backend::Backend, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

const FIXTURE: &[u8] = include_bytes!("fixtures/torch/meta_step.safetensors");

fn values(st: &SafeTensors<'_>, name: &str) -> (Vec<f64>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let b = t.data();
    let v = match t.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        Dtype::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        Dtype::I64 => b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        Dtype::U8 => b.iter().map(|&x| x as f64).collect(),
        d => panic!("{name}: unexpected {d:?}"),
    };
    (v, t.shape().to_vec())
}

fn tensor<B: Backend, const D: usize>(st: &SafeTensors<'_>, name: &str, device: &B::Device) -> Tensor<B, D> {
    let (v, shape) = values(st, name);
    let v: Vec<f32> = v.into_iter().map(|x| x as f32).collect(); // the inputs were stored as f32
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// The engine's loss and gradients (flattened, f64) on the fixture's inputs.
fn engine<B: Backend>(mode: LabelMode, inner_grad: InnerGrad) -> Vec<(&'static str, Vec<f64>)> {
    let device = B::Device::default();
    let st = SafeTensors::deserialize(FIXTURE).unwrap();
    let (pixels, shape) = values(&st, "real_pixels");
    let (labels, _) = values(&st, "real_labels");
    let data = Dataset::new(
        shape[1],
        pixels.iter().map(|&p| (p / 255.0) as f32).collect(),
        labels.iter().map(|&l| l as usize).collect(),
        vec!["0".into(), "1".into()],
    );
    let config = Config {
        steps: 2,
        epochs: 2,
        images_per_class_per_step: 1,
        batch_size: data.len(),
        nets_per_iteration: 1,
        label_mode: mode,
        ..Config::default()
    };
    let engine = Engine { inner_grad, ..Engine::default() };
    let mut d = Distiller::<B>::with_engine(config, engine, &data, Normalization::of(&data), &device).unwrap();
    d.set_state(DistilledTensors {
        images: tensor(&st, "images", &device),
        labels: tensor(&st, "labels", &device),
        raw_lrs: tensor(&st, "raw_lrs", &device),
    });
    let init: Vec<Tensor<B, 1>> = (0..10).map(|k| tensor(&st, &format!("init.{k}"), &device)).collect();
    let batch: Vec<usize> = (0..data.len()).collect();
    let g = d.meta_gradient(&init, &batch);
    let host = |t: Tensor<B, 1>| t.into_data().convert::<f64>().to_vec::<f64>().unwrap();
    vec![
        ("loss", host(g.loss)),
        ("images", host(g.images.reshape([-1]))),
        ("labels", host(g.labels.reshape([-1]))),
        ("raw_lrs", host(g.raw_lrs)),
    ]
}

/// Compares with PyTorch's values: the largest entry-wise error relative to the largest entry of
/// the reference, and the relative L2 error; returns the worst of each.
fn compare(what: &str, mode: &str, got: &[(&'static str, Vec<f64>)], bound: f64) {
    let st = SafeTensors::deserialize(FIXTURE).unwrap();
    for (name, g) in got {
        let (want, _) = values(&st, &format!("{mode}.{name}"));
        assert_eq!(g.len(), want.len(), "{name}: length");
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(scale > 1e-6, "{mode}.{name}: the reference vanished, the check would be empty");
        let worst = g.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f64, f64::max) / scale;
        let l2 = (g.iter().zip(&want).map(|(a, b)| (a - b).powi(2)).sum::<f64>() / want.iter().map(|b| b * b).sum::<f64>()).sqrt();
        println!("{what} {mode} {name}: worst entry {worst:.2e} of the largest, relative L2 {l2:.2e}");
        assert!(worst < bound && l2 < bound, "{what} {mode} {name}: worst entry {worst:.3e}, relative L2 {l2:.3e} (bound {bound:.0e})");
    }
}

#[test]
fn ndarray_f64_matches_pytorch() {
    type B = burn_ndarray::NdArray<f64>;
    for (mode, name) in [(LabelMode::Raw, "raw"), (LabelMode::Softmax, "softmax")] {
        // Measured: at most 1.6e-7 (the engine keeps the normalisation constants in f32).
        compare("ndarray f64, nested", name, &engine::<B>(mode, InnerGrad::Nested), 1e-6);
        compare("ndarray f64, manual", name, &engine::<B>(mode, InnerGrad::Manual), 1e-6);
    }
}

#[cfg(feature = "flex")]
#[test]
fn the_shipping_flex_path_matches_pytorch() {
    for (mode, name) in [(LabelMode::Raw, "raw"), (LabelMode::Softmax, "softmax")] {
        compare("flex f32, manual", name, &engine::<burn_flex::Flex>(mode, InnerGrad::Manual), 2e-5); // measured: at most 4.5e-6
    }
}
