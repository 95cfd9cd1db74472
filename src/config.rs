//! The one configuration of a distillation run, with the reference code's defaults
//! (SsnL/dataset-distillation `base_options.py` and the soft-label fork) and its validation.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Which functional network is trained on the distilled data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    /// LeNet-5 as in the reference code (conv 6, conv 16, fc 120, fc 84), adapted to the image size.
    LeNet,
    /// A small ConvNet: `depth` blocks of 3×3 conv, ReLU and 2×2 average pooling, then a linear layer.
    ConvNet,
}

/// What follows each convolution of the ConvNet, before its ReLU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvNorm {
    /// Nothing (the seed's ConvNet).
    #[default]
    None,
    /// Instance norm without a learned scale: each image's channel brought to mean 0 and variance
    /// 1 over its pixels, as in the field's evaluation ConvNet (Zhao & Bilen). Trained only by the
    /// ordinary loop (a matching set's recipe and the baselines): the unrolled objective's inner
    /// gradients are written out for the plain network (`grad.rs`).
    Instance,
}

/// How the distilled images start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageInit {
    /// N(0, 1) in normalised space (the reference default).
    Noise,
    /// Randomly chosen real training images of each class (their pixels start the optimisation).
    /// The distilled images can stay close to those patients' images: on pneumonia patches the
    /// privacy audit flagged 2 of 10 as near copies after 400 iterations (`bench/HISTORY.md`,
    /// quality), where noise gave none.
    Real,
}

/// How the learnable label values enter the inner loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabelMode {
    /// The raw values weight the log-probabilities (as in the soft-label fork).
    Raw,
    /// The values are passed through a softmax first, so each label is a distribution.
    Softmax,
}

/// What the distilled images are learned for (`crate::distill`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// The seed's: images, labels and learning rates such that the inner SGD steps replayed on
    /// them train a fresh network well (the exact hyper-gradient through the unrolled steps).
    #[default]
    Unrolled,
    /// Distribution matching (Zhao & Bilen, WACV 2023): each class's images have the mean
    /// embedding of that class's real images under freshly drawn random ConvNets. The set is
    /// meant for an ordinary training loop (the recipe), not a replay.
    Matching,
}

/// Outer iterations of a matching run when `max_iterations` does not say (the paper's 20,000
/// are for GPUs; on the demo 1,000 beat 200 and width 128 did not beat 32: bench/HISTORY.md).
pub const MATCHING_ITERATIONS: usize = 1000;

/// Every setting of a distillation run and of its evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// What the images are learned for: `unrolled` (the seed's replay, default) or `matching`.
    pub objective: Objective,
    /// Matching: channels of every block of the random embedding network.
    pub embed_width: usize,
    /// Matching: blocks of the embedding network (3×3 conv, instance norm, ReLU, 2×2 average
    /// pooling; each halves the image size).
    pub embed_depth: usize,
    /// Matching: real images of each class embedded per iteration (all of a smaller class).
    pub real_per_class: usize,
    /// Matching: learning rate of the images' SGD with momentum 0.5 (the paper's code: 1).
    pub image_lr: f64,
    /// Matching: differentiable Siamese augmentation (`crate::augment`): each iteration
    /// transforms a class's real and distilled images alike, image by image; a private release
    /// transforms every image by one draw. On by default, as validation picked it with the
    /// recipe's augmentation on PneumoniaMNIST (88.41 against 88.33 balanced without it, within
    /// the seeds' spread; alone it cost 3.7 points: bench/HISTORY.md).
    pub dsa: bool,
    /// Matching: iterations of the unrolled objective after the matching ones, which learn a
    /// label per image (when `learn_labels`) and the replay's learning rates on top of the
    /// matched images, by the seed's hyper-gradient (issue 44; 0, the default: none). Not with
    /// differential privacy: they read the members again, outside the releases' guarantee.
    pub label_iterations: usize,
    /// Matching: whether those iterations move the images too (Adam, as the unrolled objective
    /// does), or only the labels and learning rates.
    pub label_images: bool,
    /// The ordinary loop a matching set is meant for and evaluated with, and its random subset:
    /// passes over the set.
    pub recipe_epochs: usize,
    /// The ordinary loop's Adam learning rate.
    pub recipe_lr: f64,
    /// The ordinary loop's minibatch (capped by the set).
    pub recipe_batch: usize,
    /// The ordinary loop augments each minibatch (`crate::augment`, one transform an image). On
    /// by default: on PneumoniaMNIST's validation tenth it lifted matching's balanced accuracy
    /// from 85.34 to 88.33 (bench/HISTORY.md, "DSA and the recipe's augmentation").
    pub recipe_augment: bool,
    /// Network trained on the distilled data.
    pub net: NetKind,
    /// Channels of every ConvNet block.
    pub convnet_width: usize,
    /// What follows each ConvNet convolution: `none` or `instance` (matching only).
    pub convnet_norm: ConvNorm,
    /// ConvNet blocks (each halves the image size).
    pub convnet_depth: usize,
    /// Multiplier of LeNet's channels and hidden units (1: the reference's 6, 16, 120 and 84).
    pub lenet_width: usize,
    /// Images are resized to `image_size × image_size`.
    pub image_size: usize,
    /// Distilled steps (each step is one batch of distilled images).
    pub steps: usize,
    /// Distilled images of each class in each step.
    pub images_per_class_per_step: usize,
    /// Distilled images per step in all, instead of `images_per_class_per_step` × classes; it
    /// may be fewer than the classes (image i starts as class i mod classes, and its learned
    /// label can move to any class).
    pub images_per_step: Option<usize>,
    /// How often the step sequence is replayed.
    pub epochs: usize,
    /// Initialisation of the distilled images.
    pub init: ImageInit,
    /// Whether the labels are learned (otherwise they stay one-hot).
    pub learn_labels: bool,
    /// How label values weight the inner loss.
    pub label_mode: LabelMode,
    /// Initial value of every inner learning rate (the raw parameter is its softplus inverse).
    pub lr_init: f64,
    /// Keep one fixed initial network instead of sampling fresh weights every iteration.
    pub known_init: bool,
    /// Real minibatch size of the outer loss (capped by the training set).
    pub batch_size: usize,
    /// Weight each real image of the outer loss, and of the full-data baseline's loss, by the
    /// inverse of its class's share of the training split (`n / (classes · n_c)`), so that each
    /// class counts equally. The random-subset baseline and the distilled images hold the same
    /// number of images of each class already.
    pub balance_classes: bool,
    /// Initial networks sampled per outer iteration; their hyper-gradients are averaged on the
    /// same real minibatch (each costs one unrolled meta-step). The default, 4, was chosen on
    /// validation splits of the pneumonia data and the demo (bench/HISTORY.md, seventh and eighth
    /// sets): it removes most of the spread between distillation seeds, at 4× the time of the
    /// reference's single network.
    pub nets_per_iteration: usize,
    /// Adam learning rate of the outer optimisation.
    pub outer_lr: f64,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Multiply the outer learning rate by `decay_factor` every this many outer iterations,
    /// whatever the data's size. The default, 2,320, is the reference's schedule counted in
    /// iterations (40 passes over MNIST's 60,000 images at batch 1024); 40 passes over a few
    /// hundred patches would be 40 iterations.
    pub decay_iterations: usize,
    /// When set, decay every this many passes over the real training data instead (the
    /// reference's own unit; `decay_iterations` is then unused).
    pub decay_epochs: Option<usize>,
    /// Factor of the step decay.
    pub decay_factor: f64,
    /// Passes over the real training data.
    pub epochs_outer: usize,
    /// Stop after this many outer iterations, whatever `epochs_outer` says.
    pub max_iterations: Option<usize>,
    /// Fresh networks the distilled program is evaluated on.
    pub eval_nets: usize,
    /// Learning rates tried for the random-real-subset baseline (the best on training data wins).
    pub baseline_lrs: Vec<f64>,
    /// Networks trained on all training data for the full-data baseline (0 skips it).
    pub full_data_nets: usize,
    /// Epochs of the full-data baseline (Adam, lr 1e-3, batch 64).
    pub full_data_epochs: usize,
    /// Share of each class's patients held out as the test split when a folder is split.
    pub test_fraction: f64,
    /// Share of each class's patients of the training data kept back as the privacy audit's holdout: never
    /// distilled from, compared with the members (0 turns the audit off).
    pub holdout_fraction: f64,
    /// Seed of every random choice (not of the privacy noise, which comes from a secure source).
    pub seed: u64,
    /// Differential privacy per patient: on when set (`crate::privacy`).
    pub privacy: Option<PrivacyConfig>,
}

/// The user's privacy settings: present, they turn differential privacy on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The privacy budget ε the whole run may spend.
    pub epsilon: f64,
    /// δ; by default 1/(10 · training patients), at most 1e-5.
    pub delta: Option<f64>,
    /// The clipping norm C of each patient's contribution. By default 10 for the unrolled
    /// objective (each patient's gradient), chosen on the validation tenths of MNIST and
    /// PneumoniaMNIST (public data; bench/HISTORY.md, "The clipping norm"): at 1 nearly every
    /// patient is clipped, each counts the same whatever its loss, and the larger class of
    /// imbalanced data swamps the smaller (PneumoniaMNIST collapsed to it even without noise).
    /// By default 1 for matching, where one image's contribution has norm 1: a patient with one
    /// image is never clipped, one with more counts as one image's worth.
    pub clip: Option<f64>,
    /// The chance that an iteration (a release, for matching) samples a given patient; by
    /// default the batch size (`batch_size`, in patients) over the training patients, at most 1.
    pub sample_rate: Option<f64>,
    /// Matching: the noisy releases of the class targets drawn once, before the images are
    /// optimised against them (Dosser's cache); the accountant composes this many.
    pub draws: usize,
}

/// The clipping norm of the unrolled objective when none is given.
pub const UNROLLED_CLIP: f64 = 10.0;
/// The clipping norm of matching when none is given: one image's contribution.
pub const MATCHING_CLIP: f64 = 1.0;
/// Matching's releases when none is given.
pub const MATCHING_DRAWS: usize = 200;

impl PrivacyConfig {
    /// The clipping norm: the one given, or the objective's default.
    pub fn clip_for(&self, objective: Objective) -> f64 {
        self.clip.unwrap_or(match objective {
            Objective::Unrolled => UNROLLED_CLIP,
            Objective::Matching => MATCHING_CLIP,
        })
    }
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self { epsilon: 8.0, delta: None, clip: None, sample_rate: None, draws: MATCHING_DRAWS }
    }
}


/// A number the user types, in the page's settings, the command line or a configuration file:
/// its key in the configuration (with dashes, the CLI's flag), its label on the page, and the
/// range every one of them accepts. [`Config::validate`] checks these ranges; the page sets its
/// fields' limits from this table and checks each value with it before the engine sees it
/// (`settingsFields` in `src/web.rs`), and the CLI names the same ranges.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Limit {
    /// The configuration's key.
    pub key: &'static str,
    /// The label the page shows.
    pub label: &'static str,
    /// The smallest value accepted.
    pub min: f64,
    /// The largest value accepted.
    pub max: f64,
    /// Whether only whole numbers are accepted.
    pub whole: bool,
    /// Why the range is what it is, when it is not obvious (said when a value is refused).
    pub why: &'static str,
}

/// The smallest privacy budget accepted: at ε = 0.1 the noise multiplier of the page's default
/// run (200 iterations, every patient sampled) is already above 400 (`privacy::tests::
/// the_epsilon_range_is_where_the_method_can_work`): every iteration's noise outweighs what
/// the patients contribute hundreds of times over, and the result is noise.
pub const EPSILON_MIN: f64 = 0.1;
/// The largest privacy budget accepted: above it e^ε, the factor by which one patient may
/// change the odds of any outcome, passes 4.8 × 10⁸, and the bound no longer says anything a
/// user could rely on (ε = 10⁹ used to be accepted and its noise called "moderate").
pub const EPSILON_MAX: f64 = 20.0;

/// The ranges of the numbers a user types (see [`Limit`]).
pub const LIMITS: &[Limit] = &[
    Limit { key: "images_per_class_per_step", label: "images per class per step", min: 1.0, max: 1000.0, whole: true, why: "" },
    Limit { key: "steps", label: "steps", min: 1.0, max: 1000.0, whole: true, why: "" },
    Limit { key: "epochs", label: "epochs", min: 1.0, max: 100.0, whole: true, why: "" },
    Limit { key: "max_iterations", label: "iterations", min: 1.0, max: 100_000_000.0, whole: true, why: "" },
    Limit { key: "nets_per_iteration", label: "networks per iteration", min: 1.0, max: 64.0, whole: true, why: "" },
    Limit { key: "image_size", label: "image size", min: 8.0, max: 256.0, whole: true, why: "" },
    Limit { key: "lenet_width", label: "LeNet width", min: 1.0, max: 16.0, whole: true, why: "" },
    Limit { key: "seed", label: "seed", min: 0.0, max: 9_007_199_254_740_991.0, whole: true, why: "" },
    Limit {
        key: "epsilon",
        label: "epsilon",
        min: EPSILON_MIN,
        max: EPSILON_MAX,
        whole: false,
        why: "below 0.1 the noise drowns the data (the result is noise); above 20 the guarantee bounds nothing a user could rely on",
    },
    Limit { key: "draws", label: "releases", min: 1.0, max: 100_000.0, whole: true, why: "" },
];

/// The limit of `key` in [`LIMITS`].
pub fn limit(key: &str) -> &'static Limit {
    LIMITS.iter().find(|l| l.key == key).unwrap_or_else(|| panic!("no limit for {key}"))
}

/// The number of CPU workers the page may use: one per core, at most this many.
pub const MAX_WORKERS: usize = 16;

impl Limit {
    /// `Ok` when `v` is in range, else the message: the key as the configuration names it.
    pub fn check(&self, v: f64) -> Result<()> {
        if v >= self.min && v <= self.max && (!self.whole || v.fract() == 0.0) {
            return Ok(());
        }
        let why = if self.why.is_empty() { String::new() } else { format!(": {}", self.why) };
        Err(Error::Config(format!("{} = {v} is outside [{}, {}]{why}", self.key, self.min, self.max)))
    }
}

/// The reference's step decay (every 40 passes over MNIST's 60,000 training images at batch
/// 1024) in outer iterations.
pub const REFERENCE_DECAY_ITERATIONS: usize = 40 * (60_000 / 1024);

impl Default for Config {
    fn default() -> Self {
        Self {
            objective: Objective::Unrolled,
            embed_width: 32,
            embed_depth: 3,
            real_per_class: 128,
            image_lr: 1.0,
            dsa: true,
            label_iterations: 0,
            label_images: false,
            recipe_epochs: 300,
            recipe_lr: 1e-3,
            recipe_batch: 256,
            recipe_augment: true,
            net: NetKind::LeNet,
            convnet_width: 32,
            convnet_norm: ConvNorm::None,
            convnet_depth: 3,
            lenet_width: 1,
            image_size: 28,
            steps: 10,
            images_per_class_per_step: 1,
            images_per_step: None,
            epochs: 3,
            init: ImageInit::Noise,
            learn_labels: true,
            label_mode: LabelMode::Raw,
            lr_init: 0.02,
            known_init: false,
            batch_size: 1024,
            balance_classes: false,
            nets_per_iteration: 4,
            outer_lr: 0.01,
            beta1: 0.5,
            beta2: 0.999,
            decay_iterations: REFERENCE_DECAY_ITERATIONS,
            decay_epochs: None,
            decay_factor: 0.5,
            epochs_outer: 400,
            max_iterations: None,
            eval_nets: 10,
            baseline_lrs: vec![0.001, 0.003, 0.01, 0.03, 0.1, 0.3],
            full_data_nets: 3,
            full_data_epochs: 10,
            test_fraction: 0.2,
            holdout_fraction: 0.2,
            seed: 0,
            privacy: None,
        }
    }
}

impl Config {
    /// Checks every value; the message names the field and its allowed range.
    pub fn validate(&self) -> Result<()> {
        // The whole-number settings no field shows, checked as [`LIMITS`]' are.
        let range = |key: &'static str, v: usize, lo: usize, hi: usize| Limit { key, label: key, min: lo as f64, max: hi as f64, whole: true, why: "" }.check(v as f64);
        for (key, v) in [
            ("image_size", self.image_size),
            ("steps", self.steps),
            ("images_per_class_per_step", self.images_per_class_per_step),
            ("epochs", self.epochs),
            ("lenet_width", self.lenet_width),
            ("nets_per_iteration", self.nets_per_iteration),
        ] {
            limit(key).check(v as f64)?;
        }
        if let Some(n) = self.max_iterations {
            limit("max_iterations").check(n as f64)?;
        }
        if let Some(n) = self.images_per_step {
            range("images_per_step", n, 1, 100_000)?;
        }
        range("convnet_width", self.convnet_width, 1, 1024)?;
        range("convnet_depth", self.convnet_depth, 1, 6)?;
        range("batch_size", self.batch_size, 1, 1 << 20)?;
        range("epochs_outer", self.epochs_outer, 1, 1_000_000)?;
        range("decay_iterations", self.decay_iterations, 1, 100_000_000)?;
        if let Some(n) = self.decay_epochs {
            range("decay_epochs", n, 1, 1_000_000)?;
        }
        range("eval_nets", self.eval_nets, 1, 1000)?;
        range("embed_width", self.embed_width, 1, 1024)?;
        range("embed_depth", self.embed_depth, 1, 6)?;
        range("real_per_class", self.real_per_class, 1, 1 << 20)?;
        range("recipe_epochs", self.recipe_epochs, 1, 100_000)?;
        range("label_iterations", self.label_iterations, 0, 1_000_000)?;
        range("recipe_batch", self.recipe_batch, 1, 1 << 20)?;
        range("full_data_nets", self.full_data_nets, 0, 1000)?;
        range("full_data_epochs", self.full_data_epochs, 1, 10_000)?;
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::Config(format!("{name} = {v} must be a positive finite number")))
            }
        };
        positive("lr_init", self.lr_init)?;
        positive("outer_lr", self.outer_lr)?;
        positive("image_lr", self.image_lr)?;
        positive("recipe_lr", self.recipe_lr)?;
        positive("decay_factor", self.decay_factor)?;
        for lr in &self.baseline_lrs {
            positive("baseline_lrs", *lr)?;
        }
        if self.baseline_lrs.is_empty() {
            return Err(Error::Config("baseline_lrs must name at least one learning rate".into()));
        }
        let unit = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::Config(format!("{name} = {v} is outside [0, 1)")))
            }
        };
        unit("beta1", self.beta1)?;
        unit("beta2", self.beta2)?;
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return Err(Error::Config(format!(
                "test_fraction = {} is outside (0, 1)",
                self.test_fraction
            )));
        }
        if !(0.0..=0.9).contains(&self.holdout_fraction) {
            return Err(Error::Config(format!("holdout_fraction = {} is outside [0, 0.9]", self.holdout_fraction)));
        }
        if self.decay_factor > 1.0 {
            return Err(Error::Config(format!("decay_factor = {} is above 1", self.decay_factor)));
        }
        self.check_privacy()?;
        self.check_matching()?;
        if self.net == NetKind::ConvNet && self.convnet_norm == ConvNorm::Instance && self.objective == Objective::Unrolled {
            return Err(Error::Config(
                "convnet_norm instance works with the matching objective only: the unrolled objective differentiates its inner training, which is written for the ConvNet without a norm".into(),
            ));
        }
        if self.net == NetKind::ConvNet && self.image_size >> self.convnet_depth == 0 {
            return Err(Error::Config(format!(
                "image_size {} is too small for a ConvNet of depth {} (each block halves it)",
                self.image_size, self.convnet_depth
            )));
        }
        Ok(())
    }

    /// With differential privacy, refuses the settings under which the distilled data would
    /// depend on the training patients other than through the private mechanism.
    fn check_privacy(&self) -> Result<()> {
        let Some(p) = &self.privacy else { return Ok(()) };
        let refuse = |what: &str| Err(Error::Config(format!("{what} with differential privacy: it would make the result depend on the training patients outside the private mechanism")));
        if self.init == ImageInit::Real {
            return refuse("init real cannot be used");
        }
        if self.balance_classes {
            return refuse("balance_classes (class weights from the training counts) cannot be used");
        }
        if self.decay_epochs.is_some() {
            return refuse("decay_epochs (passes over the data) cannot be used; use decay_iterations");
        }
        limit("epsilon").check(p.epsilon)?;
        if let Some(c) = p.clip.filter(|c| !(c.is_finite() && *c > 0.0)) {
            return Err(Error::Config(format!("dp_clip = {c} must be a positive finite number")));
        }
        limit("draws").check(p.draws as f64)?;
        if p.delta.is_some_and(|d| !(d > 0.0 && d < 1.0)) {
            return Err(Error::Config(format!("dp_delta = {} is outside (0, 1)", p.delta.unwrap_or_default())));
        }
        if p.sample_rate.is_some_and(|q| !(q > 0.0 && q <= 1.0)) {
            return Err(Error::Config(format!("the sampling rate = {} is outside (0, 1]", p.sample_rate.unwrap_or_default())));
        }
        Ok(())
    }

    /// Refuses what the matching objective cannot do yet or does not use in a way the user could
    /// mistake.
    fn check_matching(&self) -> Result<()> {
        if self.objective != Objective::Matching {
            if self.label_iterations > 0 || self.label_images {
                return Err(Error::Config("label_iterations and label_images belong to the matching objective: the unrolled objective learns labels and learning rates throughout".into()));
            }
            return Ok(());
        }
        if self.known_init {
            return Err(Error::Config("known_init (one fixed network) belongs to the unrolled objective; matching draws a new embedding network every iteration".into()));
        }
        if self.label_iterations > 0 && self.privacy.is_some() {
            return Err(Error::Config("label_iterations cannot be used with differential privacy: learning labels by the unrolled objective reads the training patients again, outside the releases' guarantee".into()));
        }
        if self.label_iterations > 0 && self.net == NetKind::ConvNet && self.convnet_norm == ConvNorm::Instance {
            return Err(Error::Config("label_iterations need a network the unrolled objective can differentiate: convnet_norm instance is not one (its inner gradients are written for the ConvNet without a norm)".into()));
        }
        if self.image_size >> self.embed_depth == 0 {
            return Err(Error::Config(format!(
                "image_size {} is too small for an embedding network of depth {} (each block halves it)",
                self.image_size, self.embed_depth
            )));
        }
        Ok(())
    }

    /// A matching run's iterations after its releases (if private): `max_iterations`, or
    /// [`MATCHING_ITERATIONS`].
    pub fn matching_iterations(&self) -> usize {
        self.max_iterations.unwrap_or(MATCHING_ITERATIONS)
    }

    /// How a network is trained on the distilled set by an ordinary loop (matching's recipe).
    pub fn recipe(&self) -> crate::train::Recipe {
        crate::train::Recipe { epochs: self.recipe_epochs, lr: self.recipe_lr, batch: self.recipe_batch, augment: self.recipe_augment }
    }

    /// Inner SGD steps of one replay: `steps × epochs`.
    pub fn inner_steps(&self) -> usize {
        self.steps * self.epochs
    }

    /// Distilled images in each step for `classes` classes.
    pub fn images_per_step(&self, classes: usize) -> usize {
        self.images_per_step.unwrap_or(self.images_per_class_per_step * classes)
    }

    /// Outer iterations between two decays of the outer learning rate, when a pass over the real
    /// data takes `iterations_per_epoch` iterations.
    pub fn decay_period(&self, iterations_per_epoch: usize) -> usize {
        self.decay_epochs.map_or(self.decay_iterations, |e| e * iterations_per_epoch)
    }

    /// The raw learning-rate parameter whose softplus is `lr_init`.
    pub fn raw_lr_init(&self) -> f64 {
        softplus_inverse(self.lr_init)
    }
}

/// Rewrites, in place, a configuration recorded by format 1 of the archive or the session file
/// into today's fields. There `decay_epochs` was a number that applied unless `decay_iterations`
/// was one (2026-11-27: both numbers meant a decay in iterations; a missing or `null`
/// `decay_iterations`, a decay per pass).
fn upgrade_format_1(config: &mut serde_json::Value) {
    let Some(c) = config.as_object_mut() else { return };
    if c.get("decay_iterations").is_some_and(serde_json::Value::is_number) {
        c.insert("decay_epochs".into(), serde_json::Value::Null);
    } else {
        c.remove("decay_iterations");
    }
}

/// The engine's settings (`crate::engine`) that archives and session files recorded in their
/// configuration until 2026-12-02; they changed the speed only, and are dropped on reading.
const ENGINE_FIELDS: [&str; 3] = ["conv", "inner_grad", "once_ops"];

/// Upgrades an archive's manifest or a session's metadata in place: when its `format` is
/// `format_1`, the format becomes `current` and the configuration today's fields; in any format,
/// the engine's settings go.
pub fn upgrade_document(doc: &mut serde_json::Value, format_1: &str, current: &str) {
    if doc["format"] == format_1 {
        upgrade_format_1(&mut doc["config"]);
        doc["format"] = current.into();
    }
    if let Some(c) = doc["config"].as_object_mut() {
        ENGINE_FIELDS.iter().for_each(|k| {
            c.remove(*k);
        });
    }
}

/// `ln(e^y − 1)`, the inverse of softplus, stable for small and large `y`.
pub fn softplus_inverse(y: f64) -> f64 {
    if y > 20.0 {
        y
    } else {
        y.exp_m1().ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_refuses_what_it_cannot_do() {
        let m = Config { objective: Objective::Matching, ..Config::default() };
        m.validate().unwrap();
        Config { privacy: Some(PrivacyConfig::default()), ..m.clone() }.validate().unwrap();
        let no_draws = Config { privacy: Some(PrivacyConfig { draws: 0, ..Default::default() }), ..m.clone() };
        assert!(no_draws.validate().unwrap_err().to_string().contains("draws = 0 is outside [1, 100000]"));
        let fixed = Config { known_init: true, ..m.clone() };
        assert!(fixed.validate().unwrap_err().to_string().contains("known_init"));
        let small = Config { image_size: 8, embed_depth: 4, ..m.clone() };
        assert!(small.validate().unwrap_err().to_string().contains("too small for an embedding network of depth 4"));
        let zero = Config { recipe_epochs: 0, ..m.clone() };
        assert!(zero.validate().unwrap_err().to_string().contains("recipe_epochs = 0 is outside"));
        // Instance norm: trained by the ordinary loop only, never differentiated through training.
        let normed = Config { net: NetKind::ConvNet, convnet_norm: ConvNorm::Instance, ..m.clone() };
        normed.validate().unwrap();
        // Labels on top: matching's, without privacy, into a network the unrolled objective differentiates.
        let on_top = Config { label_iterations: 10, ..m.clone() };
        on_top.validate().unwrap();
        let private = Config { privacy: Some(PrivacyConfig::default()), ..on_top.clone() };
        assert!(private.validate().unwrap_err().to_string().contains("label_iterations cannot be used with differential privacy"));
        let normed_on_top = Config { label_iterations: 10, ..normed.clone() };
        assert!(normed_on_top.validate().unwrap_err().to_string().contains("label_iterations need a network the unrolled objective can differentiate"));
        let replay = Config { objective: Objective::Unrolled, ..on_top };
        assert!(replay.validate().unwrap_err().to_string().contains("label_iterations and label_images belong to the matching objective"));
        let unrolled = Config { objective: Objective::Unrolled, ..normed };
        assert!(unrolled.validate().unwrap_err().to_string().contains("convnet_norm instance works with the matching objective only"));
    }

    #[test]
    fn defaults_are_the_reference_ones_and_valid() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!((c.steps, c.epochs, c.images_per_class_per_step), (10, 3, 1));
        assert_eq!((c.outer_lr, c.beta1, c.beta2), (0.01, 0.5, 0.999));
        assert_eq!((c.epochs_outer, c.batch_size), (400, 1024));
        assert_eq!((c.decay_iterations, c.decay_epochs), (40 * (60_000 / 1024), None));
        assert_eq!((c.decay_period(7), Config { decay_epochs: Some(40), ..c.clone() }.decay_period(7)), (2320, 280));
        let lr = (1.0 + c.raw_lr_init().exp()).ln();
        assert!((lr - 0.02).abs() < 1e-12);
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let cases: Vec<(Config, &str)> = vec![
            (Config { steps: 0, ..Config::default() }, "steps"),
            (Config { lr_init: f64::NAN, ..Config::default() }, "lr_init"),
            (Config { beta1: 1.0, ..Config::default() }, "beta1"),
            (Config { test_fraction: 1.5, ..Config::default() }, "test_fraction"),
            (Config { image_size: 4, ..Config::default() }, "image_size"),
            (Config { images_per_step: Some(0), ..Config::default() }, "images_per_step"),
            (Config { holdout_fraction: 0.95, ..Config::default() }, "holdout_fraction"),
            (Config { lenet_width: 17, ..Config::default() }, "lenet_width"),
            (
                Config { net: NetKind::ConvNet, image_size: 8, convnet_depth: 4, ..Config::default() },
                "ConvNet",
            ),
        ];
        let private = Some(PrivacyConfig::default());
        let cases = cases.into_iter().chain([
            (Config { init: ImageInit::Real, privacy: private.clone(), ..Config::default() }, "init real"),
            (Config { balance_classes: true, privacy: private.clone(), ..Config::default() }, "balance_classes"),
            (Config { decay_epochs: Some(3), privacy: private.clone(), ..Config::default() }, "decay_epochs"),
            (Config { privacy: Some(PrivacyConfig { clip: Some(f64::INFINITY), ..Default::default() }), ..Config::default() }, "dp_clip"),
            (Config { privacy: Some(PrivacyConfig { delta: Some(1.0), ..Default::default() }), ..Config::default() }, "dp_delta"),
        ]);
        // The same settings without privacy are allowed.
        for c in [Config { init: ImageInit::Real, ..Config::default() }, Config { balance_classes: true, ..Config::default() }] {
            c.validate().unwrap();
        }
        for (c, field) in cases {
            let msg = c.validate().unwrap_err().to_string();
            assert!(msg.contains(field), "{msg} does not name {field}");
        }
    }

    #[test]
    fn images_per_step_overrides_the_per_class_count() {
        let c = Config { images_per_class_per_step: 2, ..Config::default() };
        assert_eq!(c.images_per_step(10), 20);
        let fewer = Config { images_per_step: Some(5), ..c };
        assert_eq!(fewer.images_per_step(10), 5);
        assert_eq!(crate::distill::initial_classes(10, 10)[..5], [0, 1, 2, 3, 4]);
    }

    #[test]
    fn json_round_trip_and_unknown_fields_rejected() {
        let c = Config { net: NetKind::ConvNet, seed: 9, ..Config::default() };
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Config>(&s).unwrap(), c);
        let partial: Config = serde_json::from_str(r#"{"steps": 3}"#).unwrap();
        assert_eq!(partial.steps, 3);
        assert!(serde_json::from_str::<Config>(r#"{"stepz": 3}"#).is_err());
    }

    #[test]
    fn format_1_configurations_keep_the_decay_they_ran_with() {
        let read = |json: &str| {
            let mut v: serde_json::Value = serde_json::from_str(json).unwrap();
            upgrade_format_1(&mut v);
            let c: Config = serde_json::from_value(v).unwrap();
            (c.decay_period(7), c.decay_epochs)
        };
        // Before decay_iterations existed: per pass.
        assert_eq!(read(r#"{"decay_epochs": 40}"#), (280, Some(40)));
        // decay_iterations null: per pass; a number: per iteration, decay_epochs unused.
        assert_eq!(read(r#"{"decay_epochs": 40, "decay_iterations": null}"#), (280, Some(40)));
        assert_eq!(read(r#"{"decay_epochs": 40, "decay_iterations": 2320}"#), (2320, None));
        // The engine's settings of earlier files are dropped, whatever they were.
        let mut doc = serde_json::json!({"format": "f/2", "config": {"steps": 3, "conv": "im2col", "inner_grad": "nested", "once_ops": "off"}});
        upgrade_document(&mut doc, "f/1", "f/2");
        assert_eq!(serde_json::from_value::<Config>(doc["config"].clone()).unwrap(), Config { steps: 3, ..Config::default() });
        // Today's format reads decay_epochs as the per-pass decay that wins.
        let today: Config = serde_json::from_str(r#"{"decay_epochs": 40, "decay_iterations": 9}"#).unwrap();
        assert_eq!(today.decay_period(7), 280);
    }

    #[test]
    fn every_limit_in_the_table_is_what_validate_enforces() {
        for l in LIMITS {
            let with = |v: f64| -> Config {
                let mut j = serde_json::to_value(Config { privacy: Some(PrivacyConfig::default()), ..Config::default() }).unwrap();
                if l.key == "epsilon" {
                    j["privacy"]["epsilon"] = v.into();
                } else if l.key == "draws" {
                    j["privacy"]["draws"] = (v as u64).into();
                } else {
                    j[l.key] = (v as u64).into();
                }
                serde_json::from_value(j).unwrap()
            };
            with(l.min).validate().unwrap_or_else(|e| panic!("{} at its minimum: {e}", l.key));
            with(l.max).validate().unwrap_or_else(|e| panic!("{} at its maximum: {e}", l.key));
            if l.key == "seed" {
                continue; // 0 to 2^53 - 1: any u64 seed runs; the page cannot type more exactly
            }
            let step = if l.whole { 1.0 } else { l.min / 2.0 };
            for v in [l.min - step, l.max + if l.whole { 1.0 } else { 0.5 }] {
                let msg = with(v).validate().unwrap_err().to_string();
                assert!(msg.contains(&format!("{} = ", l.key)) && msg.contains(&format!("[{}, {}]", l.min, l.max)), "{msg}");
            }
        }
    }
}
