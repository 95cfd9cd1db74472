//! An empirical audit of the private mechanism itself (`distill::private`), not of a result:
//! many one-iteration runs on two neighbouring data sets, without and with one canary patient,
//! the noise from the operating system's own source. A distinguishing test on each run's
//! released hyper-gradient of the images gives a lower bound on ε (Clopper–Pearson, 95%;
//! Jagielski, Ullman & Oprea 2020), which must stay below the accountant's ε. The same test with
//! the noise or the clipping switched off shows that it has power. The suite runs a small
//! version (`tests/privacy_audit.rs`), `bench_privacy_audit` a larger one.

use burn_tensor::backend::Backend;

use super::clopper_pearson;
use crate::config::{Config, NetKind, Objective, PrivacyConfig};
use crate::data::Dataset;
use crate::distill::Distiller;
use crate::error::{Error, Result};
use crate::privacy::{accountant::calibrate_sigma, noise::SecretRng, PrivacyPlan, PUBLIC_NORMALIZATION};

/// The ε lower bounds of the audit's three arms.
#[derive(Clone, Copy, Debug)]
pub struct Arms {
    /// The noise multiplier the accountant calibrates for the audit's one iteration.
    pub sigma: f64,
    /// With that noise and clipping at C.
    pub private: f64,
    /// Without noise.
    pub no_noise: f64,
    /// Without clipping: the same absolute noise (σ · C), a clipping norm no patient reaches.
    pub no_clipping: f64,
}

/// Two neighbouring data sets and the tiny configuration the audit distils them with.
#[derive(Clone, Debug)]
pub struct MechanismAudit {
    /// One private iteration of a one-step ConvNet on 8 × 8 images, every patient sampled.
    pub config: Config,
    /// The patients without the canary.
    pub without: Dataset,
    /// The same and one canary patient.
    pub with: Dataset,
}

impl MechanismAudit {
    /// `per_class` patients of each class of `all` (8 × 8 images, one a patient), and the same
    /// with a canary: an out-of-distribution patient, one image of the first class with its
    /// pixels multiplied by 200, twice, once labelled with each of the first two classes, so
    /// that its loss cannot be small whatever the network predicts. ε and δ are the
    /// accountant's, for one iteration at sampling rate 1.
    pub fn with_canary(all: &Dataset, per_class: usize, epsilon: f64, delta: f64) -> Result<Self> {
        let by_class = all.indices_by_class();
        if all.size != 8 || by_class.len() < 2 || by_class.iter().any(|idx| idx.len() <= per_class) {
            return Err(Error::Data(format!("the mechanism audit needs 8 × 8 images and more than {per_class} of each of two classes or more")));
        }
        let chosen: Vec<usize> = by_class.iter().flat_map(|idx| idx[..per_class].iter().copied()).collect();
        let without = all.subset(&chosen);
        let mut pixels = without.pixels.clone();
        let canary: Vec<f32> = all.image(by_class[0][per_class]).iter().map(|v| v * 200.0).collect();
        pixels.extend(canary.iter().chain(&canary));
        let mut labels = without.labels.clone();
        labels.extend([0, 1]);
        let mut with = Dataset::new(without.size, pixels, labels, without.classes.clone());
        let n = without.len();
        with.patients[n + 1] = with.patients[n];
        let config = Config {
            net: NetKind::ConvNet,
            convnet_width: 2,
            convnet_depth: 1,
            image_size: 8,
            steps: 1,
            epochs: 1,
            nets_per_iteration: 1,
            max_iterations: Some(1),
            holdout_fraction: 0.0,
            privacy: Some(PrivacyConfig { epsilon, delta: Some(delta), clip: Some(1.0), sample_rate: Some(1.0), ..Default::default() }),
            ..Config::default()
        };
        Ok(Self { config, without, with })
    }

    /// The same audit of distribution matching's private release (`distill::matching_private`):
    /// one release under a random embedder of width 2 and depth 1, every patient sampled. The
    /// canary patient holds `copies` copies of each of its two images, so that without clipping
    /// it would move the release by about `copies`·√2, where clipped it moves it by C at most.
    pub fn matching(self, copies: usize) -> Self {
        let n = self.without.len();
        let canary: Vec<f32> = self.with.image(n).to_vec();
        let mut pixels = self.without.pixels.clone();
        let mut labels = self.without.labels.clone();
        for label in [0, 1] {
            for _ in 0..copies {
                pixels.extend_from_slice(&canary);
                labels.push(label);
            }
        }
        let mut with = Dataset::new(self.without.size, pixels, labels, self.without.classes.clone());
        for i in n..with.len() {
            with.patients[i] = with.patients[n];
        }
        let privacy = self.config.privacy.clone().map(|p| PrivacyConfig { draws: 1, ..p });
        let config = Config { objective: Objective::Matching, embed_width: 2, embed_depth: 1, privacy, ..self.config };
        Self { config, without: self.without, with }
    }

    /// The three arms at `runs` runs a side: the private one must stay below the accountant's
    /// ε, the other two show whether the test has power.
    pub fn arms<B: Backend>(&self, runs: usize) -> Result<Arms> {
        let (epsilon, delta) = self.budget();
        let clip = self.config.privacy.as_ref().expect("a private configuration").clip_for(self.config.objective);
        let sigma = calibrate_sigma(epsilon, delta, 1.0, 1)?;
        Ok(Arms {
            sigma,
            private: self.epsilon_lower_bound::<B>(sigma, clip, runs)?,
            no_noise: self.epsilon_lower_bound::<B>(0.0, clip, runs)?,
            no_clipping: self.epsilon_lower_bound::<B>(sigma * clip / 1e6, 1e6, runs)?,
        })
    }

    /// The accountant's (ε, δ).
    fn budget(&self) -> (f64, f64) {
        let p = self.config.privacy.as_ref().expect("a private configuration");
        (p.epsilon, p.delta.expect("δ is set"))
    }

    /// The released images' hyper-gradient of one private iteration on `data` (a
    /// post-processing of the mechanism's noisy sum), or matching's released vector, from the
    /// same seed and state every time: only the noise differs. The divisor qN counts the patients without the canary on both sides.
    fn release<B: Backend>(&self, data: &Dataset, noise_multiplier: f64, clip: f64, rng: SecretRng) -> Result<Vec<f64>> {
        let (epsilon, delta) = self.budget();
        let mut d = Distiller::<B>::new(self.config.clone(), data, PUBLIC_NORMALIZATION, &Default::default())?;
        let plan = PrivacyPlan { target_epsilon: epsilon, delta, clip, sample_rate: 1.0, noise_multiplier, iterations: 1, patients: self.without.len(), unit: "patient", objective: self.config.objective };
        d.override_privacy(plan, rng)?;
        let released = d.hypergradient();
        let g = match d.matching_release(0) {
            Some(r) => r,
            None => released.images.into_data().to_vec::<f32>().map_err(|e| Error::Config(format!("{e:?}")))?,
        };
        Ok(g.into_iter().map(f64::from).collect())
    }

    /// The ε lower bound from `runs` runs on each side with noise of standard deviation
    /// `noise_multiplier × clip`: the test "the canary is there" on the release's projection on
    /// the direction the canary moves it without noise, at the threshold half-way.
    fn epsilon_lower_bound<B: Backend>(&self, noise_multiplier: f64, clip: f64, runs: usize) -> Result<f64> {
        let clean = |d: &Dataset| self.release::<B>(d, 0.0, clip, SecretRng::known(0));
        let (c0, c1) = (clean(&self.without)?, clean(&self.with)?);
        let direction: Vec<f64> = c1.iter().zip(&c0).map(|(a, b)| a - b).collect();
        let t = 0.5 * (dot(&c0, &direction) + dot(&c1, &direction));
        let scores = |d: &Dataset| (0..runs).map(|_| Ok(dot(&self.release::<B>(d, noise_multiplier, clip, SecretRng::from_os()?)?, &direction))).collect::<Result<Vec<f64>>>();
        Ok(threshold_bound(&scores(&self.without)?, &scores(&self.with)?, t, self.budget().1))
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The ε lower bound of the test "the canary is there when the score is above `t`" at `delta`:
/// the larger of ln((1 − δ − FPR)/FNR) and ln((1 − δ − FNR)/FPR), with each rate at its
/// Clopper–Pearson upper limit; 0 when neither is positive.
pub fn threshold_bound(without: &[f64], with: &[f64], t: f64, delta: f64) -> f64 {
    let false_pos = clopper_pearson(without.iter().filter(|&&s| s > t).count(), without.len()).hi;
    let false_neg = clopper_pearson(with.iter().filter(|&&s| s <= t).count(), with.len()).hi;
    let a = ((1.0 - delta - false_pos) / false_neg).ln();
    let b = ((1.0 - delta - false_neg) / false_pos).ln();
    a.max(b).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perfect_test_is_bounded_by_the_runs_and_a_blind_one_gives_nothing() {
        // 150 a side, all separated: the most 150 runs can show, ln((1 − δ − 0.0243)/0.0243) ≈ 3.69
        // (0 of 150 has the upper limit 1 − 0.025^(1/150)).
        let (lo, hi): (Vec<f64>, Vec<f64>) = ((0..150).map(|_| 0.0).collect(), (0..150).map(|_| 1.0).collect());
        let best = threshold_bound(&lo, &hi, 0.5, 1e-5);
        assert!((3.68..3.70).contains(&best), "{best}");
        assert_eq!(threshold_bound(&lo, &lo, 0.5, 1e-5), 0.0);
    }
}
