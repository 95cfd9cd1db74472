//! Evaluation the way the reference does it: the learned step sequence replayed with the learned
//! learning rates on fresh networks, against two baselines of the same budget.

use burn_autodiff::Autodiff;
use burn_tensor::{backend::Backend, Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamConfig};
use crate::config::Config;
use crate::data::{Dataset, Normalization};
use crate::distill::Distilled;
use crate::error::{Error, Result};
use crate::net::{Network, Params};
use crate::once::OnceOps;
use crate::rng::{permutation, rng, Stream};
use crate::loss::label_targets;
use crate::metrics::{imbalanced, Metrics, NetOutput};
use crate::train::{logits, loss_grads, replay, Step};

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

/// The distilled steps and learning rates as tensors.
pub fn distilled_program<B: Backend>(d: &Distilled, config: &Config, device: &B::Device) -> (Vec<Step<B>>, Tensor<B, 1>) {
    let n = d.len();
    let images = Tensor::<B, 4>::from_data(TensorData::new(d.images.clone(), [n, 1, d.size, d.size]), device);
    let labels = Tensor::<B, 2>::from_data(TensorData::new(d.labels.clone(), [n, d.classes]), device);
    let targets = label_targets(labels, config.label_mode);
    let steps = (0..d.steps())
        .map(|s| (images.clone().narrow(0, s * d.per_step, d.per_step), targets.clone().narrow(0, s * d.per_step, d.per_step)))
        .collect();
    let lrs = Tensor::from_data(TensorData::new(d.lrs.clone(), [d.lrs.len()]), device);
    (steps, lrs)
}

/// Accuracy of the distilled program replayed on `config.eval_nets` fresh networks, or on the
/// fixed initial network when the data were distilled for one.
pub async fn evaluate_distilled<B: Backend>(
    config: &Config,
    d: &Distilled,
    fixed_init: Option<&Params<B>>,
    test: &TestSet<B>,
    device: &B::Device,
) -> Result<Accuracy> {
    let net = Network::new(config, d.classes)?;
    let (steps, lrs) = distilled_program::<B>(d, config, device);
    let mut r = rng(config.seed, Stream::Eval);
    let nets = if fixed_init.is_some() { 1 } else { config.eval_nets };
    let mut outputs = Vec::new();
    for _ in 0..nets {
        let init = fixed_init.cloned().unwrap_or_else(|| net.init(&mut r, device));
        let trained = replay(&net, init, &steps, &lrs, d.epochs);
        outputs.push(test.output(&net, &trained).await?);
    }
    Ok(test.metrics(&outputs))
}

/// A random real subset laid out like the distilled steps: for every step, `per_class` images of
/// each class, with one-hot labels.
pub(crate) fn random_subset_program<B: Backend>(
    train: &Dataset,
    config: &Config,
    norm: Normalization,
    r: &mut ChaCha8Rng,
    device: &B::Device,
) -> Vec<Step<B>> {
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
    (0..config.steps)
        .map(|s| (x.clone().narrow(0, s * per_step, per_step), y.clone().narrow(0, s * per_step, per_step)))
        .collect()
}

/// Scores of `nets` networks, each trained by replaying a fresh random subset with the fixed
/// learning rate `lr`, on `on`.
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
    let lrs = Tensor::<B, 1>::full([config.inner_steps()], lr, device);
    let mut outputs = Vec::new();
    for _ in 0..nets {
        let steps = random_subset_program::<B>(train, config, norm, r, device);
        let trained = replay(net, net.init(r, device), &steps, &lrs, config.epochs);
        outputs.push(on.output(net, &trained).await?);
    }
    Ok(outputs)
}

/// The random subset's fixed learning rate: the one of `config.baseline_lrs` that scores best
/// on the training data (three tuning networks each).
pub async fn pick_subset_lr<B: Backend>(config: &Config, train: &Dataset, norm: Normalization, device: &B::Device) -> Result<f64> {
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
    let adam = AdamConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    let mut r = rng(config.seed, Stream::Baseline);
    let batch = 64.min(train.len());
    let mut outputs = Vec::new();
    for _ in 0..config.full_data_nets {
        let mut params = net.init::<B>(&mut r, device);
        let mut moments: Vec<Adam<B, 1>> = params.iter().map(Adam::new).collect();
        for _ in 0..config.full_data_epochs {
            let order = permutation(&mut r, train.len());
            for chunk in order.chunks_exact(batch) {
                let idx = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(chunk.iter().map(|&i| i as i64).collect::<Vec<_>>(), [batch]),
                    device,
                );
                let (xb, yb) = (x.clone().select(0, idx.clone()), y.clone().select(0, idx));
                let (_, grads) = loss_grads::<Autodiff<B>>(&net, &params, xb, yb, Some(&OnceOps::plain()));
                params = params
                    .into_iter()
                    .zip(grads)
                    .zip(moments.iter_mut())
                    .map(|((p, g), m)| m.step(adam, 1e-3, p, g))
                    .collect();
            }
        }
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
