//! Issue 44's speed row: one matching iteration against one unrolled iteration on the same data,
//! the same number and size of distilled images, in the same run (flex, native). Also a private
//! matching run's release (its members' pass) and its optimisation iteration (no member). And,
//! when `torch` is importable, the PyTorch reference of the same matching iteration without DSA
//! (`bench/torch_matching.py`, the same shapes and real-image counts) on the same machine.
//!
//!     cargo run --release --example bench_objectives [-- REPEATS]
//!
//! On the demo (247 training images, 28 × 28, 2 classes), 20 distilled images: the unrolled
//! objective with the command line's defaults (4 networks, 10 steps × 3 epochs, LeNet), matching
//! with its defaults (embedder width 32, depth 3, 128 real images a class).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod python;

use std::time::Instant;

use anondistill::{
    config::{Config, Objective, PrivacyConfig},
    data::{load_files, Grouping},
    demo::demo_files,
    distill::Distiller,
    pipeline::Prepared,
    privacy::PUBLIC_NORMALIZATION,
};

type B = burn_flex::Flex;

/// Median seconds of `repeats` iterations of `d` after one warm-up.
fn median(d: &mut Distiller<B>, repeats: usize) -> f64 {
    pollster::block_on(d.step()).unwrap();
    let mut t: Vec<f64> = (0..repeats)
        .map(|_| {
            let s = Instant::now();
            pollster::block_on(d.step()).unwrap();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[repeats / 2]
}

/// The PyTorch reference's median seconds per matching iteration (no DSA) and its threads, with
/// `real[c]` real images of class c and `per_class` distilled images of each; `None` (and why,
/// on stderr) when it cannot run.
fn torch(real: &[usize], per_class: usize, repeats: usize) -> Option<(f64, u64)> {
    let real = real.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
    let v = python::json(&["bench/torch_matching.py", "--real", &real, "--per-class", &per_class.to_string(), "--repeats", &repeats.to_string()])?;
    Some((v["median_s"].as_f64()?, v["threads"].as_u64()?))
}

fn main() {
    let repeats: usize = std::env::args().nth(1).map_or(21, |s| s.parse().unwrap());
    let base = Config { holdout_fraction: 0.2, max_iterations: Some(10_000), epochs_outer: 1_000_000, ..Config::default() };
    let prepared = Prepared::from_loaded(load_files(demo_files(), 28, &Grouping::default()).unwrap(), &base).unwrap();
    let device = Default::default();
    let make = |c: &Config, norm| Distiller::<B>::new(c.clone(), &prepared.train, norm, &device).unwrap();
    let unrolled = median(&mut make(&base, prepared.norm), repeats);
    let matching_config = Config { objective: Objective::Matching, ..base.clone() };
    let matching = median(&mut make(&matching_config, prepared.norm), repeats);
    let plain = median(&mut make(&Config { dsa: false, ..matching_config.clone() }, prepared.norm), repeats);
    // Private matching: every release first (R of them), then the optimisation.
    let draws = repeats + 1;
    let private = Config { privacy: Some(PrivacyConfig { epsilon: 8.0, draws, ..Default::default() }), ..matching_config };
    let mut d = make(&private, PUBLIC_NORMALIZATION);
    let release = median(&mut d, repeats);
    assert!(d.members_dropped());
    let optimise = median(&mut d, repeats);
    // The reference embeds what the engine's iteration embeds: up to `real_per_class` of each class.
    let real: Vec<usize> = prepared.train.class_counts().iter().map(|&n| n.min(base.real_per_class)).collect();
    let reference = torch(&real, 10, repeats);
    println!("demo, {} training images, 20 distilled images 28 × 28, flex, median of {repeats} iterations after a warm-up", prepared.train.len());
    println!("| what | s per iteration | ÷ unrolled |");
    println!("|---|---|---|");
    for (what, t) in [
        ("unrolled (4 networks, 10 steps × 3 epochs, LeNet)", unrolled),
        ("matching (embedder width 32, 128 real a class, DSA: the default)", matching),
        ("matching without DSA", plain),
        ("private matching: one release (q = 1, every member embedded, DSA)", release),
        ("private matching: one optimisation iteration (no member)", optimise),
    ] {
        println!("| {what} | {t:.4} | {:.3} |", t / unrolled);
    }
    match reference {
        Some((t, threads)) => {
            println!("| PyTorch reference: matching without DSA (`bench/torch_matching.py`, {threads} threads, real images {real:?}) | {t:.4} | {:.3} |", t / unrolled);
            println!("\nmatching without DSA ÷ the PyTorch reference: {:.2}×", plain / t);
        }
        None => println!("\n(PyTorch reference not run)"),
    }
}
