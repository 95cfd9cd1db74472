//! Distribution matching (Zhao & Bilen, "Dataset Condensation with Distribution Matching", WACV
//! 2023), the core of issue 44's second objective: the distilled images of each class are
//! learned so that their mean embedding under a freshly drawn random ConvNet (conv 3×3 –
//! instance norm – ReLU – 2×2 average pooling, `depth` blocks, no classifier) equals the real
//! images' mean embedding. Only forward passes on the real images (no graph) and one backward
//! through the synthetic images' embedding: no unrolled training, no second derivative.
//! [`crate::distill::Distiller`] runs it when the configuration's objective is `matching`.

use burn_autodiff::Autodiff;
use burn_tensor::{activation::relu, backend::Backend, module::{avg_pool2d, conv2d}, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;

use crate::augment::{self, Transform};
use crate::conv::stride1;
use crate::net::instance_norm;
use crate::rng::normal;
use crate::train::indices;

/// The random embedding network of one matching iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Embedder {
    /// Channels of every block.
    pub width: usize,
    /// Blocks; each halves the image size.
    pub depth: usize,
}

impl Embedder {
    /// Fresh weights: per block a `[width, in, 3, 3]` kernel (Kaiming-uniform's normal
    /// counterpart, std √(2 / fan_in)) and a zero bias.
    pub fn init<B: Backend>(&self, rng: &mut ChaCha8Rng, device: &B::Device) -> Vec<(Tensor<B, 4>, Tensor<B, 1>)> {
        (0..self.depth)
            .map(|k| {
                let cin = if k == 0 { 1 } else { self.width };
                let fan_in = cin * 9;
                let w = normal(rng, self.width * fan_in, (2.0 / fan_in as f64).sqrt());
                let w = Tensor::<B, 1>::from_data(TensorData::new(w, [self.width * fan_in]), device).reshape([self.width, cin, 3, 3]);
                (w, Tensor::zeros([self.width], device))
            })
            .collect()
    }

    /// Embeddings `[n, width · (size / 2^depth)²]` of images `[n, 1, size, size]`.
    pub fn embed<B: Backend>(&self, params: &[(Tensor<B, 4>, Tensor<B, 1>)], x: Tensor<B, 4>) -> Tensor<B, 2> {
        let mut h = x;
        for (w, b) in params {
            h = conv2d(h, w.clone(), Some(b.clone()), stride1(1));
            h = relu(instance_norm(h));
            h = avg_pool2d(h, [2, 2], [2, 2], [0, 0], true, false);
        }
        h.flatten(1, 3)
    }

    /// Embeddings of `size × size` images have this many values.
    pub fn dims(&self, size: usize) -> usize {
        let side = size >> self.depth;
        self.width * side * side
    }

    /// [`Embedder::embed`], each image's embedding divided by its norm (private matching: one
    /// image's contribution is bounded whatever its pixels).
    pub fn embed_unit<B: Backend>(&self, params: &[(Tensor<B, 4>, Tensor<B, 1>)], x: Tensor<B, 4>) -> Tensor<B, 2> {
        let e = self.embed(params, x);
        let norm = e.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
        e / norm
    }
}

/// Σ_c ‖target_c − mean of the synthetic embeddings of class c‖²: `targets[c]` `[d]` (the real
/// mean embedding, without a graph), `synthetic[c]` `[m_c, d]`.
pub fn matching_loss<B: Backend>(targets: &[Tensor<B, 1>], synthetic: &[Tensor<B, 2>]) -> Tensor<B, 1> {
    targets
        .iter()
        .zip(synthetic)
        .map(|(t, s)| {
            let diff = t.clone() - s.clone().mean_dim(0).squeeze::<1>();
            diff.powi_scalar(2).sum()
        })
        .reduce(|a, b| a + b)
        .expect("at least one class")
}

/// The weights of one embedding network.
pub type EmbedderParams<B> = Vec<(Tensor<B, 4>, Tensor<B, 1>)>;

/// The mean embedding of each class's real images `real[c]` `[n_c, 1, size, size]`: the targets
/// of one iteration (no graph). Every class goes through the network in one batch; a class of
/// no image has no mean, and a zero stands in.
pub fn class_means<B: Backend>(e: &Embedder, params: &EmbedderParams<B>, real: &[Tensor<B, 4>]) -> Vec<Tensor<B, 1>> {
    let sizes: Vec<usize> = real.iter().map(|x| x.dims()[0]).collect();
    let embedded = e.embed(params, Tensor::cat(real.to_vec(), 0));
    let [_, d] = embedded.dims();
    let device = embedded.device();
    blocks(embedded, &sizes).into_iter().map(|b| b.map_or_else(|| Tensor::zeros([d], &device), |b| b.mean_dim(0).squeeze::<1>())).collect()
}

/// The consecutive row blocks of `x` `[Σ sizes, d]`, block c of `sizes[c]` rows (`None` for a
/// block of no row).
fn blocks<B: Backend>(x: Tensor<B, 2>, sizes: &[usize]) -> Vec<Option<Tensor<B, 2>>> {
    let mut at = 0;
    sizes
        .iter()
        .map(|&n| {
            at += n;
            (n > 0).then(|| x.clone().narrow(0, at - n, n))
        })
        .collect()
}

/// The matching loss of `images` (`members[c]` lists the images of class `c`) against
/// `targets`, and its gradient with respect to the images; with `unit`, each image's embedding
/// is divided by its norm first (as private matching's targets are made); with `aug`, class
/// `c`'s images are transformed by `aug[c]` first (image `i` by its `i`-th transform, or all by
/// the one there is), inside the graph. Every class's images go through the network in one
/// batch; a class without a distilled image adds nothing.
pub fn image_gradient<B: Backend>(
    e: &Embedder,
    params: &EmbedderParams<B>,
    images: &Tensor<B, 4>,
    members: &[Vec<usize>],
    targets: &[Tensor<B, 1>],
    unit: bool,
    aug: Option<&[Vec<Transform>]>,
) -> (Tensor<B, 1>, Tensor<B, 4>) {
    let device = images.device();
    let params: EmbedderParams<Autodiff<B>> = params.iter().map(|(w, b)| (Tensor::from_inner(w.clone()), Tensor::from_inner(b.clone()))).collect();
    let x = Tensor::<Autodiff<B>, 4>::from_inner(images.clone()).require_grad();
    let classes: Vec<usize> = (0..members.len()).filter(|&c| !members[c].is_empty()).collect();
    let batch: Vec<Tensor<Autodiff<B>, 4>> = classes
        .iter()
        .map(|&c| {
            let idx = &members[c];
            let x = x.clone().select(0, indices::<Autodiff<B>>(idx, &device));
            match aug {
                Some(aug) => {
                    let t = &aug[c];
                    augment::apply(x, if t.len() == 1 { t } else { &t[..idx.len()] })
                }
                None => x,
            }
        })
        .collect();
    let embedded = Tensor::cat(batch, 0);
    let embedded = if unit { e.embed_unit(&params, embedded) } else { e.embed(&params, embedded) };
    let sizes: Vec<usize> = classes.iter().map(|&c| members[c].len()).collect();
    let synthetic: Vec<Tensor<Autodiff<B>, 2>> = blocks(embedded, &sizes).into_iter().flatten().collect();
    let targets: Vec<Tensor<Autodiff<B>, 1>> = classes.iter().map(|&c| Tensor::from_inner(targets[c].clone())).collect();
    let loss = matching_loss(&targets, &synthetic);
    let grads = loss.backward();
    let g = x.grad(&grads).unwrap_or_else(|| images.zeros_like());
    (loss.inner(), g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_ndarray::NdArray;
    use rand::SeedableRng;

    /// Two classes of 12 × 12 images (LeNet's smallest): class 0 bright on the left, class 1 on
    /// the right, plus noise.
    fn halves(per_class: usize, seed: u64) -> crate::data::Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise = normal(&mut rng, 2 * per_class * 144, 0.1);
        let mut pixels = Vec::new();
        for c in 0..2 {
            for k in 0..per_class {
                for p in 0..144 {
                    let left = p % 12 < 6;
                    pixels.push(if left == (c == 0) { 0.8 } else { 0.2 } + noise[(c * per_class + k) * 144 + p]);
                }
            }
        }
        crate::data::Dataset::new(12, pixels, (0..2 * per_class).map(|i| i / per_class).collect(), vec!["left".into(), "right".into()])
    }

    #[test]
    fn labels_on_top_learn_labels_and_rates_and_leave_the_matched_images_alone() {
        use crate::config::{Config, Objective};
        use crate::distill::Distiller;
        type F = NdArray<f32>;
        let train = halves(30, 2);
        let norm = crate::data::Normalization { mean: 0.5, std: 0.3 };
        let device = Default::default();
        let host = |t: Tensor<F, 2>| -> Vec<f32> { t.into_data().to_vec().unwrap() };
        let config = Config { objective: Objective::Matching, image_size: 12, embed_width: 4, steps: 2, max_iterations: Some(6), label_iterations: 4, nets_per_iteration: 1, batch_size: 16, ..Config::default() };
        for label_images in [false, true] {
            let mut d = Distiller::<F>::new(Config { label_images, ..config.clone() }, &train, norm, &device).unwrap();
            assert_eq!((d.total_iterations(), d.label_start()), (10, Some(6)));
            let (one_hot, lrs) = (host(d.state().labels.clone()), d.state().raw_lrs.clone().into_data().to_vec::<f32>().unwrap());
            for _ in 0..6 {
                pollster::block_on(d.step()).unwrap();
            }
            // Matching moves the images only.
            assert_eq!(host(d.state().labels.clone()), one_hot);
            let matched = host(d.state().images.clone().flatten(1, 3));
            for _ in 0..4 {
                let r = pollster::block_on(d.step()).unwrap();
                assert!(r.loss.is_some_and(|l| l.is_finite() && l > 0.0), "the replay's outer loss: {:?}", r.loss);
            }
            assert_eq!(d.iteration(), 10);
            assert_ne!(host(d.state().labels.clone()), one_hot, "the labels were not learned on top");
            assert_ne!(d.state().raw_lrs.clone().into_data().to_vec::<f32>().unwrap(), lrs, "the learning rates were not learned on top");
            let after = host(d.state().images.clone().flatten(1, 3));
            if label_images {
                assert_ne!(after, matched, "label_images: the images should move too");
            } else {
                assert_eq!(after, matched, "the label iterations moved the matched images");
            }
        }
    }

    #[test]
    fn a_matching_run_brings_each_class_to_its_real_mean_embedding() {
        use crate::config::{Config, Objective};
        use crate::distill::Distiller;
        type F = NdArray<f32>;
        let train = halves(30, 1);
        let norm = crate::data::Normalization { mean: 0.5, std: 0.3 };
        // Plain matching: the judges below embed unaugmented images (DSA matches transformed ones).
        let config = Config { objective: Objective::Matching, image_size: 12, embed_width: 8, steps: 2, max_iterations: Some(1500), dsa: false, ..Config::default() };
        let device = Default::default();
        let mut d = Distiller::<F>::new(config, &train, norm, &device).unwrap();
        assert_eq!(d.total_iterations(), 1500);
        // Judged under embedders the run never draws, on all the real images.
        let e = Embedder { width: 8, depth: 3 };
        let mut judge = ChaCha8Rng::seed_from_u64(99);
        let judges: Vec<EmbedderParams<F>> = (0..4).map(|_| e.init::<F>(&mut judge, &device)).collect();
        let real: Vec<Tensor<F, 4>> = train.indices_by_class().iter().map(|idx| train.tensors::<F>(idx, norm, &device).0).collect();
        let members = [vec![0, 2], vec![1, 3]];
        let gap = |d: &Distiller<F>| -> f32 {
            judges
                .iter()
                .map(|p| {
                    let targets = class_means(&e, p, &real);
                    image_gradient(&e, p, &d.state().images, &members, &targets, false, None).0.into_scalar()
                })
                .sum()
        };
        let before = gap(&d);
        let outcome = pollster::block_on(crate::pipeline::run_to_end(&mut d, |r| assert!(r.loss.is_some_and(f32::is_finite))));
        assert_eq!(outcome.iterations, 1500);
        let after = gap(&d);
        // Two real images of each class, as a reference.
        let mut real_pair = d.state().clone();
        real_pair.images = train.tensors::<F>(&[0, 30, 1, 31], norm, &device).0;
        let mut reference = Distiller::<F>::new(d.config().clone(), &train, norm, &device).unwrap();
        reference.set_state(real_pair);
        let real_gap = gap(&reference);
        println!("matching loss under unseen embedders: {before} at the start, {after} after, {real_gap} for two real images of each class");
        assert!(after < 0.25 * before && after < real_gap, "the matching loss under unseen embedders went from {before} to {after} (two real images of each class: {real_gap})");
        // Matching moves the images only.
        let labels: Vec<f32> = d.state().labels.clone().into_data().to_vec().unwrap();
        assert_eq!(labels, vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
    }
}
