//! Accuracy table: distilled set vs a random real subset of the same size vs training on all
//! data, on `../shared/data/mnist10k` and `../shared/data/pneumoniamnist-balanced` (test splits).
//!
//!     cargo run --release --example bench_accuracy [-- --iterations 300 --only mnist10k --backend ndarray]

use std::time::Instant;

use anondistill::{config::Config, data::load_npz, distill::Distiller, eval::{evaluate, Accuracy}, pipeline::{run_to_end, Prepared}};
use burn_tensor::backend::Backend;

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

fn pct(a: &Accuracy) -> String {
    format!("{:.2} ± {:.2}", 100.0 * a.mean, 100.0 * a.std)
}

fn main() {
    #[cfg(feature = "flex")]
    if arg("--backend").as_deref() != Some("ndarray") {
        return run::<burn_flex::Flex>("flex");
    }
    run::<burn_ndarray::NdArray>("ndarray")
}

fn run<B: Backend>(backend: &str) {
    let iterations: usize = arg("--iterations").and_then(|v| v.parse().ok()).unwrap_or(300);
    let only = arg("--only");
    let sets = [
        ("mnist10k", "../shared/data/mnist10k/mnist10k.npz"),
        ("pneumoniamnist-balanced", "../shared/data/pneumoniamnist-balanced/pneumoniamnist_balanced.npz"),
    ];
    println!("LeNet, 10 steps x 3 epochs, 1 image per class per step, noise init, learned labels and lrs, {iterations} outer iterations, f32 {backend} CPU");
    println!("| data | distilled images | iterations | time s | distilled % | random subset % (lr) | full data % |");
    println!("|---|---|---|---|---|---|---|");
    for (name, path) in sets {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let config = Config { max_iterations: Some(iterations), ..Config::default() };
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                println!("| {name} | {path}: {e} | | | | | |");
                continue;
            }
        };
        let prepared = Prepared::from_npz(load_npz(&bytes, Some(28)).unwrap(), &config).unwrap();
        let device = Default::default();
        let mut d = Distiller::<B>::new(config.clone(), &prepared.train, prepared.norm, &device).unwrap();
        let start = Instant::now();
        let outcome = pollster::block_on(run_to_end(&mut d, |r| {
            if r.iteration % 50 == 0 {
                eprintln!("{name}: iteration {} loss {:.4}", r.iteration, r.loss);
            }
        }));
        let secs = start.elapsed().as_secs_f64();
        let distilled = pollster::block_on(d.distilled()).unwrap();
        let e = pollster::block_on(evaluate(&config, &distilled, d.fixed_init(), &prepared.train, &prepared.test, prepared.norm, &device)).unwrap();
        let full = e.full_data.as_ref().map(pct).unwrap_or_default();
        println!(
            "| {name} | {} | {} | {secs:.0} | {} | {} ({}) | {full} |",
            distilled.len(),
            outcome.iterations,
            pct(&e.distilled),
            pct(&e.random_subset),
            e.random_subset_lr
        );
    }
}
