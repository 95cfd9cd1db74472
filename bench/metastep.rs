//! Times one meta-step of the engine next to the PyTorch reference (`bench/torch_metastep.py`,
//! run when `torch` is importable) on the same configuration and machine, and prints a table.
//!
//!     cargo run --release --example bench_metastep [-- --repeats 5]

use std::process::Command;
use std::time::Instant;

use anondistill::{config::{Config, NetKind}, data::{Dataset, Normalization}, distill::Distiller, rng::{normal, rng, Stream}};
use burn_ndarray::NdArray;

fn random_data(classes: usize, n: usize, size: usize) -> Dataset {
    let pixels = normal(&mut rng(0, Stream::Baseline), n * size * size, 0.3).into_iter().map(|v| (v + 0.5).clamp(0.0, 1.0)).collect();
    Dataset { size, pixels, labels: (0..n).map(|i| i % classes).collect(), classes: (0..classes).map(|c| c.to_string()).collect() }
}

fn ours<B: burn_tensor::backend::Backend>(net: NetKind, batch: usize, repeats: usize) -> f64 {
    let config = Config { net, batch_size: batch, ..Config::default() };
    let data = random_data(10, batch, 28);
    let mut d = Distiller::<B>::new(config, &data, Normalization::of(&data), &Default::default()).unwrap();
    pollster::block_on(d.step()).unwrap(); // warm-up
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            pollster::block_on(d.step()).unwrap();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[cfg(feature = "flex")]
fn flex(net: NetKind, batch: usize, repeats: usize) -> Option<f64> {
    Some(ours::<burn_flex::Flex>(net, batch, repeats))
}

#[cfg(not(feature = "flex"))]
fn flex(_: NetKind, _: usize, _: usize) -> Option<f64> {
    None
}

fn torch(net: &str, batch: usize, repeats: usize) -> Option<(f64, u64)> {
    let out = Command::new("python3")
        .args(["bench/torch_metastep.py", "--net", net, "--batch", &batch.to_string(), "--repeats", &repeats.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("PyTorch reference not run: {}", String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or(""));
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["median_s"].as_f64()?, v["threads"].as_u64()?))
}

fn main() {
    let repeats = std::env::args().skip_while(|a| a != "--repeats").nth(1).and_then(|v| v.parse().ok()).unwrap_or(3);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("meta-step: 28x28, 10 classes, 10 images per step, 10 steps x 3 epochs, f32, CPU; median of {repeats}");
    println!("| network | real batch | ndarray s | flex s | PyTorch s | ndarray/PyTorch | flex/PyTorch | threads ours / PyTorch |");
    println!("|---|---|---|---|---|---|---|---|");
    for (net, name) in [(NetKind::LeNet, "lenet"), (NetKind::ConvNet, "convnet")] {
        for batch in [256, 1024] {
            let t = ours::<NdArray>(net, batch, repeats);
            let f = flex(net, batch, repeats);
            let fs = f.map_or("n/a".into(), |f| format!("{f:.3}"));
            match torch(name, batch, repeats) {
                Some((p, pt)) => {
                    let fr = f.map_or("n/a".into(), |f| format!("{:.2}", f / p));
                    println!("| {name} | {batch} | {t:.3} | {fs} | {p:.3} | {:.2} | {fr} | {threads} / {pt} |", t / p)
                }
                None => println!("| {name} | {batch} | {t:.3} | {fs} | n/a | n/a | n/a | {threads} / - |"),
            }
        }
    }
}
