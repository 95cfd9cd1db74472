//! An empirical audit of the private mechanism (`src/distill/private.rs`,
//! `anondistill::audit::mechanism`), with the operating system's own noise: many one-iteration
//! runs on two neighbouring data sets, 40 demo patients without and with one canary patient. A
//! distinguishing test on each run's released hyper-gradient gives a lower bound on ε
//! (Clopper–Pearson, 95%). It must stay below the accountant's ε, and the same test must exceed
//! it when the noise or the clipping is switched off, so the test is shown to have power.
//! `bench_privacy_audit` runs the same with more runs and several ε. The second test does the
//! same for distribution matching's release (`src/distill/matching_private.rs`).

use anondistill::{
    audit::mechanism::{Arms, MechanismAudit},
    data::{load_files, Grouping},
    demo::demo_files,
};
use burn_ndarray::NdArray;

type B = NdArray;

/// Runs on each side of each arm.
const RUNS: usize = 150;
const EPSILON: f64 = 2.0;
const DELTA: f64 = 1e-5;

#[test]
fn the_empirical_epsilon_stays_below_the_accountant_s_and_the_test_has_power() {
    let all = load_files(demo_files(), 8, &Grouping::default()).unwrap().dataset;
    let audit = MechanismAudit::with_canary(&all, 20, EPSILON, DELTA).unwrap();
    assert_eq!((audit.without.patient_counts().total, audit.with.patient_counts().total), (40, 41));
    let Arms { sigma, private, no_noise, no_clipping } = audit.arms::<B>(RUNS).unwrap();
    eprintln!("sigma {sigma:.3}: empirical epsilon lower bounds over {RUNS} runs a side: private {private:.3}, without noise {no_noise:.3}, without clipping {no_clipping:.3}; accountant {EPSILON}");
    assert!(private <= EPSILON, "the audit found epsilon >= {private} against the accountant's {EPSILON}");
    assert!(no_noise > EPSILON && no_clipping > EPSILON, "the test has no power: {no_noise}, {no_clipping}");
}

#[test]
fn the_matching_release_s_empirical_epsilon_stays_below_the_accountant_s_and_the_test_has_power() {
    let all = load_files(demo_files(), 8, &Grouping::default()).unwrap().dataset;
    let audit = MechanismAudit::with_canary(&all, 20, EPSILON, DELTA).unwrap().matching(10);
    assert_eq!((audit.without.patient_counts().total, audit.with.patient_counts().total, audit.with.len()), (40, 41, 60));
    let Arms { sigma, private, no_noise, no_clipping } = audit.arms::<B>(RUNS).unwrap();
    eprintln!("matching, sigma {sigma:.3}: empirical epsilon lower bounds over {RUNS} runs a side: private {private:.3}, without noise {no_noise:.3}, without clipping {no_clipping:.3}; accountant {EPSILON}");
    assert!(private <= EPSILON, "the audit found epsilon >= {private} against the accountant's {EPSILON}");
    assert!(no_noise > EPSILON && no_clipping > EPSILON, "the test has no power: {no_noise}, {no_clipping}");
}
