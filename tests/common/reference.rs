//! One small distillation computed the same way natively (`tests/web_reference.rs`, which keeps
//! `tests/fixtures/web_reference.json` up to date) and in the browser (`tests/web.rs`, which
//! compares against that file): the hyper-gradient of a first outer iteration, and the losses of a
//! few iterations from fixed initial weights on the full training split.

use anondistill::{
    config::Config,
    data::{load_files, Grouping},
    demo::demo_files,
    distill::{read_f32, Distiller},
    pipeline::Prepared,
};
use burn_tensor::backend::Backend;
use serde::{Deserialize, Serialize};

/// What is compared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reference {
    /// Outer loss of the first iteration.
    pub loss: f32,
    /// Its gradient with respect to the images, labels and raw learning rates.
    pub images: Vec<f32>,
    pub labels: Vec<f32>,
    pub raw_lrs: Vec<f32>,
    /// Outer losses of `DESCENT_STEPS` iterations with fixed weights and the whole split as batch.
    pub losses: Vec<f32>,
}

pub const DESCENT_STEPS: usize = 6;

/// LeNet on 28×28 demo patches, 2 steps × 2 epochs of 2 images.
pub fn config() -> Config {
    Config { steps: 2, epochs: 2, batch_size: 64, nets_per_iteration: 1, ..Config::default() }
}

pub async fn reference<B: Backend>(device: &B::Device) -> Reference {
    let cfg = config();
    let p = Prepared::from_loaded(load_files(demo_files(), cfg.image_size, &Grouping::default()).unwrap(), &cfg).unwrap();
    let mut d = Distiller::<B>::new(cfg.clone(), &p.train, p.norm, device).unwrap();
    let init = d.sample_init();
    let batch = d.next_batch();
    let g = d.meta_gradient(&init, &batch);
    let flat4 = |t: burn_tensor::Tensor<B, 4>| t.reshape([-1]);
    let flat2 = |t: burn_tensor::Tensor<B, 2>| t.reshape([-1]);
    let loss = read_f32(g.loss).await.unwrap()[0];
    let images = read_f32(flat4(g.images)).await.unwrap();
    let labels = read_f32(flat2(g.labels)).await.unwrap();
    let raw_lrs = read_f32(g.raw_lrs).await.unwrap();

    let descent = Config { known_init: true, batch_size: p.train.len(), ..cfg };
    let mut d = Distiller::<B>::new(descent, &p.train, p.norm, device).unwrap();
    let mut losses = Vec::new();
    for _ in 0..DESCENT_STEPS {
        losses.push(d.step().await.unwrap().loss.unwrap());
    }
    Reference { loss, images, labels, raw_lrs, losses }
}

/// ‖a − b‖ / ‖b‖.
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Fails unless `got` agrees with `want` within `tol` (relative), naming the worst part.
pub fn assert_agrees(got: &Reference, want: &Reference, tol: f64) -> Vec<(&'static str, f64)> {
    let errors = vec![
        ("loss", relative_error(&[got.loss], &[want.loss])),
        ("d/d images", relative_error(&got.images, &want.images)),
        ("d/d labels", relative_error(&got.labels, &want.labels)),
        ("d/d raw lrs", relative_error(&got.raw_lrs, &want.raw_lrs)),
        ("descent losses", relative_error(&got.losses, &want.losses)),
    ];
    for (name, e) in &errors {
        assert!(*e <= tol, "{name}: relative error {e:.2e} > {tol:.0e} (all: {errors:?})");
    }
    errors
}

/// The loss goes down over the fixed-weight, full-batch iterations.
pub fn assert_descends(r: &Reference) {
    let (first, last) = (r.losses[0], r.losses[r.losses.len() - 1]);
    assert!(last < first, "loss did not go down: {:?}", r.losses);
}
