//! An empirical audit of the private mechanism (`src/distill/private.rs`), with the operating
//! system's own noise: many one-iteration runs on two neighbouring data sets, 40 demo patients
//! without and with one canary patient (one patch with its pixels multiplied by 200, twice, once
//! in each class, so that its loss cannot be small whatever the network predicts). A distinguishing test
//! on each run's released hyper-gradient gives a lower bound on ε (Clopper–Pearson, 95%). It must
//! stay below the accountant's ε, and the same test must exceed it when the noise or the clipping
//! is switched off, so the test is shown to have power.

use anondistill::{
    audit::clopper_pearson,
    config::{Config, NetKind, PrivacyConfig},
    data::{load_files, Dataset, Grouping},
    demo::demo_files,
    distill::Distiller,
    privacy::{accountant::calibrate_sigma, noise::SecretRng, PrivacyPlan, PUBLIC_NORMALIZATION},
};
use burn_ndarray::NdArray;

type B = NdArray;

/// Runs on each side of each arm.
const RUNS: usize = 150;
const EPSILON: f64 = 2.0;
const DELTA: f64 = 1e-5;
/// The patients without the canary: the constant N of the divisor qN on both sides.
const PATIENTS: usize = 40;

fn config() -> Config {
    Config {
        net: NetKind::ConvNet,
        convnet_width: 2,
        convnet_depth: 1,
        image_size: 8,
        steps: 1,
        epochs: 1,
        nets_per_iteration: 1,
        max_iterations: Some(1),
        holdout_fraction: 0.0,
        privacy: Some(PrivacyConfig { epsilon: EPSILON, delta: Some(DELTA), clip: 1.0, sample_rate: Some(1.0) }),
        ..Config::default()
    }
}

/// 20 patients of each class, and the same with a canary: an out-of-distribution patient.
fn neighbours() -> (Dataset, Dataset) {
    let all = load_files(demo_files(), 8, &Grouping::default()).unwrap().dataset;
    let by_class = all.indices_by_class();
    let chosen: Vec<usize> = by_class.iter().flat_map(|idx| idx[..PATIENTS / 2].iter().copied()).collect();
    let without = all.subset(&chosen);
    let mut pixels = without.pixels.clone();
    let canary: Vec<f32> = all.image(by_class[0][PATIENTS / 2]).iter().map(|v| v * 200.0).collect();
    pixels.extend(canary.iter().chain(&canary));
    let mut labels = without.labels.clone();
    labels.extend([0, 1]);
    let mut with = Dataset::new(without.size, pixels, labels, without.classes.clone());
    with.patients[PATIENTS + 1] = with.patients[PATIENTS];
    let count = |d: &Dataset| d.patients.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!((count(&without), count(&with)), (PATIENTS, PATIENTS + 1));
    (without, with)
}

/// The released images' hyper-gradient of one private iteration (a post-processing of the
/// mechanism's noisy sum), from the same seed and state every time: only the noise differs.
fn release(data: &Dataset, noise_multiplier: f64, clip: f64, rng: SecretRng) -> Vec<f64> {
    let mut d = Distiller::<B>::new(config(), data, PUBLIC_NORMALIZATION, &Default::default()).unwrap();
    let plan = PrivacyPlan { target_epsilon: EPSILON, delta: DELTA, clip, sample_rate: 1.0, noise_multiplier, iterations: 1, patients: PATIENTS, unit: "patient" };
    d.override_privacy(plan, rng).unwrap();
    d.hypergradient().images.into_data().to_vec::<f32>().unwrap().into_iter().map(f64::from).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The ε lower bound of the test "the canary is there when the score is above `t`".
fn epsilon_lower_bound(without: &[f64], with: &[f64], t: f64) -> f64 {
    let false_pos = clopper_pearson(without.iter().filter(|&&s| s > t).count(), without.len()).hi;
    let false_neg = clopper_pearson(with.iter().filter(|&&s| s <= t).count(), with.len()).hi;
    let a = ((1.0 - DELTA - false_pos) / false_neg).ln();
    let b = ((1.0 - DELTA - false_neg) / false_pos).ln();
    a.max(b).max(0.0)
}

/// The lower bound from `RUNS` runs on each side, the noise of standard deviation
/// `noise_multiplier × clip` drawn from the operating system's secure source.
fn audit(sets: &(Dataset, Dataset), noise_multiplier: f64, clip: f64) -> f64 {
    // The direction the canary moves the release, and the threshold half-way, without noise.
    let clean = |d: &Dataset| release(d, 0.0, clip, SecretRng::known(0));
    let (c0, c1) = (clean(&sets.0), clean(&sets.1));
    let direction: Vec<f64> = c1.iter().zip(&c0).map(|(a, b)| a - b).collect();
    let t = 0.5 * (dot(&c0, &direction) + dot(&c1, &direction));
    let scores = |d: &Dataset| (0..RUNS).map(|_| dot(&release(d, noise_multiplier, clip, SecretRng::from_os().unwrap()), &direction)).collect::<Vec<_>>();
    epsilon_lower_bound(&scores(&sets.0), &scores(&sets.1), t)
}

#[test]
fn the_empirical_epsilon_stays_below_the_accountant_s_and_the_test_has_power() {
    let sets = neighbours();
    let sigma = calibrate_sigma(EPSILON, DELTA, 1.0, 1).unwrap();
    let private = audit(&sets, sigma, 1.0);
    let no_noise = audit(&sets, 0.0, 1.0);
    // Clipping off: the same absolute noise (σ · 1), a clipping norm no patient reaches.
    let no_clipping = audit(&sets, sigma / 1e6, 1e6);
    eprintln!("sigma {sigma:.3}: empirical epsilon lower bounds over {RUNS} runs a side: private {private:.3}, without noise {no_noise:.3}, without clipping {no_clipping:.3}; accountant {EPSILON}");
    assert!(private <= EPSILON, "the audit found epsilon >= {private} against the accountant's {EPSILON}");
    assert!(no_noise > EPSILON && no_clipping > EPSILON, "the test has no power: {no_noise}, {no_clipping}");
}
