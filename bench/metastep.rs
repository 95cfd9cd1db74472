//! Times one meta-step of the engine next to the PyTorch reference (`bench/torch_metastep.py`,
//! run when `torch` is importable) on the same configuration and machine, and prints a table.
//!
//!     cargo run --release --example bench_metastep [-- --repeats 5]

use std::process::Command;
use std::time::Instant;

use anondistill::{config::{Config, ConvImpl, NetKind}, data::{Dataset, Normalization}, distill::Distiller, rng::{normal, rng, Stream}};
use burn_ndarray::NdArray;

fn random_data(classes: usize, n: usize, size: usize) -> Dataset {
    let pixels = normal(&mut rng(0, Stream::Baseline), n * size * size, 0.3).into_iter().map(|v| (v + 0.5).clamp(0.0, 1.0)).collect();
    Dataset { size, pixels, labels: (0..n).map(|i| i % classes).collect(), classes: (0..classes).map(|c| c.to_string()).collect() }
}

fn ours<B: burn_tensor::backend::Backend>(net: NetKind, conv: ConvImpl, batch: usize, repeats: usize) -> f64 {
    let config = Config { net, conv, batch_size: batch, ..Config::default() };
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
fn flex(net: NetKind, conv: ConvImpl, batch: usize, repeats: usize) -> Option<f64> {
    Some(ours::<burn_flex::Flex>(net, conv, batch, repeats))
}

#[cfg(not(feature = "flex"))]
fn flex(_: NetKind, _: ConvImpl, _: usize, _: usize) -> Option<f64> {
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
    println!("meta-step: 28x28, 10 classes, 10 images per step, 10 steps x 3 epochs, f32, CPU; median of {repeats}; seconds, and ratio to PyTorch");
    println!("| network | real batch | PyTorch | ndarray direct | ndarray im2col | flex direct | flex im2col | threads ours / PyTorch |");
    println!("|---|---|---|---|---|---|---|---|");
    for (net, name) in [(NetKind::LeNet, "lenet"), (NetKind::ConvNet, "convnet")] {
        for batch in [256, 1024] {
            let p = torch(name, batch, repeats);
            let cell = |t: Option<f64>| match (t, p) {
                (Some(t), Some((p, _))) => format!("{t:.3} ({:.2}×)", t / p),
                (Some(t), None) => format!("{t:.3}"),
                _ => "n/a".into(),
            };
            let nd = [ConvImpl::Direct, ConvImpl::Im2col].map(|c| cell(Some(ours::<NdArray>(net, c, batch, repeats))));
            let fl = [ConvImpl::Direct, ConvImpl::Im2col].map(|c| cell(flex(net, c, batch, repeats)));
            let (ps, pt) = p.map_or(("n/a".into(), "-".into()), |(p, t)| (format!("{p:.3}"), t.to_string()));
            println!("| {name} | {batch} | {ps} | {} | {} | {} | {} | {threads} / {pt} |", nd[0], nd[1], fl[0], fl[1]);
        }
    }
}
