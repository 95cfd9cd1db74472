//! The distillation itself: learnable images, labels and learning rates, one outer iteration at a
//! time. Two objectives side by side: the exact hyper-gradient through the unrolled inner SGD
//! steps (here; in `private`, the differentially private one) and distribution matching
//! (`matching`). [`Distiller`] drives either, so the pipeline, the page's workers and the CLI
//! drive both the same way.

pub mod matching;
mod matching_private;
mod private;

pub use private::{Chunk, ChunkNorms, PrivatePlan};

use burn_autodiff::Autodiff;
use burn_tensor::{activation::softplus, backend::Backend, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::adam::{Adam, AdamConfig};
use crate::augment;
use crate::checkpoint::{Checkpoint, HostTensor, Learned, SessionMeta, SessionTensors, FORMAT as SESSION_FORMAT};
use crate::config::{Config, ImageInit, Objective};
use crate::engine::Engine;
use crate::data::{Dataset, Normalization};
use crate::error::{Error, Result};
use crate::net::{Network, Params};
use crate::rng::{normal, permutation, rng, Stream};
use rand::RngCore;
use crate::loss::{label_targets, one_hot, soft_cross_entropy, weighted_rows};
use crate::train::{indices, loss_grads, sgd_update};

type A<B> = Autodiff<B>;
type AA<B> = Autodiff<Autodiff<B>>;

/// The learnable distilled data, on the backend.
#[derive(Clone, Debug)]
pub struct DistilledTensors<B: Backend> {
    /// `[steps × per_step, 1, size, size]`, normalised space, step after step.
    pub images: Tensor<B, 4>,
    /// `[steps × per_step, classes]` label values.
    pub labels: Tensor<B, 2>,
    /// `[steps × epochs]` raw learning rates; the rates are their softplus.
    pub raw_lrs: Tensor<B, 1>,
}

/// The distilled data read back to the host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distilled {
    /// Images per step.
    pub per_step: usize,
    /// Side of every image.
    pub size: usize,
    /// Number of classes.
    pub classes: usize,
    /// How often the steps are replayed.
    pub epochs: usize,
    /// `n × size × size` values in normalised space.
    pub images: Vec<f32>,
    /// `n × classes` label values as learned (before any softmax of the label mode).
    pub labels: Vec<f32>,
    /// The `steps × epochs` learning rates (after softplus).
    pub lrs: Vec<f32>,
    /// The class each image was initialised for.
    pub classes_of: Vec<usize>,
}

impl Distilled {
    /// Number of distilled images.
    pub fn len(&self) -> usize {
        self.classes_of.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.classes_of.is_empty()
    }

    /// Number of distilled steps.
    pub fn steps(&self) -> usize {
        self.len() / self.per_step
    }
}

/// What one outer iteration reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Iterations done so far (this one included).
    pub iteration: usize,
    /// Outer epoch (pass over the real data) of this iteration.
    pub epoch: usize,
    /// Cross-entropy of the adapted network on the real minibatch; `None` in a private run,
    /// where it is the members' loss without noise, outside the guarantee: never shown, so that
    /// no decision (pausing, cancelling) can follow from it.
    pub loss: Option<f32>,
    /// Sampled patients of a private iteration left out because their gradient was not finite
    /// (a local notice about the members: never in the archive).
    #[serde(default)]
    pub dropped_patients: usize,
    /// The outer (Adam) learning rate used.
    pub outer_lr: f64,
    /// The inner learning rates after this iteration's update.
    pub lrs: Vec<f32>,
}

/// The hyper-gradient of one outer iteration.
pub struct MetaGradient<B: Backend> {
    /// The outer loss.
    pub loss: Tensor<B, 1>,
    /// d loss / d images.
    pub images: Tensor<B, 4>,
    /// d loss / d labels (zero when labels are not learned).
    pub labels: Tensor<B, 2>,
    /// d loss / d raw learning rates.
    pub raw_lrs: Tensor<B, 1>,
}

impl<B: Backend> MetaGradient<B> {
    fn plus(self, o: Self) -> Self {
        Self { loss: self.loss + o.loss, images: self.images + o.images, labels: self.labels + o.labels, raw_lrs: self.raw_lrs + o.raw_lrs }
    }

    fn scaled(self, f: f64) -> Self {
        Self { loss: self.loss * f, images: self.images * f, labels: self.labels * f, raw_lrs: self.raw_lrs * f }
    }

    /// The mean of the networks' meta-gradients, summed in their order (one is returned as is).
    pub fn mean(grads: Vec<Self>) -> Self {
        let n = grads.len();
        let sum = grads.into_iter().reduce(Self::plus).expect("at least one network");
        if n > 1 { sum.scaled(1.0 / n as f64) } else { sum }
    }
}

/// The inner steps unrolled from one network's initial weights: the learnable tensors as
/// autodiff leaves and the final weights θ_T that depend on them.
struct Unrolled<B: Backend> {
    images: Tensor<A<B>, 4>,
    labels: Tensor<A<B>, 2>,
    raw_lrs: Tensor<A<B>, 1>,
    params: Params<A<B>>,
}

/// What one outer iteration's hyper-gradient is taken over: the initial weights of each network
/// in the order they were sampled, and the real minibatch they all adapt to.
pub struct Plan<B: Backend> {
    /// One set of initial weights per network.
    pub inits: Vec<Params<B>>,
    /// Indices of the real minibatch in the training split.
    pub batch: Vec<usize>,
}

/// A distillation in progress.
pub struct Distiller<B: Backend> {
    config: Config,
    net: Network,
    device: B::Device,
    train_x: Tensor<B, 4>,
    train_y: Tensor<B, 2>,
    train_len: usize,
    train_classes: Vec<String>,
    train_counts: Vec<usize>,
    fingerprint: String,
    state: DistilledTensors<B>,
    classes_of: Vec<usize>,
    adam: (Adam<B, 4>, Adam<B, 2>, Adam<B, 1>),
    fixed_init: Option<Params<B>>,
    rng: ChaCha8Rng,
    order: Vec<usize>,
    iteration: usize,
    /// Differential privacy's plan, patients and secret randomness, when it is on.
    private: Option<private::Private<B>>,
    /// The matching objective's embedding network and classes, when it is the objective.
    matching: Option<Matching<B>>,
    /// The images' SGD velocity (matching; kept as the images' first moment in a session).
    velocity: Tensor<B, 4>,
}

/// What a matching iteration draws from: the embedding network's shape, the training images of
/// each class, and the distilled images of each class.
struct Matching<B: Backend> {
    embedder: matching::Embedder,
    real: Vec<Vec<usize>>,
    members: Vec<Vec<usize>>,
    /// The private form's plan, patients and releases, when privacy is on.
    private: Option<matching_private::PrivateMatching<B>>,
    /// The training labels (private releases need them per image); emptied with the members.
    labels: Vec<usize>,
}

impl<B: Backend> Distiller<B> {
    /// Prepares a run on `train` (normalised with `norm`) on `device`, computed the engine's
    /// default way.
    pub fn new(config: Config, train: &Dataset, norm: Normalization, device: &B::Device) -> Result<Self> {
        Self::with_engine(config, Engine::default(), train, norm, device)
    }

    /// [`Distiller::new`], computed as `engine` says (the same values up to float rounding).
    pub fn with_engine(config: Config, engine: Engine, train: &Dataset, norm: Normalization, device: &B::Device) -> Result<Self> {
        config.validate()?;
        train.check_classes(1)?;
        if train.size != config.image_size {
            return Err(Error::Data(format!(
                "images are {0}×{0} but the configuration asks for {1}×{1}",
                train.size, config.image_size
            )));
        }
        let classes = train.num_classes();
        let net = Network::with_engine(&config, classes, engine)?;
        let all: Vec<usize> = (0..train.len()).collect();
        let (train_x, train_y) = train.tensors::<B>(&all, norm, device);
        let train_y = if config.balance_classes { weighted_rows(train_y, &train.class_weights()) } else { train_y };

        let per_step = config.images_per_step(classes);
        let n = per_step * config.steps;
        let classes_of = initial_classes(n, classes);
        let size = config.image_size;
        let mut init_rng = rng(config.seed, Stream::DistillInit);
        let pixels = match config.init {
            ImageInit::Noise => normal(&mut init_rng, n * size * size, 1.0),
            ImageInit::Real => {
                let by_class = train.indices_by_class();
                let perms: Vec<Vec<usize>> = by_class.iter().map(|idx| permutation(&mut init_rng, idx.len())).collect();
                let mut used = vec![0; classes];
                let mut pixels = Vec::with_capacity(n * size * size);
                for &c in &classes_of {
                    let k = used[c] % by_class[c].len();
                    used[c] += 1;
                    let image = train.image(by_class[c][perms[c][k]]);
                    pixels.extend(image.iter().map(|&v| norm.normalise(v)));
                }
                pixels
            }
        };
        let images = Tensor::from_data(TensorData::new(pixels, [n, 1, size, size]), device);
        let labels = one_hot(&classes_of, classes, device);
        let raw_lrs = Tensor::<B, 1>::full([config.inner_steps()], config.raw_lr_init(), device);
        let state = DistilledTensors { images, labels, raw_lrs };
        let adam = (Adam::new(&state.images), Adam::new(&state.labels), Adam::new(&state.raw_lrs));
        let mut rng_train = rng(config.seed, Stream::Training);
        let fixed_init = config.known_init.then(|| net.init::<B>(&mut rng_train, device));
        let matching_objective = config.objective == Objective::Matching;
        let private = match &config.privacy {
            Some(_) if !matching_objective => Some(private::Private::new(&config, train, norm)?),
            _ => None,
        };
        let matching = if matching_objective {
            let private = match &config.privacy {
                Some(_) => Some(matching_private::PrivateMatching::new(&config, train, norm)?),
                None => None,
            };
            Some(Matching {
                embedder: matching::Embedder { width: config.embed_width, depth: config.embed_depth },
                real: train.indices_by_class(),
                members: (0..classes).map(|c| (0..n).filter(|&i| classes_of[i] == c).collect()).collect(),
                private,
                labels: train.labels.clone(),
            })
        } else {
            None
        };
        let velocity = state.images.zeros_like();
        Ok(Self {
            net,
            device: device.clone(),
            train_x,
            train_y,
            train_len: train.len(),
            train_classes: train.classes.clone(),
            train_counts: train.class_counts(),
            fingerprint: train.fingerprint(),
            state,
            classes_of,
            adam,
            fixed_init,
            rng: rng_train,
            order: Vec::new(),
            iteration: 0,
            private,
            matching,
            velocity,
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The network the data is distilled for.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Outer iterations done.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// Images in the training split.
    pub fn train_len(&self) -> usize {
        self.train_len
    }

    /// Real minibatch size (the configured one capped by the data).
    pub fn batch_size(&self) -> usize {
        self.config.batch_size.min(self.train_len)
    }

    /// Outer iterations per pass over the real data.
    pub fn iterations_per_epoch(&self) -> usize {
        (self.train_len / self.batch_size()).max(1)
    }

    /// Outer iterations of the whole run (with differential privacy, fixed before the run).
    pub fn total_iterations(&self) -> usize {
        if let Some(p) = &self.private {
            return p.plan.iterations;
        }
        if let Some(start) = self.label_start() {
            return start + self.config.label_iterations;
        }
        let all = self.config.epochs_outer * self.iterations_per_epoch();
        self.config.max_iterations.map_or(all, |m| m.min(all))
    }

    /// A matching run's first iteration that learns labels on top (`label_iterations`), by the
    /// unrolled objective: after the releases and the matching iterations. `None` for an
    /// unrolled run.
    pub fn label_start(&self) -> Option<usize> {
        let m = self.matching.as_ref()?;
        Some(m.private.as_ref().map_or(0, |p| p.plan.iterations) + self.config.matching_iterations())
    }

    /// Whether the next iteration matches embeddings (a matching run before its label iterations).
    fn matches(&self) -> bool {
        self.label_start().is_some_and(|s| self.iteration < s)
    }

    /// Whether the images' optimiser is matching's SGD with momentum, whose velocity a session
    /// keeps (up to the first label iteration, which starts the images' Adam afresh).
    fn keeps_velocity(&self) -> bool {
        self.label_start().is_some_and(|s| self.iteration <= s)
    }

    /// The outer learning rate at `iteration` (step decay every `decay_iterations` iterations, or
    /// every `decay_epochs` passes when set).
    pub fn outer_lr(&self, iteration: usize) -> f64 {
        let period = self.config.decay_period(self.iterations_per_epoch());
        self.config.outer_lr * self.config.decay_factor.powi((iteration / period) as i32)
    }

    /// The current learnable tensors.
    pub fn state(&self) -> &DistilledTensors<B> {
        &self.state
    }

    /// Replaces the learnable tensors (for tests and for resuming a saved session).
    pub fn set_state(&mut self, state: DistilledTensors<B>) {
        self.state = state;
    }

    /// The fixed initial weights when `known_init` is set.
    pub fn fixed_init(&self) -> Option<&Params<B>> {
        self.fixed_init.as_ref()
    }

    /// The fixed initial weights read back to the host, when `known_init` is set.
    pub async fn fixed_init_values(&self) -> Result<Option<Vec<Vec<f32>>>> {
        let Some(params) = &self.fixed_init else { return Ok(None) };
        let mut values = Vec::with_capacity(params.len());
        for p in params {
            values.push(read_f32(p.clone()).await?);
        }
        Ok(Some(values))
    }

    /// Weights the next iteration starts from: the fixed ones, or fresh ones.
    pub fn sample_init(&mut self) -> Params<B> {
        match &self.fixed_init {
            Some(p) => p.clone(),
            None => self.net.init(&mut self.rng, &self.device),
        }
    }

    /// Indices of the next real minibatch (a new shuffle every pass, the remainder dropped).
    pub fn next_batch(&mut self) -> Vec<usize> {
        let b = self.batch_size();
        if self.order.len() < b {
            self.order = permutation(&mut self.rng, self.train_len);
            self.order.truncate(self.iterations_per_epoch() * b);
        }
        self.order.drain(..b).collect()
    }

    /// The outer loss after unrolling the inner steps from `init`, on the real images `batch`, and
    /// its exact gradient with respect to images, labels and raw learning rates.
    pub fn meta_gradient(&self, init: &Params<B>, batch: &[usize]) -> MetaGradient<B> {
        let u = self.unroll(init);
        let (real_x, real_y) = self.real_batch(batch);
        let loss = soft_cross_entropy(self.net.forward_ad(&u.params, Tensor::from_inner(real_x)), Tensor::from_inner(real_y));
        self.gradient_of(&u, loss)
    }

    /// The gradient of ⟨v, θ_T⟩ with respect to the images, labels and raw learning rates, θ_T the
    /// weights reached from `init` (as [`Distiller::final_weights`]) and `v` a constant vector
    /// per parameter: the surrogate through which a private iteration back-propagates its noisy
    /// release (for tests that rebuild that iteration by hand). Its loss is ⟨v, θ_T⟩.
    pub fn weights_vjp(&self, init: &Params<B>, v: &[Tensor<B, 1>]) -> MetaGradient<B> {
        let u = self.unroll(init);
        let surrogate = u.params.iter().zip(v).map(|(theta, v)| (theta.clone() * Tensor::<A<B>, 1>::from_inner(v.clone())).sum()).reduce(|a, b| a + b).expect("parameters");
        self.gradient_of(&u, surrogate)
    }

    /// The weights a network reaches from `init` by the inner steps on the current distilled data.
    pub fn final_weights(&self, init: &Params<B>) -> Params<B> {
        self.unroll(init).params.into_iter().map(|p| p.inner()).collect()
    }

    /// The inner steps unrolled from `init` on the distilled data, differentiable with respect to
    /// the images, labels and raw learning rates.
    fn unroll(&self, init: &Params<B>) -> Unrolled<B> {
        let cfg = &self.config;
        let images = Tensor::<A<B>, 4>::from_inner(self.state.images.clone()).require_grad();
        let labels = Tensor::<A<B>, 2>::from_inner(self.state.labels.clone()).set_require_grad(cfg.learn_labels);
        let raw_lrs = Tensor::<A<B>, 1>::from_inner(self.state.raw_lrs.clone()).require_grad();
        let lrs = softplus(raw_lrs.clone(), 1.0);
        let targets = label_targets(labels.clone(), cfg.label_mode);
        let per_step = cfg.images_per_step(self.net.classes());

        let mut params: Params<A<B>> = init.iter().map(|p| Tensor::from_inner(p.clone())).collect();
        let ops = self.net.once_ops::<B>();
        let mut i = 0;
        for _ in 0..cfg.epochs {
            for s in 0..cfg.steps {
                let x = images.clone().narrow(0, s * per_step, per_step);
                let y = targets.clone().narrow(0, s * per_step, per_step);
                let (_, g) = loss_grads::<AA<B>>(&self.net, &params, x, y, ops.as_ref());
                params = sgd_update(params, g, lrs.clone().narrow(0, i, 1));
                i += 1;
            }
        }
        Unrolled { images, labels, raw_lrs, params }
    }

    /// The real images `batch` of the training split and their targets.
    fn real_batch(&self, batch: &[usize]) -> (Tensor<B, 4>, Tensor<B, 2>) {
        let idx = indices::<B>(batch, &self.device);
        (self.train_x.clone().select(0, idx.clone()), self.train_y.clone().select(0, idx))
    }

    /// The gradient of `loss`, a function of the unrolled weights `u`, with respect to the
    /// learnable tensors.
    fn gradient_of(&self, u: &Unrolled<B>, loss: Tensor<A<B>, 1>) -> MetaGradient<B> {
        let grads = loss.backward();
        MetaGradient {
            images: u.images.grad(&grads).unwrap_or_else(|| self.state.images.zeros_like()),
            labels: u.labels.grad(&grads).unwrap_or_else(|| self.state.labels.zeros_like()),
            raw_lrs: u.raw_lrs.grad(&grads).unwrap_or_else(|| self.state.raw_lrs.zeros_like()),
            loss: loss.inner(),
        }
    }

    /// The next iteration's networks and minibatch: an initial network, a real minibatch, then the
    /// other `nets_per_iteration − 1` networks (the order the random stream is drawn in). With a
    /// fixed initialisation every network is the same one, so the plan holds one.
    pub fn plan(&mut self) -> Plan<B> {
        let first = self.sample_init();
        let batch = self.next_batch();
        let mut inits = vec![first];
        for _ in 1..self.networks_per_iteration() {
            inits.push(self.sample_init());
        }
        Plan { inits, batch }
    }

    /// The next iteration's hyper-gradient: the mean of the [`Distiller::meta_gradient`]s of
    /// [`Distiller::plan`]'s networks.
    /// With differential privacy on, the private hyper-gradient instead (`private`).
    /// With the matching objective, the matching loss's gradient instead.
    pub fn hypergradient(&mut self) -> MetaGradient<B> {
        if self.private.is_some() {
            return self.private_hypergradient();
        }
        if self.matches() {
            return self.matching_gradient();
        }
        // The unrolled objective, or a matching run's label iterations.
        let plan = self.plan();
        MetaGradient::mean(plan.inits.iter().map(|init| self.meta_gradient(init, &plan.batch)).collect())
    }

    /// One matching iteration: a fresh embedding network, then a sample of at most
    /// `real_per_class` training images of each class; the loss Σ_c ‖mean real embedding −
    /// mean distilled embedding‖² and its gradient with respect to the images (labels and
    /// learning rates: zero).
    fn matching_gradient(&mut self) -> MetaGradient<B> {
        let zero = |s: &Self| MetaGradient { loss: Tensor::zeros([1], &s.device), images: s.state.images.zeros_like(), labels: s.state.labels.zeros_like(), raw_lrs: s.state.raw_lrs.zeros_like() };
        let m = self.matching.as_ref().expect("the matching objective");
        let e = m.embedder;
        let stream = self.rng.get_word_pos();
        let params = e.init::<B>(&mut self.rng, &self.device);
        let (loss, images) = match &m.private {
            // A private run's first iterations draw its releases; the images wait.
            Some(p) if !p.drawn() => {
                let classes = self.net.classes();
                let m = self.matching.as_mut().expect("the matching objective");
                let p = m.private.as_mut().expect("private");
                let aug = matching_private::release_transform(&self.config, &mut self.rng);
                p.draw(&e, params, aug, stream, &self.train_x, &m.labels, classes);
                if p.drawn() {
                    self.drop_members();
                }
                return zero(self);
            }
            // Then each iteration matches one release, drawn at random (post-processing).
            Some(p) => {
                let r = (self.rng.next_u64() % p.releases.len() as u64) as usize;
                let release = &p.releases[r];
                let aug: Option<Vec<Vec<augment::Transform>>> = release.aug.map(|t| vec![vec![t]; m.members.len()]);
                let (loss, g) = matching::image_gradient(&e, &release.params, &self.state.images, &m.members, &release.targets(), true, aug.as_deref());
                // Unit embeddings make the loss and its gradient about ‖φ‖² times smaller than
                // the plain objective's (‖φ‖² ≈ 0.3·d: 82–87 for d = 288 on the demo); d/4, a
                // public constant, gives the images' step back the plain objective's scale.
                let scale = e.dims(self.config.image_size) as f64 / 4.0;
                (loss * scale, g * scale)
            }
            None => {
                let mut takes = Vec::with_capacity(m.real.len());
                for idx in &m.real {
                    takes.push(permutation(&mut self.rng, idx.len()).into_iter().take(self.config.real_per_class).map(|k| idx[k]).collect::<Vec<_>>());
                }
                // DSA: image i of a class's real sample and of its distilled images get the same
                // transform (Siamese), a fresh draw for each class.
                let size = self.config.image_size;
                let aug: Option<Vec<Vec<augment::Transform>>> =
                    self.config.dsa.then(|| takes.iter().zip(&m.members).map(|(t, s)| augment::draw(&mut self.rng, t.len().max(s.len()), size)).collect());
                let real: Vec<Tensor<B, 4>> = takes
                    .iter()
                    .enumerate()
                    .map(|(c, take)| {
                        let x = self.real_batch(take).0;
                        match &aug {
                            Some(a) => augment::apply(x, &a[c][..take.len()]),
                            None => x,
                        }
                    })
                    .collect();
                let targets = matching::class_means(&e, &params, &real);
                matching::image_gradient(&e, &params, &self.state.images, &m.members, &targets, false, aug.as_deref())
            }
        };
        MetaGradient { loss, images, ..zero(self) }
    }

    /// Forgets the training images, their labels and classes (private matching, once its
    /// releases are drawn): one black image stands in for the pixels.
    fn drop_members(&mut self) {
        let size = self.config.image_size;
        self.train_x = Tensor::zeros([1, 1, size, size], &self.device);
        self.train_y = Tensor::zeros([1, self.net.classes()], &self.device);
        if let Some(m) = &mut self.matching {
            m.real = Vec::new();
            m.labels = Vec::new();
        }
    }

    /// Private matching's plan, patients and releases, when that is the run.
    fn private_matching(&self) -> Option<&matching_private::PrivateMatching<B>> {
        self.matching.as_ref()?.private.as_ref()
    }

    /// Private matching's release `r` (its noisy per-class sums and counts, flat), once drawn.
    pub fn matching_release(&self, r: usize) -> Option<Vec<f32>> {
        self.private_matching()?.releases.get(r).and_then(|x| x.noisy.clone().reshape([-1]).into_data().to_vec::<f32>().ok())
    }

    /// Whether the run holds no member image any more (private matching after its releases).
    pub fn members_dropped(&self) -> bool {
        self.private_matching().is_some_and(|p| p.drawn()) && self.train_x.dims()[0] == 1
    }

    /// Whether an iteration's loss is the members' own, without noise (never shown then): the
    /// unrolled private run's, and a private matching run's while it draws its releases.
    fn loss_is_private(&self) -> bool {
        // Called before the iteration counts itself: iterations up to the plan's releases draw.
        self.private.is_some() || self.private_matching().is_some_and(|p| self.iteration < p.plan.iterations)
    }

    /// Networks sampled per iteration: `nets_per_iteration`, or 1 with a fixed initialisation.
    fn networks_per_iteration(&self) -> usize {
        if self.fixed_init.is_some() { 1 } else { self.config.nets_per_iteration }
    }

    /// One outer iteration: fresh weights (`nets_per_iteration` of them), a real minibatch, the
    /// hyper-gradient (averaged over the networks), an Adam step. A NaN or infinite loss or
    /// gradient leaves the state as it was and returns [`Error::Diverged`]. Reads back from the
    /// device only asynchronously.
    pub async fn step(&mut self) -> Result<StepReport> {
        let g = self.hypergradient();
        self.apply(g).await
    }

    /// The Adam step of one outer iteration, given its hyper-gradient (from
    /// [`Distiller::hypergradient`], or the mean of the meta-gradients of a [`Distiller::plan`]'s
    /// networks computed elsewhere); the checks and the report are [`Distiller::step`]'s.
    pub async fn apply(&mut self, g: MetaGradient<B>) -> Result<StepReport> {
        let sq = |t: Tensor<B, 1>| t.clone().mul(t).sum();
        let dropped = self.take_dropped().unwrap_or_else(|| Tensor::zeros([1], &self.device));
        let checks = Tensor::cat(
            vec![
                g.loss.clone(),
                sq(g.images.clone().reshape([-1])),
                sq(g.labels.clone().reshape([-1])),
                sq(g.raw_lrs.clone()),
                dropped,
            ],
            0,
        );
        let values = read_f32(checks).await?;
        let iteration = self.iteration + 1;
        let names = ["the outer loss", "the image gradient", "the label gradient", "the learning-rate gradient"];
        // With differential privacy no decision looks at the real loss, only at the noisy gradient.
        let private_loss = self.loss_is_private();
        let first = usize::from(private_loss);
        if let Some(k) = values[..4].iter().enumerate().skip(first).find(|(_, v)| !v.is_finite()).map(|(k, _)| k) {
            return Err(Error::Diverged {
                iteration,
                last_good: self.iteration,
                cause: format!("{} is {}", names[k], values[k]),
            });
        }
        let lr = if self.matches() {
            // SGD with momentum 0.5, as the paper's code: the images only.
            let lr = self.config.image_lr;
            self.velocity = self.velocity.clone() * 0.5 + g.images;
            self.state.images = self.state.images.clone() - self.velocity.clone() * lr;
            lr
        } else {
            // A matching run's label iterations: the unrolled objective's Adam and schedule,
            // counted from their start; the images move only with `label_images`, from an Adam
            // of their own (never stepped during matching, whose momentum is SGD's).
            let start = self.label_start().unwrap_or(0);
            let lr = self.outer_lr(self.iteration - start);
            let adam = AdamConfig { beta1: self.config.beta1, beta2: self.config.beta2, eps: 1e-8 };
            let s = &mut self.state;
            if self.matching.is_none() || self.config.label_images {
                s.images = self.adam.0.step(adam, lr, s.images.clone(), g.images);
            }
            if self.config.learn_labels {
                s.labels = self.adam.1.step(adam, lr, s.labels.clone(), g.labels);
            }
            s.raw_lrs = self.adam.2.step(adam, lr, s.raw_lrs.clone(), g.raw_lrs);
            lr
        };
        self.iteration = iteration;
        Ok(StepReport {
            iteration,
            epoch: (iteration - 1) / self.iterations_per_epoch(),
            loss: (!private_loss).then_some(values[0]),
            dropped_patients: values[4] as usize,
            outer_lr: lr,
            lrs: read_f32(softplus(self.state.raw_lrs.clone(), 1.0)).await?,
        })
    }

    /// The whole state read back to the host, to be saved and resumed later (see
    /// [`Distiller::restore`]).
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        async fn host<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Result<HostTensor> {
            Ok(HostTensor { shape: t.dims().to_vec(), values: read_f32(t.clone().reshape([-1])).await? })
        }
        let s = &self.state;
        let (a, b, c) = (self.adam.0.moments(), self.adam.1.moments(), self.adam.2.moments());
        // A matching run's image optimiser is SGD with momentum: its velocity is the first moment.
        // Until its label iterations start, that is; then Adam's.
        let image_m = if self.keeps_velocity() { &self.velocity } else { a.0 };
        let tensors = SessionTensors {
            images: Learned { value: host(&s.images).await?, m: host(image_m).await?, v: host(a.1).await? },
            labels: Learned { value: host(&s.labels).await?, m: host(b.0).await?, v: host(b.1).await? },
            raw_lrs: Learned { value: host(&s.raw_lrs).await?, m: host(c.0).await?, v: host(c.1).await? },
            releases: match self.private_matching() {
                Some(p) => p.releases_host().await?,
                None => None,
            },
        };
        let meta = SessionMeta {
            format: SESSION_FORMAT.into(),
            crate_version: env!("CARGO_PKG_VERSION").into(),
            config: self.config.clone(),
            classes: self.train_classes.clone(),
            train_counts: self.train_counts.clone(),
            data_fingerprint: self.fingerprint.clone(),
            iteration: self.iteration,
            rng_word_pos: self.rng.get_word_pos().to_string(),
            order: self.order.clone(),
            adam_steps: [a.2, b.2, c.2],
            privacy: match (&self.private, self.private_matching()) {
                (Some(p), _) => Some(p.session_record(self.iteration)),
                (None, Some(p)) => Some(p.session_record(self.iteration)),
                (None, None) => None,
            },
        };
        Ok(Checkpoint { meta, tensors })
    }

    /// Continues from a saved state. The distiller must have been made with the same
    /// configuration on the same training split; the message says what differs otherwise.
    pub fn restore(&mut self, c: &Checkpoint) -> Result<()> {
        let m = &c.meta;
        if m.config != self.config {
            return Err(Error::Session("the session was saved with other settings; load its settings first".into()));
        }
        if m.classes != self.train_classes || m.train_counts != self.train_counts || m.data_fingerprint != self.fingerprint {
            return Err(Error::Session(format!(
                "the session was distilled from other data (classes [{}], {} training images); load the same files or folder first",
                m.classes.join(", "),
                m.train_counts.iter().sum::<usize>()
            )));
        }
        if let Some(p) = &mut self.private {
            p.resume(m.privacy.as_ref())?;
        }
        let word_pos: u128 = m.rng_word_pos.parse().map_err(|_| Error::Session("bad random-stream position".into()))?;
        if m.order.iter().any(|&i| i >= self.train_len) || m.iteration > self.total_iterations() {
            return Err(Error::Session("progress out of range for this data".into()));
        }
        let s = &self.state;
        let (si, sl, sr) = (s.images.dims().to_vec(), s.labels.dims().to_vec(), s.raw_lrs.dims().to_vec());
        let x = &c.tensors;
        for (name, l, shape) in [("images", &x.images, &si), ("labels", &x.labels, &sl), ("raw_lrs", &x.raw_lrs, &sr)] {
            for t in [&l.value, &l.m, &l.v] {
                if &t.shape != shape || t.values.len() != shape.iter().product::<usize>() {
                    return Err(Error::Session(format!("tensor {name} or its moments have the wrong shape for these settings")));
                }
            }
        }
        let classes = self.net.classes();
        if let Some(matching) = &mut self.matching {
            if let Some(p) = &mut matching.private {
                p.resume(m.privacy.as_ref(), x.releases.as_ref(), m.iteration, &matching.embedder, &self.config, classes, &self.rng, &self.device)?;
                if p.drawn() {
                    self.drop_members();
                }
            }
        }
        fn up<B: Backend, const D: usize>(t: &HostTensor, device: &B::Device) -> Tensor<B, D> {
            Tensor::from_data(TensorData::new(t.values.clone(), t.shape.clone()), device)
        }
        fn adam<B: Backend, const D: usize>(l: &Learned, steps: i32, device: &B::Device) -> Adam<B, D> {
            Adam::from_moments(up(&l.m, device), up(&l.v, device), steps)
        }
        let dev = &self.device;
        self.state = DistilledTensors { images: up(&x.images.value, dev), labels: up(&x.labels.value, dev), raw_lrs: up(&x.raw_lrs.value, dev) };
        self.adam = (adam(&x.images, m.adam_steps[0], dev), adam(&x.labels, m.adam_steps[1], dev), adam(&x.raw_lrs, m.adam_steps[2], dev));
        self.rng.set_word_pos(word_pos);
        self.order = m.order.clone();
        self.iteration = m.iteration;
        if self.keeps_velocity() {
            // The images' first moment is matching's velocity: their Adam has not started.
            self.velocity = up(&x.images.m, dev);
            self.adam.0 = Adam::new(&self.state.images);
        }
        Ok(())
    }

    /// The distilled data, read back to the host.
    pub async fn distilled(&self) -> Result<Distilled> {
        let s = &self.state;
        let images = read_f32(s.images.clone().reshape([-1])).await?;
        let labels = read_f32(s.labels.clone().reshape([-1])).await?;
        self.distilled_with(images, labels).await
    }

    /// The distilled data of a checkpoint just taken from this distiller: its images and labels,
    /// and the learning rates (the only values read back from the device).
    pub async fn distilled_of(&self, c: &Checkpoint) -> Result<Distilled> {
        self.distilled_with(c.tensors.images.value.values.clone(), c.tensors.labels.value.values.clone()).await
    }

    async fn distilled_with(&self, images: Vec<f32>, labels: Vec<f32>) -> Result<Distilled> {
        Ok(Distilled {
            per_step: self.config.images_per_step(self.net.classes()),
            size: self.config.image_size,
            classes: self.net.classes(),
            epochs: self.config.epochs,
            images,
            labels,
            lrs: read_f32(softplus(self.state.raw_lrs.clone(), 1.0)).await?,
            classes_of: self.classes_of.clone(),
        })
    }
}

/// The class each of `n` distilled images starts as: every step holds the classes in order,
/// `images_per_class_per_step` times.
pub fn initial_classes(n: usize, classes: usize) -> Vec<usize> {
    (0..n).map(|i| i % classes).collect()
}

/// Reads a tensor back as f32 values, asynchronously (the only way on WebGPU).
pub async fn read_f32<B: Backend>(t: Tensor<B, 1>) -> Result<Vec<f32>> {
    let data = t.into_data_async().await.map_err(|e| Error::Backend(format!("{e:?}")))?;
    data.convert::<f32>().to_vec::<f32>().map_err(|e| Error::Backend(format!("{e:?}")))
}
