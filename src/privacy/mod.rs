//! Differential privacy per patient (DP-SGD on the outer loss): the settings, the plan a run
//! calibrates before its first iteration, the accountant and the secret randomness. The
//! mechanism itself is in `distill::private`.
//!
//! Each outer iteration samples every training patient independently with rate q (Poisson
//! sampling), takes each sampled patient's gradient of its summed outer loss with respect to the
//! final inner weights of all the iteration's networks, clips it jointly to norm C, sums, adds
//! N(0, σ²C²) to every coordinate and divides by the constant qN; the rest (back-propagation to
//! the images, labels and learning rates, Adam) is post-processing. The distilled data then
//! depend on the training patients only through that mechanism, provided nothing else does: in
//! this mode the pixels are normalised with fixed public constants ([`PUBLIC_NORMALIZATION`]),
//! images start as noise, the class weights of `balance_classes` and decays counted in passes
//! over the data are refused, no decision is taken on the real loss, and the iterations are
//! fixed before the run.

pub mod accountant;
pub mod noise;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Objective, PrivacyConfig};

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::net::Network;

/// The pixel normalisation of a private run: fixed, public constants that map [0, 1] to
/// [−1, 1], instead of the training pixels' mean and standard deviation.
pub const PUBLIC_NORMALIZATION: Normalization = Normalization { mean: 0.5, std: 0.5 };

/// Outer iterations of a private run when `max_iterations` does not say (fixed before the run;
/// chosen on MNIST's validation split over 100 and 900, one seed, see bench/README.md).
pub const DEFAULT_ITERATIONS: usize = 300;

/// What a private run uses, fixed before its first iteration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacyPlan {
    /// The budget the noise was calibrated for.
    pub target_epsilon: f64,
    /// δ.
    pub delta: f64,
    /// The clipping norm C.
    pub clip: f64,
    /// The sampling rate q.
    pub sample_rate: f64,
    /// The noise multiplier σ (the noise's standard deviation is σC).
    pub noise_multiplier: f64,
    /// Outer iterations of the run.
    pub iterations: usize,
    /// Training patients N (treated as public: they set q's default, δ's and the divisor qN).
    pub patients: usize,
    /// Whether every patient has one image ("image") or some have several ("patient").
    #[serde(deserialize_with = "unit")]
    pub unit: &'static str,
    /// The objective whose mechanism this is: the unrolled one's iterations are DP-SGD steps,
    /// matching's are releases of its class targets.
    #[serde(default)]
    pub objective: Objective,
}

/// Reads a plan's unit back ("image" or "patient").
fn unit<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<&'static str, D::Error> {
    match String::deserialize(d)?.as_str() {
        "image" => Ok("image"),
        "patient" => Ok("patient"),
        other => Err(serde::de::Error::custom(format!("unit {other:?} is neither \"image\" nor \"patient\""))),
    }
}

impl PrivacyPlan {
    /// Calibrates σ so that `iterations` iterations (releases, for matching) spend
    /// `settings.epsilon` (by bisection).
    pub fn new(settings: &PrivacyConfig, objective: Objective, batch_size: usize, iterations: usize, patients: usize, images: usize) -> Result<Self> {
        if patients < 2 {
            return Err(Error::Data(format!("differential privacy needs training patients to sample from; there are {patients}")));
        }
        let clip = settings.clip_for(objective);
        if !(clip.is_finite() && clip > 0.0) {
            return Err(Error::Config(format!("the clipping norm dp_clip = {clip} must be a positive finite number")));
        }
        let sample_rate = settings.sample_rate.unwrap_or((batch_size as f64 / patients as f64).min(1.0));
        let delta = settings.delta.unwrap_or((0.1 / patients as f64).min(1e-5));
        let noise_multiplier = accountant::calibrate_sigma(settings.epsilon, delta, sample_rate, iterations)?;
        let unit = if patients < images { "patient" } else { "image" };
        Ok(Self { target_epsilon: settings.epsilon, delta, clip, sample_rate, noise_multiplier, iterations, patients, unit, objective })
    }

    /// The plan of `config` (`None` without privacy) on `patients` training patients holding
    /// `images` images: `max_iterations` iterations, or [`DEFAULT_ITERATIONS`]; for matching,
    /// its `draws` releases.
    pub fn of(config: &Config, patients: usize, images: usize) -> Result<Option<Self>> {
        let Some(settings) = &config.privacy else { return Ok(None) };
        let releases = match config.objective {
            Objective::Unrolled => config.max_iterations.unwrap_or(DEFAULT_ITERATIONS),
            Objective::Matching => settings.draws,
        };
        Self::new(settings, config.objective, config.batch_size, releases, patients, images).map(Some)
    }

    /// ε spent after `iterations` iterations.
    pub fn spent(&self, iterations: usize) -> f64 {
        accountant::epsilon(self.sample_rate, self.noise_multiplier, iterations, self.delta).0
    }

    /// The mechanism's runs among a run's first `iterations_run` iterations: all of them for the
    /// unrolled objective; for matching, its first `iterations` are its releases and the rest
    /// read no member.
    pub fn releases_in(&self, iterations_run: usize) -> usize {
        if self.objective == Objective::Matching { iterations_run.min(self.iterations) } else { iterations_run }
    }

    /// ε spent once a run has done `iterations_run` iterations ([`PrivacyPlan::releases_in`]).
    pub fn spent_by(&self, iterations_run: usize) -> f64 {
        self.spent(self.releases_in(iterations_run))
    }

    /// Patients an iteration samples on average, qN.
    pub fn expected_batch(&self) -> f64 {
        self.sample_rate * self.patients as f64
    }

    /// What the noise costs, in words, for the user to read before the run: the noise's norm
    /// over the `dims` coordinates it is added to ([`noised_dims`]) against the largest norm
    /// the clipped gradients of an average sample can have, qN·C (an upper bound: real
    /// gradients partly cancel, so the comparison flatters the signal).
    pub fn noise_in_words(&self, dims: usize) -> String {
        let (expected, unit) = (self.expected_batch(), self.unit);
        let noise = self.noise_multiplier * self.clip * (dims as f64).sqrt();
        let signal = expected * self.clip;
        let ratio = noise / signal;
        let verdict = if ratio > 1.0 {
            "a lot: the noise outweighs what the patients contribute, so expect a much less accurate result than without privacy (more patients, fewer iterations or a larger epsilon reduce it)"
        } else if ratio > 0.25 {
            "noticeable: expect a less accurate result than without privacy"
        } else {
            "moderate"
        };
        format!(
            "each {} adds discrete Gaussian noise of standard deviation {:.3} to each of the {dims} coordinates it perturbs, a vector of norm about {noise:.0}, to the clipped {} of {expected:.1} {unit}s on average, whose sum has norm at most {signal:.0}. That is {verdict}.",
            if self.objective == Objective::Matching { "release" } else { "iteration" },
            self.noise_multiplier * self.clip,
            if self.objective == Objective::Matching { "contributions" } else { "gradients" }
        )
    }

    /// The archive's record after `iterations_run` iterations. A run that stopped before its
    /// plan's end (cancelled, or stopped by a divergence) may have stopped because of what it
    /// released so far; the guarantee that holds whatever the reason is the whole plan's, so that
    /// is the ε recorded then (what the iterations run spent alone is in `covers`).
    pub fn record(&self, iterations_run: usize) -> Privacy {
        // A matching run's first iterations are its releases; the rest cost nothing.
        let matching = self.objective == Objective::Matching;
        let (done, what) = (self.releases_in(iterations_run), if matching { "releases" } else { "iterations" });
        let planned = self.spent(self.iterations);
        let epsilon = if done < self.iterations { planned } else { self.spent(done) };
        let early = if done < self.iterations {
            format!(
                " The run stopped after {done} of its {} planned {what}, possibly because of what it showed: ε is that of the whole plan, which holds whatever the reason (the {done} {what} alone spend ε = {:.3} only if the decision to stop depended on none of them).",
                self.iterations,
                self.spent(done)
            )
        } else {
            String::new()
        };
        let (unit, delta) = (self.unit, self.delta);
        let (mechanism, covers) = if matching {
            (
                "distribution matching against cached noisy targets (NDPDC, Dosser): each release Poisson-samples patients; each sampled patient's vector (per class, the sum of its images' unit-norm embeddings under the release's random network and its image count, each image's part scaled to norm 1) is clipped jointly to C, the sum rounded to a grid and discrete Gaussian noise added on it (Canonne, Kamath & Steinke 2020); class means are the noisy sums over the noisy counts",
                format!(
                    "The distilled images are ({epsilon:.3}, {delta:.1e})-differentially private with respect to adding or removing one {unit} of the data given: they depend on the training {unit}s only through the {} noisy releases, drawn before any image was optimised; the labels are one-hot and the learning rates are not learned. Not covered: the number of training {unit}s (treated as public; it sets the sampling rate), the class names, the evaluation (the test {unit}s), and the privacy audit, which compares the result with the member and holdout images and is kept out of this archive.{early}",
                    self.iterations
                ),
            )
        } else {
            (
                "DP-SGD on the outer loss: Poisson sampling of patients, each patient's gradient with respect to the final inner weights of all networks of the iteration clipped jointly, the sum rounded to a grid and discrete Gaussian noise added on it (Canonne, Kamath & Steinke 2020)",
                format!(
                    "The distilled images, labels and learning rates are ({epsilon:.3}, {delta:.1e})-differentially private with respect to adding or removing one {unit} of the data given (one added to or removed from the folder changes no other {unit}'s side of the split, so the training set changes by that {unit} at most). Not covered: the number of training {unit}s (treated as public; it sets the sampling rate and the divisor), the class names, the evaluation (the test {unit}s), and the privacy audit, which compares the result with the member and holdout images and is kept out of this archive. The loss of the sampled members is never shown during the run.{early}"
                ),
            )
        };
        Privacy {
            mechanism: mechanism.into(),
            unit: unit.into(),
            epsilon,
            delta,
            noise_multiplier: self.noise_multiplier,
            clip: self.clip,
            sample_rate: self.sample_rate,
            iterations: done,
            planned_iterations: self.iterations,
            accountant: accountant::NAME.into(),
            covers,
        }
    }
}

/// Coordinates the noise of one private iteration perturbs: the final weights of all the
/// iteration's networks; for matching, one release's per-class embedding sums and counts.
pub fn noised_dims(config: &Config, classes: usize) -> Result<usize> {
    if config.objective == Objective::Matching {
        let embedder = crate::distill::matching::Embedder { width: config.embed_width, depth: config.embed_depth };
        return Ok(classes * (embedder.dims(config.image_size) + 1));
    }
    let per_network = Network::new(config, classes)?.weights();
    Ok(per_network * if config.known_init { 1 } else { config.nets_per_iteration })
}

/// The manifest's `privacy` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Privacy {
    /// What was made private, and how.
    pub mechanism: String,
    /// What one adjacent data set adds or removes: "patient" or "image".
    pub unit: String,
    /// ε spent by the iterations run.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// σ.
    pub noise_multiplier: f64,
    /// C.
    pub clip: f64,
    /// q.
    pub sample_rate: f64,
    /// Iterations run.
    pub iterations: usize,
    /// Iterations the plan fixed before the run (the noise is calibrated for them).
    #[serde(default)]
    pub planned_iterations: usize,
    /// The accountant.
    pub accountant: String,
    /// What the guarantee covers, in a sentence or two.
    pub covers: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_patients() {
        let p = PrivacyPlan::new(&PrivacyConfig { epsilon: 1.0, ..Default::default() }, Objective::Unrolled, 1024, 300, 60_000, 60_000).unwrap();
        assert!((p.sample_rate - 1024.0 / 60_000.0).abs() < 1e-15);
        assert!((p.delta - 1.0 / 600_000.0).abs() < 1e-18);
        assert_eq!(p.unit, "image");
        assert!(p.spent(300) <= 1.0 && p.spent(300) > 0.999 && p.spent(100) < p.spent(300));
        let few = PrivacyPlan::new(&PrivacyConfig::default(), Objective::Unrolled, 1024, 300, 300, 900).unwrap();
        assert_eq!((few.sample_rate, few.delta, few.unit), (1.0, 1e-5, "patient"));
        let record = few.record(300);
        assert!(record.covers.contains("one patient of the data given") && (record.epsilon - few.spent(300)).abs() < 1e-12);
        // Stopped early: the plan's ε, the iterations' own in words.
        let early = few.record(100);
        assert_eq!((early.iterations, early.planned_iterations), (100, 300));
        assert!((early.epsilon - few.spent(300)).abs() < 1e-12, "{early:?}");
        assert!(early.covers.contains("stopped after 100 of its 300 planned iterations") && early.covers.contains(&format!("{:.3}", few.spent(100))), "{}", early.covers);
        assert!(PrivacyPlan::new(&PrivacyConfig { clip: Some(0.0), ..Default::default() }, Objective::Unrolled, 64, 10, 100, 100).is_err());
    }

    #[test]
    fn the_noise_is_weighed_over_every_coordinate_it_perturbs() {
        // LeNet for 10 classes: 156 + 2,416 + 48,120 + 10,164 + 850 weights, one set per network.
        assert_eq!(noised_dims(&Config::default(), 10).unwrap(), 4 * 61_706);
        assert_eq!(noised_dims(&Config { known_init: true, ..Config::default() }, 10).unwrap(), 61_706);
        let config = Config { privacy: Some(PrivacyConfig::default()), max_iterations: Some(50), ..Config::default() };
        let p = PrivacyPlan::of(&config, 10_000, 10_000).unwrap().unwrap();
        assert_eq!((p.iterations, p.target_epsilon), (50, 8.0));
        assert_eq!(PrivacyPlan::of(&Config::default(), 10_000, 10_000).unwrap(), None);
        // σC√d against qN·C: 100 images a sample, σ = 1, C = 1.
        let p = PrivacyPlan { noise_multiplier: 1.0, clip: 1.0, sample_rate: 0.01, patients: 10_000, ..p };
        for (dims, verdict) in [(100, "That is moderate."), (10_000, "That is noticeable"), (40_000, "That is a lot")] {
            let words = p.noise_in_words(dims);
            assert!(words.contains(verdict) && words.contains(&format!("each of the {dims} coordinates")), "{dims}: {words}");
        }
    }

    #[test]
    fn matching_composes_its_releases_whatever_the_optimisation_runs() {
        let settings = PrivacyConfig { epsilon: 1.0, draws: 50, ..Default::default() };
        let m = |iterations: usize| Config { objective: Objective::Matching, max_iterations: Some(iterations), privacy: Some(settings.clone()), ..Config::default() };
        let p = PrivacyPlan::of(&m(1000), 60_000, 60_000).unwrap().unwrap();
        assert_eq!(PrivacyPlan::of(&m(100_000), 60_000, 60_000).unwrap().unwrap(), p, "the optimisation's iterations cost nothing");
        assert_eq!((p.iterations, p.clip, p.objective), (50, 1.0, Objective::Matching));
        // The accountant composes the 50 subsampled Gaussian releases: ε at 50, more at 100.
        let (eps50, eps100) = (accountant::epsilon(p.sample_rate, p.noise_multiplier, 50, p.delta).0, accountant::epsilon(p.sample_rate, p.noise_multiplier, 100, p.delta).0);
        assert!(eps50 <= 1.0 && eps50 > 0.99 && eps100 > 1.05, "{eps50} {eps100}");
        let r = p.record(1050);
        assert_eq!((r.iterations, r.planned_iterations, r.epsilon), (50, 50, eps50));
        assert!(r.covers.contains("through the 50 noisy releases"), "{}", r.covers);
        let early = p.record(20);
        assert!(early.epsilon == eps50 && early.covers.contains("stopped after 20 of its 50 planned releases"), "{}", early.covers);
        // Fewer releases, less noise each.
        let fewer = PrivacyPlan::of(&Config { privacy: Some(PrivacyConfig { draws: 10, ..settings.clone() }), ..m(1000) }, 60_000, 60_000).unwrap().unwrap();
        assert!(fewer.noise_multiplier < p.noise_multiplier);
    }

    #[test]
    fn the_epsilon_range_is_where_the_method_can_work() {
        // The page's default private run: 200 iterations, every patient sampled (the batch of
        // 1,024 is above the demo's patients), delta 1e-5.
        let sigma = accountant::calibrate_sigma(crate::config::EPSILON_MIN, 1e-5, 1.0, 200).unwrap();
        eprintln!("noise multiplier at the smallest epsilon: {sigma}");
        assert!(sigma > 400.0, "{sigma}");
        assert!(crate::config::EPSILON_MAX.exp() > 4.8e8);
        let c = |e: f64| Config { privacy: Some(PrivacyConfig { epsilon: e, ..Default::default() }), ..Config::default() };
        for e in [0.05, 20.5, 1e9, f64::NAN] {
            let msg = c(e).validate().unwrap_err().to_string();
            assert!(msg.contains("epsilon") && msg.contains("[0.1, 20]") && msg.contains("noise drowns"), "{msg}");
        }
        for e in [0.1, 1.0, 20.0] {
            c(e).validate().unwrap();
        }
    }
}
