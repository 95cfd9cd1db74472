//! Times one meta-step of the engine next to the PyTorch reference (`bench/torch_metastep.py`,
//! run when `torch` is importable) on the same configuration and machine, and prints a table.
//!
//!     cargo run --release --example bench_metastep [-- --repeats 5]   (time)
//!     cargo run --release --example bench_metastep -- --memory         (peak memory)
//!     cargo run --release --features wgpu --example bench_metastep -- --gpu   (burn-wgpu next to
//!         PyTorch on CUDA: `bench/HISTORY.md`, GPU)
//!
//!     cargo run --release --example bench_metastep -- --private [--repeats 5]   (a differentially
//!         private iteration next to a plain one: time and peak memory)
//!
//! `--only flex` keeps the CPU table's columns whose name holds "flex"; with `--gpu`, `--only`
//! takes column names separated by commas.

/// Large tensors are freed and allocated again every step; glibc's malloc unmaps and remaps them
/// (page faults), mimalloc reuses them (bench/HISTORY.md, change 10).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod python;

use std::process::Command;
use std::time::Instant;

use anondistill::{config::{Config, NetKind, PrivacyConfig}, privacy::PUBLIC_NORMALIZATION, engine::{ConvImpl, Engine, InnerGrad, OnceImpl}, data::{Dataset, Normalization}, distill::Distiller, rng::{normal, rng, Stream}};
use burn_ndarray::NdArray;

fn random_data(classes: usize, n: usize, size: usize) -> Dataset {
    let pixels = normal(&mut rng(0, Stream::Baseline), n * size * size, 0.3).into_iter().map(|v| (v + 0.5).clamp(0.0, 1.0)).collect();
    Dataset::new(size, pixels, (0..n).map(|i| i % classes).collect(), (0..classes).map(|c| c.to_string()).collect())
}

/// A memory figure of this process from `/proc/self/status`, in MiB (NaN elsewhere).
fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:")));
    line.and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).map_or(f64::NAN, |kib| kib / 1024.0)
}

/// How convolutions and inner gradients are computed, and which of the inner gradients'
/// operations are differentiated once with the backend's kernels.
type Variant = (ConvImpl, InnerGrad, OnceImpl);

/// The columns of the timing table: backend and variant.
const COLUMNS: [(&str, &str, Variant); 6] = [
    ("ndarray conv2d nested", "ndarray", (ConvImpl::Direct, InnerGrad::Nested, OnceImpl::Auto)),
    ("ndarray im2col nested", "ndarray", (ConvImpl::Im2col, InnerGrad::Nested, OnceImpl::Auto)),
    ("ndarray im2col manual", "ndarray", (ConvImpl::Im2col, InnerGrad::Manual, OnceImpl::Auto)),
    ("flex conv2d nested", "flex", (ConvImpl::Direct, InnerGrad::Nested, OnceImpl::Auto)),
    ("flex conv2d manual", "flex", (ConvImpl::Direct, InnerGrad::Manual, OnceImpl::Auto)),
    ("flex im2col manual", "flex", (ConvImpl::Im2col, InnerGrad::Manual, OnceImpl::Auto)),
];

fn defaults() -> Variant {
    let e = Engine::default();
    (e.conv, e.inner_grad, e.once_ops)
}

static RSS_BEFORE: std::sync::Mutex<f64> = std::sync::Mutex::new(f64::NAN);

fn ours<B: burn_tensor::backend::Backend>(net: NetKind, v: Variant, batch: usize, repeats: usize) -> f64 {
    ours_with::<B>(Config { net, batch_size: batch, ..Config::default() }, Engine { conv: v.0, inner_grad: v.1, once_ops: v.2 }, repeats)
}

/// The median time of one meta-step: one network per iteration whatever the default, the unit
/// the PyTorch reference times.
fn ours_with<B: burn_tensor::backend::Backend>(config: Config, engine: Engine, repeats: usize) -> f64 {
    let config = Config { nets_per_iteration: 1, ..config };
    let batch = config.batch_size;
    let data = random_data(10, batch, 28);
    let mut d = Distiller::<B>::with_engine(config, engine, &data, Normalization::of(&data), &Default::default()).unwrap();
    *RSS_BEFORE.lock().unwrap() = status_mib("VmRSS");
    median_step(&mut d, repeats)
}

/// The median time of `repeats` outer iterations of `d` after one warm-up.
fn median_step<B: burn_tensor::backend::Backend>(d: &mut Distiller<B>, repeats: usize) -> f64 {
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
fn flex(net: NetKind, v: Variant, batch: usize, repeats: usize) -> Option<f64> {
    Some(ours::<burn_flex::Flex>(net, v, batch, repeats))
}

#[cfg(not(feature = "flex"))]
fn flex(_: NetKind, _: Variant, _: usize, _: usize) -> Option<f64> {
    None
}

fn torch_json(net: &str, batch: usize, repeats: usize) -> Option<serde_json::Value> {
    torch_json_on("cpu", net, batch, repeats)
}

fn torch_json_on(device: &str, net: &str, batch: usize, repeats: usize) -> Option<serde_json::Value> {
    python::json(&["bench/torch_metastep.py", "--device", device, "--net", net, "--batch", &batch.to_string(), "--repeats", &repeats.to_string()])
}

fn torch(net: &str, batch: usize, repeats: usize) -> Option<(f64, u64)> {
    let v = torch_json(net, batch, repeats)?;
    Some((v["median_s"].as_f64()?, v["threads"].as_u64()?))
}

/// Runs one cell in a fresh process of this program (`--cell NET BACKEND`, batch 1024) and
/// returns its resident memory before the first meta-step and its peak, in MiB.
fn memory_cell(net: &str, backend: &str) -> Option<(f64, f64)> {
    let out = Command::new(std::env::current_exe().ok()?).args(["--cell", net, backend]).output().ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((v["rss_before_mib"].as_f64()?, v["peak_mib"].as_f64()?))
}

/// [`ours`] for a network and a backend named on the command line (`None`: not built in).
fn ours_named(net: &str, backend: &str, v: Variant, batch: usize, repeats: usize) -> Option<f64> {
    let kind = if net == "lenet" { NetKind::LeNet } else { NetKind::ConvNet };
    match backend {
        "flex" => flex(kind, v, batch, repeats),
        #[cfg(feature = "wgpu")]
        "wgpu" => Some(ours::<burn_wgpu::Wgpu>(kind, v, batch, repeats)),
        _ => Some(ours::<NdArray>(kind, v, batch, repeats)),
    }
}

fn cell(net: &str, backend: &str) {
    let t = ours_named(net, backend, defaults(), 1024, 1).unwrap_or(f64::NAN);
    let before = *RSS_BEFORE.lock().unwrap();
    println!("{}", serde_json::json!({ "median_s": t, "rss_before_mib": before, "peak_mib": status_mib("VmHWM") }));
}

/// Where a meta-step's time goes: the unrolled inner steps (30 steps, a real batch of 16) against
/// the real batch (one inner step, batch 1024), on the default variant.
fn split_table() {
    println!("| network | backend | 30 inner steps, batch 1024 | 30 inner steps, batch 16 | 1 inner step, batch 1024 |");
    println!("|---|---|---|---|---|");
    for net in [NetKind::LeNet, NetKind::ConvNet] {
        let base = Config { net, ..Config::default() };
        let cases = [
            Config { batch_size: 1024, ..base.clone() },
            Config { batch_size: 16, ..base.clone() },
            Config { batch_size: 1024, steps: 1, epochs: 1, ..base.clone() },
        ];
        let nd: Vec<String> = cases.iter().map(|c| format!("{:.3}", ours_with::<NdArray>(c.clone(), Engine::default(), 3))).collect();
        println!("| {net:?} | ndarray | {} |", nd.join(" | "));
        #[cfg(feature = "flex")]
        {
            let fl: Vec<String> = cases.iter().map(|c| format!("{:.3}", ours_with::<burn_flex::Flex>(c.clone(), Engine::default(), 3))).collect();
            println!("| {net:?} | flex | {} |", fl.join(" | "));
        }
    }
}

/// One cell of the private table: the whole default outer iteration (4 networks, 10 steps × 3
/// epochs, LeNet or ConvNet) on 4,096 random 28 × 28 images, as patients of `per_patient` images,
/// plain or with differential privacy at ε = 8 (batch 1,024: a Poisson sample of rate 0.25),
/// with the public normalisation either way. The median time of `repeats` iterations after one
/// warm-up; the peak resident memory of this process.
fn private_cell<B: burn_tensor::backend::Backend>(net: NetKind, per_patient: usize, private: bool, repeats: usize) -> (f64, f64) {
    let n = 4096;
    let mut data = random_data(10, n, 28);
    data.patients = (0..n).map(|i| (i / per_patient) as u64).collect();
    let privacy = PrivacyConfig { sample_rate: Some(0.25), ..PrivacyConfig::default() };
    let config = Config { net, batch_size: 1024, privacy: private.then_some(privacy), max_iterations: Some(300), ..Config::default() };
    let mut d = Distiller::<B>::new(config, &data, PUBLIC_NORMALIZATION, &Default::default()).unwrap();
    (median_step(&mut d, repeats), status_mib("VmHWM"))
}

/// `--private-cell NET BACKEND PER_PATIENT plain|private REPEATS`: [`private_cell`] in this
/// process, printed as JSON.
fn private_cell_named(args: &[String]) {
    let net = if args[0] == "lenet" { NetKind::LeNet } else { NetKind::ConvNet };
    let per_patient: usize = args[2].parse().expect("images per patient");
    let private = args[3] == "private";
    let repeats: usize = args[4].parse().expect("repeats");
    let (t, peak) = match args[1].as_str() {
        #[cfg(feature = "flex")]
        "flex" => private_cell::<burn_flex::Flex>(net, per_patient, private, repeats),
        _ => private_cell::<NdArray>(net, per_patient, private, repeats),
    };
    println!("{}", serde_json::json!({ "median_s": t, "peak_mib": peak }));
}

/// `--private`: a private outer iteration next to a plain one at the same settings, each cell in
/// a fresh process (for its peak memory). Issue 32's target: private ≤ 1.5 × plain.
fn private_table(repeats: usize) {
    let backends: &[&str] = if cfg!(feature = "flex") { &["flex", "ndarray"] } else { &["ndarray"] };
    println!("outer iteration with differential privacy (epsilon 8, Poisson rate 0.25 of 4,096 images, clip 1) next to the plain one: 4 networks, 10 steps x 3 epochs, 28x28, 10 classes; median of {repeats} after one warm-up; seconds, peak resident MiB");
    println!("| network | backend | images per patient | plain s | private s | ratio (target ≤ 1.5) | plain peak MiB | private peak MiB |");
    println!("|---|---|---|---|---|---|---|---|");
    let run = |net: &str, backend: &str, per: usize, mode: &str| -> Option<(f64, f64)> {
        let out = Command::new(std::env::current_exe().ok()?).args(["--private-cell", net, backend, &per.to_string(), mode, &repeats.to_string()]).output().ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        Some((v["median_s"].as_f64()?, v["peak_mib"].as_f64()?))
    };
    for net in ["lenet", "convnet"] {
        for &backend in backends {
            for per in [1, 4] {
                let (plain, private) = (run(net, backend, per, "plain"), run(net, backend, per, "private"));
                let f = |c: Option<(f64, f64)>, i: usize| c.map_or("n/a".into(), |c| if i == 0 { format!("{:.3}", c.0) } else { format!("{:.0}", c.1) });
                let ratio = match (plain, private) {
                    (Some(a), Some(b)) => format!("{:.2}× ({})", b.0 / a.0, if b.0 <= 1.5 * a.0 { "met" } else { "missed" }),
                    _ => "n/a".into(),
                };
                println!("| {net} | {backend} | {per} | {} | {} | {ratio} | {} | {} |", f(plain, 0), f(private, 0), f(plain, 1), f(private, 1));
            }
        }
    }
}

fn memory_table(repeats: usize) {
    println!();
    println!("peak memory of the meta-step at the default configuration (LeNet and ConvNet, batch 1024), one process each:");
    println!("resident MiB before the first meta-step / peak during warm-up plus one step / increase");
    println!("| network | ndarray | flex | PyTorch |");
    println!("|---|---|---|---|");
    for net in ["lenet", "convnet"] {
        let fmt = |m: Option<(f64, f64)>| m.map_or("n/a".into(), |(b, p)| format!("{b:.0} / {p:.0} / +{:.0}", p - b));
        let py = torch_json(net, 1024, repeats).and_then(|v| Some((v["rss_before_mib"].as_f64()?, v["peak_mib"].as_f64()?)));
        println!("| {net} | {} | {} | {} |", fmt(memory_cell(net, "ndarray")), fmt(memory_cell(net, "flex")), fmt(py));
    }
}

/// `--loop NET BACKEND BATCH STEPS [nested|manual|once-auto|once-off|once-pooling|once-all]`:
/// only meta-steps, for a profiler (`once-…`: manual inner gradients with that `once_ops`).
fn profile_loop(net: &str, backend: &str, batch: usize, steps: usize, grad: Option<&str>) {
    let (conv, _, once) = defaults();
    let v = match grad {
        Some("manual") => (conv, InnerGrad::Manual, once),
        Some("nested") => (conv, InnerGrad::Nested, once),
        Some(other) => {
            let once = match other {
                "once-auto" => OnceImpl::Auto,
                "once-off" => OnceImpl::Off,
                "once-pooling" => OnceImpl::Pooling,
                "once-all" => OnceImpl::All,
                _ => panic!("the variant is manual, nested or once-(auto|off|pooling|all), not {other}"),
            };
            (conv, InnerGrad::Manual, once)
        }
        None => defaults(),
    };
    let t = ours_named(net, backend, v, batch, steps).unwrap_or(f64::NAN);
    println!("median {t:.3} s over {steps} meta-steps");
}

/// The GPU columns: burn-wgpu (with fusion and autotune, its defaults) on the default adapter.
#[cfg(feature = "wgpu")]
const GPU_COLUMNS: [(&str, Variant); 5] = [
    ("wgpu conv2d manual", (ConvImpl::Direct, InnerGrad::Manual, OnceImpl::Auto)),
    ("wgpu conv2d manual once-pooling", (ConvImpl::Direct, InnerGrad::Manual, OnceImpl::Pooling)),
    ("wgpu conv2d manual once-all", (ConvImpl::Direct, InnerGrad::Manual, OnceImpl::All)),
    ("wgpu im2col manual", (ConvImpl::Im2col, InnerGrad::Manual, OnceImpl::Auto)),
    ("wgpu conv2d nested", (ConvImpl::Direct, InnerGrad::Nested, OnceImpl::Auto)),
];

/// `--gpu`: the timing table on a GPU, ours through burn-wgpu against PyTorch on CUDA. Each cell
/// prints `cell NET BATCH COLUMN start|end UNIX_SECONDS` to stderr, so that a sampler of the
/// device's memory (`nvidia-smi`) can be matched to it.
#[cfg(feature = "wgpu")]
fn gpu_table(repeats: usize, only: &str) {
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let columns: Vec<_> = GPU_COLUMNS.iter().filter(|c| only.is_empty() || only.split(',').any(|o| c.0 == o)).collect();
    println!("meta-step on the GPU: 28x28, 10 classes, 10 images per step, 10 steps x 3 epochs, f32; median of {repeats} after one warm-up; seconds, and ratio to PyTorch (CUDA)");
    println!("| network | real batch | PyTorch CUDA | PyTorch peak allocated MiB | {} |", columns.iter().map(|c| c.0).collect::<Vec<_>>().join(" | "));
    println!("|---|---|---|---|{}", "---|".repeat(columns.len()));
    for (net, name) in [(NetKind::LeNet, "lenet"), (NetKind::ConvNet, "convnet")] {
        for batch in [256, 1024] {
            eprintln!("cell {name} {batch} pytorch start {:.2}", now());
            let p = torch_json_on("cuda", name, batch, repeats);
            eprintln!("cell {name} {batch} pytorch end {:.2}", now());
            let pt = p.as_ref().and_then(|v| v["median_s"].as_f64());
            let cells: Vec<String> = columns
                .iter()
                .map(|&&(column, v)| {
                    eprintln!("cell {name} {batch} {} start {:.2}", column.replace(' ', "_"), now());
                    let t = ours::<burn_wgpu::Wgpu>(net, v, batch, repeats);
                    eprintln!("cell {name} {batch} {} end {:.2}", column.replace(' ', "_"), now());
                    pt.map_or(format!("{t:.4}"), |p| format!("{t:.4} ({:.2}×)", t / p))
                })
                .collect();
            let mem = p.as_ref().and_then(|v| v["cuda_peak_allocated_mib"].as_f64()).map_or("n/a".into(), |m| format!("{m:.0}"));
            let ps = pt.map_or("n/a".into(), |p| format!("{p:.4}"));
            println!("| {name} | {batch} | {ps} | {mem} | {} |", cells.join(" | "));
        }
    }
    if let Some(v) = torch_json_on("cuda", "lenet", 256, 1) {
        println!("PyTorch {} on {}", v["torch"], v["gpu"]);
    }
}

#[cfg(not(feature = "wgpu"))]
fn gpu_table(_: usize, _: &str) {
    eprintln!("this build has no wgpu backend: cargo run --release --features wgpu --example bench_metastep -- --gpu");
    std::process::exit(2);
}

fn main() {
    anondistill::native::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--loop") {
        let n = |j: usize| args[i + j].parse().expect("a number");
        return profile_loop(&args[i + 1], &args[i + 2], n(3), n(4), args.get(i + 5).map(String::as_str));
    }
    if let Some(i) = args.iter().position(|a| a == "--cell") {
        return cell(&args[i + 1], &args[i + 2]);
    }
    if let Some(i) = args.iter().position(|a| a == "--private-cell") {
        return private_cell_named(&args[i + 1..]);
    }
    if args.iter().any(|a| a == "--private") {
        let repeats = std::env::args().skip_while(|a| a != "--repeats").nth(1).and_then(|v| v.parse().ok()).unwrap_or(3);
        return private_table(repeats);
    }
    if args.iter().any(|a| a == "--memory") {
        return memory_table(1);
    }
    if args.iter().any(|a| a == "--split") {
        return split_table();
    }
    let repeats = std::env::args().skip_while(|a| a != "--repeats").nth(1).and_then(|v| v.parse().ok()).unwrap_or(3);
    let only = std::env::args().skip_while(|a| a != "--only").nth(1).unwrap_or_default();
    if args.iter().any(|a| a == "--gpu") {
        return gpu_table(repeats, &only);
    }
    let columns: Vec<_> = COLUMNS.iter().filter(|c| c.0.contains(only.as_str())).collect();
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("meta-step: 28x28, 10 classes, 10 images per step, 10 steps x 3 epochs, f32, CPU; median of {repeats}; seconds, and ratio to PyTorch");
    println!("| network | real batch | PyTorch | {} | threads ours / PyTorch |", columns.iter().map(|c| c.0).collect::<Vec<_>>().join(" | "));
    println!("|---|---|---|{}---|", "---|".repeat(columns.len()));
    for name in ["lenet", "convnet"] {
        for batch in [256, 1024] {
            let p = torch(name, batch, repeats);
            let cells: Vec<String> = columns
                .iter()
                .map(|&&(_, backend, v)| {
                    let t = ours_named(name, backend, v, batch, repeats);
                    match (t, p) {
                        (Some(t), Some((p, _))) => format!("{t:.3} ({:.2}×)", t / p),
                        (Some(t), None) => format!("{t:.3}"),
                        _ => "n/a".into(),
                    }
                })
                .collect();
            let (ps, pt) = p.map_or(("n/a".into(), "-".into()), |(p, t)| (format!("{p:.3}"), t.to_string()));
            println!("| {name} | {batch} | {ps} | {} | {threads} / {pt} |", cells.join(" | "));
        }
    }
}
