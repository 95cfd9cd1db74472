//! The membership attack on a differentially private result beside a plain one (issue 32):
//! the same data, split and settings distilled twice, once without privacy and once with it,
//! then each result's privacy audit (`anondistill::audit`: a loss-based membership attack on
//! networks trained by replaying the distilled program, members against holdout patients) and
//! its evaluation on the test split. One table, a row per run.
//!
//!     cargo run --release --example bench_attack_pair -- [--data PATH.npz | --data demo]
//!         [--iterations 300] [--epsilon 8] [--set "steps=5 images_per_class_per_step=2"]
//!
//! The default data are the official PneumoniaMNIST (`../shared/data/pneumoniamnist/`, each
//! image its own patient, its own test split) with row 10's layout (bench_quality): 10 images a
//! class. The attack's AUC near 0.5 on both rows says the attack has no power on that data; only
//! a plain row above chance would show what the privacy buys against this attack.

use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anondistill::{
    audit::Attack,
    config::{Config, PrivacyConfig},
    data::{load_files, load_npz, Grouping},
    demo::demo_files,
    distill::Distiller,
    eval::evaluate,
    pipeline::{run_audit, run_to_end, Prepared},
};

mod args;
use args::{apply, arg};

type B = burn_flex::Flex;

const PNEUMONIA: &str = "../shared/data/pneumoniamnist/pneumoniamnist.npz";

/// The splits of `data` (an .npz with its own test split, or the demo split by patient).
fn prepare(data: &str, config: &Config) -> Prepared {
    if data == "demo" {
        return Prepared::from_loaded(load_files(demo_files(), config.image_size, &Grouping::default()).unwrap(), config).unwrap();
    }
    let bytes = std::fs::read(data).unwrap_or_else(|e| panic!("{data}: {e}"));
    Prepared::from_npz(load_npz(&bytes, Some(config.image_size), &Grouping::default()).unwrap(), config).unwrap()
}

/// "AUC [lo, hi]" of one attack, and its true-positive rate at 1% false positives.
fn attack(a: &Attack) -> (String, String) {
    (format!("{:.3} [{:.3}, {:.3}]", a.auc.value, a.auc.lo, a.auc.hi), format!("{:.3} [{:.3}, {:.3}]", a.tpr_at_1pct_fpr.value, a.tpr_at_1pct_fpr.lo, a.tpr_at_1pct_fpr.hi))
}

fn main() {
    anondistill::native::keep_freed_memory();
    let data = arg("--data").unwrap_or_else(|| PNEUMONIA.into());
    let iterations: usize = arg("--iterations").map_or(300, |s| s.parse().expect("--iterations N"));
    let epsilon: f64 = arg("--epsilon").map_or(8.0, |s| s.parse().expect("--epsilon E"));
    let set = arg("--set").unwrap_or_else(|| "steps=5 images_per_class_per_step=2".into());
    let base = apply(&Config { max_iterations: Some(iterations), ..Config::default() }, &set);
    let device = Default::default();
    println!("data {data}, {iterations} iterations, settings \"{set}\"\n");
    println!("| run | ε spent (δ) | balanced % (distilled) | attack on the distilled program: AUC [95%] | TPR at 1% FPR | attack on a random subset: AUC | members / holdout | s |");
    println!("|---|---|---|---|---|---|---|---|");
    for privacy in [None, Some(PrivacyConfig { epsilon, ..Default::default() })] {
        let config = Config { privacy: privacy.clone(), ..base.clone() };
        config.validate().unwrap();
        let start = Instant::now();
        let prepared = prepare(&data, &config);
        let mut d = Distiller::<B>::new(config.clone(), &prepared.train, prepared.norm, &device).unwrap();
        let outcome = pollster::block_on(run_to_end(&mut d, |_| {}));
        let spent = d.privacy().map_or("- (plain)".into(), |p| format!("{:.3} ({:.0e})", p.spent(outcome.iterations), p.delta));
        let distilled = pollster::block_on(d.distilled()).unwrap();
        let e = pollster::block_on(evaluate(&config, &distilled, d.fixed_init(), &prepared.train, &prepared.test, prepared.norm, &device)).unwrap();
        let audit = pollster::block_on(run_audit(&distilled, &config, &prepared, d.fixed_init(), Some(&e), &device)).unwrap();
        let m = &audit.membership;
        let ((auc, tpr), (subset_auc, _)) = (attack(&m.distilled), attack(&m.random_subset));
        let bal = &e.distilled.balanced_accuracy;
        println!(
            "| {} | {spent} | {:.2} ± {:.2} | {auc} | {tpr} | {subset_auc} | {} / {} | {:.0} |",
            if privacy.is_some() { "private" } else { "plain" },
            100.0 * bal.mean,
            100.0 * bal.std,
            m.members,
            m.holdout,
            start.elapsed().as_secs_f64()
        );
    }
}
