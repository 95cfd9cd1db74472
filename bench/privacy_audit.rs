//! The empirical audit of the private mechanism (`anondistill::audit::mechanism`, issue 32) at
//! a size the test suite cannot afford: for each ε, `runs` one-iteration runs on each side of
//! the neighbouring data sets (40 demo patients, and the same with a canary patient), with the
//! calibrated noise, without noise and without clipping. The empirical lower bound on ε of the
//! private arm must stay below the accountant's ε; the other two arms show how much the test can
//! see, up to the most `runs` runs a side can show at all.
//!
//!     cargo run --release --example bench_privacy_audit -- [--runs 1000] [--epsilons 1,2,4,8]

use std::time::Instant;

use anondistill::{
    audit::mechanism::{threshold_bound, Arms, MechanismAudit},
    data::{load_files, Grouping},
    demo::demo_files,
};

mod args;
use args::arg;

type B = burn_ndarray::NdArray;

const DELTA: f64 = 1e-5;

fn main() {
    let runs: usize = arg("--runs").map_or(1000, |s| s.parse().expect("--runs N"));
    let epsilons: Vec<f64> = arg("--epsilons").map_or(vec![1.0, 2.0, 4.0, 8.0], |s| s.split(',').map(|e| e.parse().expect("--epsilons 1,2")).collect());
    let all = load_files(demo_files(), 8, &Grouping::default()).unwrap().dataset;
    let ceiling = threshold_bound(&vec![0.0; runs], &vec![1.0; runs], 0.5, DELTA);
    println!("{runs} runs a side, δ = {DELTA}; the most {runs} runs a side can show: ε ≥ {ceiling:.2}\n");
    println!("| accountant's ε | σ | empirical ε, private | without noise | without clipping | below the accountant | s |");
    println!("|---|---|---|---|---|---|---|");
    for epsilon in epsilons {
        let start = Instant::now();
        let audit = MechanismAudit::with_canary(&all, 20, epsilon, DELTA).unwrap();
        let Arms { sigma, private, no_noise, no_clipping } = audit.arms::<B>(runs).unwrap();
        println!(
            "| {epsilon} | {sigma:.3} | {private:.3} | {no_noise:.3} | {no_clipping:.3} | {} | {:.0} |",
            if private <= epsilon { "yes" } else { "**no**" },
            start.elapsed().as_secs_f64()
        );
    }
}
