//! Evaluation the way the reference does it: the learned step sequence replayed with the learned
//! learning rates on fresh networks, against two baselines of the same budget.

use burn_tensor::{backend::Backend, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Objective};
use crate::data::{Dataset, Normalization};
use crate::distill::Distilled;
use crate::error::{Error, Result};
use crate::net::{Network, Params};
use crate::rng::{permutation, rng, Stream};
use crate::loss::label_targets;
use crate::metrics::{imbalanced, Metrics, NetOutput};
use crate::train::{logits, ordinary, Program, Recipe};

/// A program's metrics over its evaluation networks (see [`crate::metrics`]).
pub type Accuracy = Metrics;

/// The distilled set and its baselines on the same test images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Test images used.
    pub test_images: usize,
    /// Test images of each class.
    #[serde(default)]
    pub test_counts: Vec<usize>,
    /// The distilled program replayed on fresh networks.
    pub distilled: Accuracy,
    /// As many random real training images, hard labels, the same step layout and replay.
    pub random_subset: Accuracy,
    /// The fixed learning rate of the random-subset baseline (best on the training data).
    pub random_subset_lr: f64,
    /// Ordinary training on all training data, when it was run.
    pub full_data: Option<Accuracy>,
}

impl Evaluation {
    /// One line per method, for people: balanced accuracy first when the classes are
    /// imbalanced, then accuracy and AUC.
    pub fn summary(&self) -> String {
        let pct = |s: &crate::metrics::Stat| format!("{:6.2}% ± {:5.2}", 100.0 * s.mean, 100.0 * s.std);
        let balanced_first = imbalanced(&self.test_counts);
        let line = |name: &str, a: &Accuracy| {
            let auc = a.auc.map_or("  n/a ".into(), |v| format!("{v:.3}"));
            let (first, second) = if balanced_first { (&a.balanced_accuracy, &a.accuracy) } else { (&a.accuracy, &a.balanced_accuracy) };
            format!("{name:<24} {}   {}   {auc}  ({} nets)\n", pct(first), pct(second), a.nets)
        };
        let header = if balanced_first { format!("{:<18}{:<18}ROC AUC", "balanced accuracy", "accuracy") } else { format!("{:<18}{:<18}ROC AUC", "accuracy", "balanced accuracy") };
        let mut s = format!("on {} held-out images ({}); ± is the sample std over the networks\n", self.test_images, self.counts_text());
        if balanced_first {
            s += "the classes are imbalanced: read balanced accuracy (the mean of the classes' recalls)\n";
        }
        if let Some(note) = self.too_few() {
            s += &format!("note: {note}\n");
        }
        s += &format!("{:<24}  {header}\n", "");
        s += &line("distilled", &self.distilled);
        s += &line(&format!("random subset (lr {})", self.random_subset_lr), &self.random_subset);
        if let Some(f) = &self.full_data {
            s += &line("full training data", f);
        }
        s
    }

    fn counts_text(&self) -> String {
        self.test_counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" / ")
    }
}

/// Test images each class needs before its accuracy is more than a rough guide.
pub const MIN_TEST_PER_CLASS: usize = 20;

impl Evaluation {
    /// A sentence when some class has fewer than [`MIN_TEST_PER_CLASS`] test images.
    pub fn too_few(&self) -> Option<String> {
        let fewest = *self.test_counts.iter().min()?;
        (fewest < MIN_TEST_PER_CLASS).then(|| {
            format!(
                "a class has only {fewest} test image(s) (under {MIN_TEST_PER_CLASS}): these accuracies are too uncertain to mean much"
            )
        })
    }
}

/// Test images and labels on the device, with the labels on the host.
pub struct TestSet<B: Backend> {
    x: Tensor<B, 4>,
    labels: Vec<usize>,
    classes: usize,
}

impl<B: Backend> TestSet<B> {
    /// All of `data`, normalised with the training statistics.
    pub fn new(data: &Dataset, norm: Normalization, device: &B::Device) -> Self {
        let all: Vec<usize> = (0..data.len()).collect();
        let (x, _) = data.tensors::<B>(&all, norm, device);
        Self { x, labels: data.labels.clone(), classes: data.num_classes() }
    }

    /// What the network `params` predicts on the test images, with its softmax output.
    pub async fn output(&self, net: &Network, params: &[Tensor<B, 1>]) -> Result<NetOutput> {
        let z = logits(net, params, self.x.clone()).into_data_async().await.map_err(|e| Error::Backend(format!("{e:?}")))?;
        let z = z.convert::<f64>().to_vec::<f64>().map_err(|e| Error::Backend(format!("{e:?}")))?;
        let mut predicted = Vec::with_capacity(self.labels.len());
        let mut probs = Vec::with_capacity(z.len());
        for row in z.chunks_exact(self.classes) {
            // The first largest, as burn's argmax.
            predicted.push(row.iter().enumerate().fold(0, |best, (c, &v)| if v > row[best] { c } else { best }));
            let top = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|v| (v - top).exp()).collect();
            let sum: f64 = e.iter().sum();
            probs.extend(e.iter().map(|v| v / sum));
        }
        Ok(NetOutput { predicted, probs })
    }

    /// The metrics of the networks whose outputs these are.
    pub fn metrics(&self, outputs: &[NetOutput]) -> Metrics {
        Metrics::of(outputs, &self.labels, self.classes)
    }
}

/// How the distilled set trains a network: its steps replayed with its learning rates, or, for
/// a matching set, the configuration's ordinary loop on all its images.
pub fn distilled_program<B: Backend>(d: &Distilled, config: &Config, device: &B::Device) -> Program<B> {
    let n = d.len();
    let images = Tensor::<B, 4>::from_data(TensorData::new(d.images.clone(), [n, 1, d.size, d.size]), device);
    let labels = Tensor::<B, 2>::from_data(TensorData::new(d.labels.clone(), [n, d.classes]), device);
    let targets = label_targets(labels, config.label_mode);
    if config.objective == Objective::Matching {
        return Program::Ordinary { images, targets, recipe: config.recipe() };
    }
    let steps = (0..d.steps())
        .map(|s| (images.clone().narrow(0, s * d.per_step, d.per_step), targets.clone().narrow(0, s * d.per_step, d.per_step)))
        .collect();
    let lrs = Tensor::from_data(TensorData::new(d.lrs.clone(), [d.lrs.len()]), device);
    Program::Replay { steps, lrs, epochs: d.epochs }
}

/// Accuracy of the distilled set trained into `config.eval_nets` fresh networks (or the fixed
/// initial network when the data were distilled for one) the way [`distilled_program`] says.
pub async fn evaluate_distilled<B: Backend>(
    config: &Config,
    d: &Distilled,
    fixed_init: Option<&Params<B>>,
    test: &TestSet<B>,
    device: &B::Device,
) -> Result<Accuracy> {
    let net = Network::new(config, d.classes)?;
    let program = distilled_program::<B>(d, config, device);
    let mut r = rng(config.seed, Stream::Eval);
    let nets = if fixed_init.is_some() { 1 } else { config.eval_nets };
    let mut outputs = Vec::new();
    for _ in 0..nets {
        let init = fixed_init.cloned().unwrap_or_else(|| net.init(&mut r, device));
        let trained = program.train(&net, init, &mut r);
        outputs.push(test.output(&net, &trained).await?);
    }
    Ok(test.metrics(&outputs))
}

/// A random real subset of the distilled set's size, trained the way the distilled set is: for
/// the unrolled objective laid out like its steps (for every step, `per_class` images of each
/// class, one-hot labels) and replayed at the fixed learning rate `lr`; for matching, the same
/// ordinary loop (`lr` unused).
pub(crate) fn random_subset_program<B: Backend>(
    train: &Dataset,
    config: &Config,
    norm: Normalization,
    lr: f64,
    r: &mut ChaCha8Rng,
    device: &B::Device,
) -> Program<B> {
    let classes = train.num_classes();
    let by_class = train.indices_by_class();
    let perms: Vec<Vec<usize>> = by_class.iter().map(|idx| permutation(r, idx.len())).collect();
    let per_step = config.images_per_step(classes);
    let picks: Vec<usize> = (0..per_step * config.steps)
        .map(|i| {
            let c = i % classes;
            by_class[c][perms[c][(i / classes) % by_class[c].len()]]
        })
        .collect();
    let (x, y) = train.tensors::<B>(&picks, norm, device);
    if config.objective == Objective::Matching {
        return Program::Ordinary { images: x, targets: y, recipe: config.recipe() };
    }
    let steps = (0..config.steps)
        .map(|s| (x.clone().narrow(0, s * per_step, per_step), y.clone().narrow(0, s * per_step, per_step)))
        .collect();
    let lrs = Tensor::<B, 1>::full([config.inner_steps()], lr, device);
    Program::Replay { steps, lrs, epochs: config.epochs }
}

/// Scores of `nets` networks, each trained on a fresh random subset (see
/// [`random_subset_program`]), on `on`.
#[allow(clippy::too_many_arguments)]
async fn random_subset_scores<B: Backend>(
    net: &Network,
    config: &Config,
    train: &Dataset,
    norm: Normalization,
    lr: f64,
    nets: usize,
    r: &mut ChaCha8Rng,
    on: &TestSet<B>,
    device: &B::Device,
) -> Result<Vec<NetOutput>> {
    let mut outputs = Vec::new();
    for _ in 0..nets {
        let program = random_subset_program::<B>(train, config, norm, lr, r, device);
        let init = net.init(r, device);
        let trained = program.train(net, init, r);
        outputs.push(on.output(net, &trained).await?);
    }
    Ok(outputs)
}

/// The random subset's fixed learning rate: the one of `config.baseline_lrs` that scores best
/// on the training data (three tuning networks each).
/// A matching set's subset has the recipe's, with nothing tuned.
pub async fn pick_subset_lr<B: Backend>(config: &Config, train: &Dataset, norm: Normalization, device: &B::Device) -> Result<f64> {
    if config.objective == Objective::Matching {
        return Ok(config.recipe_lr);
    }
    let net = Network::new(config, train.num_classes())?;
    let train_set = TestSet::<B>::new(train, norm, device);
    let mut best = (f64::NEG_INFINITY, config.baseline_lrs[0]);
    for &lr in &config.baseline_lrs {
        let mut r = rng(config.seed, Stream::Baseline);
        let outputs = random_subset_scores(&net, config, train, norm, lr, 3, &mut r, &train_set, device).await?;
        let mean = train_set.metrics(&outputs).accuracy.mean;
        let total = if mean.is_finite() { mean } else { 0.0 };
        if total > best.0 {
            best = (total, lr);
        }
    }
    Ok(best.1)
}

/// The random-subset baseline: its learning rate from [`pick_subset_lr`], then scored on the
/// test data.
pub async fn evaluate_random_subset<B: Backend>(
    config: &Config,
    train: &Dataset,
    norm: Normalization,
    test: &TestSet<B>,
    device: &B::Device,
) -> Result<(Accuracy, f64)> {
    let net = Network::new(config, train.num_classes())?;
    let lr = pick_subset_lr::<B>(config, train, norm, device).await?;
    let mut r = rng(config.seed ^ 0x5eed, Stream::Baseline);
    let outputs = random_subset_scores(&net, config, train, norm, lr, config.eval_nets, &mut r, test, device).await?;
    Ok((test.metrics(&outputs), lr))
}

/// Ordinary training on all training data: Adam (lr 1e-3), minibatches of 64, shuffled every
/// epoch, `config.full_data_epochs` epochs, on `config.full_data_nets` networks.
pub async fn evaluate_full_data<B: Backend>(
    config: &Config,
    train: &Dataset,
    norm: Normalization,
    test: &TestSet<B>,
    device: &B::Device,
) -> Result<Option<Accuracy>> {
    if config.full_data_nets == 0 {
        return Ok(None);
    }
    let classes = train.num_classes();
    let net = Network::new(config, classes)?;
    let all: Vec<usize> = (0..train.len()).collect();
    let (x, y) = train.tensors::<B>(&all, norm, device);
    let y = if config.balance_classes { crate::loss::weighted_rows(y, &train.class_weights()) } else { y };
    let recipe = Recipe { epochs: config.full_data_epochs, lr: 1e-3, batch: 64, augment: false };
    let mut r = rng(config.seed, Stream::Baseline);
    let mut outputs = Vec::new();
    for _ in 0..config.full_data_nets {
        let params = net.init::<B>(&mut r, device);
        let params = ordinary(&net, params, &x, &y, &recipe, &mut r);
        outputs.push(test.output(&net, &params).await?);
    }
    Ok(Some(test.metrics(&outputs)))
}

/// All three: the distilled program, the random subset and the full data.
pub async fn evaluate<B: Backend>(
    config: &Config,
    d: &Distilled,
    fixed_init: Option<&Params<B>>,
    train: &Dataset,
    test: &Dataset,
    norm: Normalization,
    device: &B::Device,
) -> Result<Evaluation> {
    let test_set = TestSet::new(test, norm, device);
    let distilled = evaluate_distilled(config, d, fixed_init, &test_set, device).await?;
    let (random_subset, random_subset_lr) = evaluate_random_subset(config, train, norm, &test_set, device).await?;
    let full_data = evaluate_full_data(config, train, norm, &test_set, device).await?;
    Ok(Evaluation { test_images: test.len(), test_counts: test.class_counts(), distilled, random_subset, random_subset_lr, full_data })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::toy;
    use burn_ndarray::NdArray;

    /// A matching set and its random subset are trained by the same ordinary loop; an unrolled
    /// set and its subset by the replay.
    #[test]
    fn the_subset_is_trained_the_way_the_distilled_set_is() {
        let train = toy(2, 12, 8);
        let norm = Normalization { mean: 0.0, std: 1.0 };
        let device = Default::default();
        let d = Distilled { per_step: 2, size: 8, classes: 2, epochs: 3, images: vec![0.0; 20 * 64], labels: vec![0.5; 20 * 2], lrs: vec![0.02; 30], classes_of: (0..20).map(|i| i % 2).collect() };
        let mut r = rng(0, Stream::Baseline);
        for (objective, ordinary) in [(Objective::Matching, true), (Objective::Unrolled, false)] {
            let config = Config { objective, image_size: 8, recipe_epochs: 7, recipe_lr: 0.004, ..Config::default() };
            let programs = [distilled_program::<NdArray>(&d, &config, &device), random_subset_program::<NdArray>(&train, &config, norm, 0.1, &mut r, &device)];
            for p in programs {
                match p {
                    Program::Ordinary { images, recipe, .. } => {
                        assert!(ordinary, "{objective:?} trained by an ordinary loop");
                        assert_eq!(recipe, Recipe { epochs: 7, lr: 0.004, batch: 256, augment: true });
                        assert_eq!(images.dims()[0], 20);
                    }
                    Program::Replay { steps, epochs, .. } => {
                        assert!(!ordinary, "{objective:?} replayed");
                        assert_eq!((steps.len(), epochs), (10, 3));
                    }
                }
            }
        }
    }
}
