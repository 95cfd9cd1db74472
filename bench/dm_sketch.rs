//! WORK IN PROGRESS (issue 44, branch `wip/44-matching`): distribution matching on the demo,
//! evaluated the way a receiver trains: an ordinary loop (Adam, full batch of the set, hard
//! labels), the same recipe for a random real subset of the same size.
//!
//! `cargo run --release --example bench_dm_sketch [-- ITERATIONS SEEDS WIDTH EPOCHS]`
//!
//! First readings (2026-12-06, 2 cores, 80 test patches, balanced accuracy, 10 a class):
//! width 32, 1,000 iterations: 88.50 / 87.00 / 87.25 (seeds 0-2), random subset 88.50 / 85.25 /
//! 85.75, 94 s a seed; width 128: 87.75 / 87.25 (seeds 0-1; the third cut by a timeout), subset
//! 88.50 / 85.25, 420-429 s a seed; width 32, 200 iterations, seed 0: 84.75 against 88.50.

use anondistill::adam::{Adam, AdamConfig};
use anondistill::config::Config;
use anondistill::data::{load_files, Dataset, Grouping, Normalization};
use anondistill::demo::demo_files;
use anondistill::distill::matching::{matching_loss, Embedder};
use anondistill::eval::TestSet;
use anondistill::net::Network;
use anondistill::once::OnceOps;
use anondistill::pipeline::Prepared;
use anondistill::rng::{normal, permutation, rng, Stream};
use anondistill::train::loss_grads;
use burn_autodiff::Autodiff;
use burn_tensor::{Int, Tensor, TensorData};
use std::time::Instant;

type B = burn_flex::Flex;
type AD = Autodiff<B>;

const IPC: usize = 10;

/// Ordinary training of a fresh LeNet on `(x, y)` for `epochs` full-batch Adam steps; the
/// balanced accuracy on `test`.
fn ordinary(config: &Config, x: &Tensor<B, 4>, y: &Tensor<B, 2>, test: &TestSet<B>, seed: u64, epochs: usize) -> f64 {
    let net = Network::new(config, 2).unwrap();
    let mut r = rng(seed, Stream::Eval);
    let device = Default::default();
    let adam = AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    let mut outputs = Vec::new();
    for _ in 0..5 {
        let mut params = net.init::<B>(&mut r, &device);
        let mut moments: Vec<Adam<B, 1>> = params.iter().map(Adam::new).collect();
        for _ in 0..epochs {
            let (_, grads) = loss_grads::<AD>(&net, &params, x.clone(), y.clone(), Some(&OnceOps::plain()));
            params = params.into_iter().zip(grads).zip(moments.iter_mut()).map(|((p, g), m)| m.step(adam, 1e-3, p, g)).collect();
        }
        outputs.push(pollster::block_on(test.output(&net, &params)).unwrap());
    }
    test.metrics(&outputs).balanced_accuracy.mean
}

fn class_indices(d: &Dataset, c: usize) -> Vec<usize> {
    (0..d.len()).filter(|&i| d.labels[i] == c).collect()
}

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().unwrap()).collect();
    let (iterations, seeds, width, epochs) = (a.first().copied().unwrap_or(1000), a.get(1).copied().unwrap_or(3), a.get(2).copied().unwrap_or(32), a.get(3).copied().unwrap_or(300));
    let config = Config::default();
    let prepared = Prepared::from_loaded(load_files(demo_files(), 28, &Grouping::default()).unwrap(), &config).unwrap();
    let norm: Normalization = prepared.norm;
    let device = Default::default();
    let test = TestSet::<B>::new(&prepared.test, norm, &device);
    let train = &prepared.train;
    let per_class: Vec<(Tensor<B, 4>, Vec<usize>)> = (0..2)
        .map(|c| {
            let idx = class_indices(train, c);
            (train.tensors::<B>(&idx, norm, &device).0, idx)
        })
        .collect();
    let e = Embedder { width, depth: 3 };
    println!("demo, {IPC} a class, {iterations} iterations, embedder width {width}, LeNet trained {epochs} full-batch Adam steps (5 networks a set)");
    for seed in 0..seeds as u64 {
        let t0 = Instant::now();
        let mut r = rng(seed, Stream::DistillInit);
        let n = 2 * IPC;
        let mut syn = Tensor::<B, 1>::from_data(TensorData::new(normal(&mut r, n * 784, 1.0), [n * 784]), &device).reshape([n, 1, 28, 28]);
        let mut velocity = syn.zeros_like();
        for _ in 0..iterations {
            let params = e.init::<AD>(&mut r, &device);
            let targets: Vec<Tensor<AD, 1>> = per_class
                .iter()
                .map(|(x, _)| {
                    let take = permutation(&mut r, x.dims()[0]);
                    let k = take.len().min(128);
                    let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(take[..k].iter().map(|&i| i as i64).collect::<Vec<_>>(), [k]), &device);
                    e.embed(&params, Tensor::from_inner(x.clone().select(0, idx))).mean_dim(0).squeeze::<1>().detach()
                })
                .collect();
            let s = Tensor::<AD, 4>::from_inner(syn.clone()).require_grad();
            let synthetic: Vec<Tensor<AD, 2>> = (0..2).map(|c| e.embed(&params, s.clone().narrow(0, c * IPC, IPC))).collect();
            let grads = matching_loss(&targets, &synthetic).backward();
            let g = s.grad(&grads).unwrap();
            // SGD with momentum 0.5 and learning rate 1 on the images, as the paper's code.
            velocity = velocity * 0.5 + g;
            syn = syn - velocity.clone();
        }
        let labels: Vec<usize> = (0..n).map(|i| i / IPC).collect();
        let y = anondistill::loss::one_hot::<B>(&labels, 2, &device);
        let dm = ordinary(&config, &syn, &y, &test, seed, epochs);
        // A random real subset of the same size, the same recipe.
        let mut rs = rng(seed, Stream::Baseline);
        let subset: Vec<usize> = per_class.iter().flat_map(|(_, idx)| permutation(&mut rs, idx.len()).into_iter().take(IPC).map(|k| idx[k]).collect::<Vec<_>>()).collect();
        let (xs, ys) = train.tensors::<B>(&subset, norm, &device);
        let sub = ordinary(&config, &xs, &ys, &test, seed, epochs);
        println!("seed {seed}: matching {:.2} %, random subset {:.2} % (balanced, {} test patches), {:.0} s", 100.0 * dm, 100.0 * sub, prepared.test.len(), t0.elapsed().as_secs_f64());
    }
}
