//! The PyTorch snippet of README.md, run as it stands on archives the command line writes with
//! the command line's defaults, with the page's (LeNet width 2) and with a ConvNet, each with a
//! fixed initial network so that the replay is deterministic: the accuracy PyTorch gets on the
//! demo's test split must be the accuracy the engine put in the manifest. Matching archives (for
//! LeNet, and for the ConvNet with instance norm) are trained by the snippet's ordinary loop (the
//! manifest's recipe) from PyTorch's own random networks: their mean accuracy must land near the
//! manifest's. Needs `python3` with `torch` and `safetensors`;
//! where they are missing (CI) the test says so and checks nothing.

use std::{path::Path, process::Command};

use anondistill::{config::Config, data::{load_files, Grouping}, demo::demo_files, pipeline::Prepared};

const BIN: &str = env!("CARGO_BIN_EXE_anondistill");

fn torch_present() -> bool {
    Command::new("python3").args(["-c", "import torch, safetensors"]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// The README's ```python block.
fn snippet() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("```python\n").expect("README.md has a python block") + "```python\n".len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_string()
}

/// Writes `values` as little-endian f32, the layout the scripts read with `np.fromfile(…, '<f4')`.
fn write_f32(path: &Path, values: impl IntoIterator<Item = f32>) {
    std::fs::write(path, values.into_iter().flat_map(f32::to_le_bytes).collect::<Vec<u8>>()).unwrap();
}

/// Runs `script` with `python3`; the numbers it printed, separated by white space. `what` names
/// the script in the failure message.
fn python_numbers(script: &str, what: &str) -> Vec<f64> {
    let out = Command::new("python3").args(["-c", script]).output().unwrap();
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(|t| t.parse().unwrap()).collect()
}

/// Distils (a few iterations, fixed init) with `options`; returns PyTorch's accuracy on the demo's
/// test split and the manifest's.
fn check(options: &[&str]) -> (f64, f64) {
    let mut args = vec!["--known-init", "true", "--max-iterations", "6"];
    args.extend_from_slice(options);
    let v = run_snippet(&args, 1);
    assert_eq!(v[2], 0.0, "one fixed network: the manifest's accuracy has no spread");
    (v[0], v[1])
}

/// Distils with `options`, runs the README's snippet `runs` times (torch seeds 0, 1, …); returns
/// PyTorch's mean accuracy on the demo's test split, the manifest's mean and its std.
fn run_snippet(options: &[&str], runs: usize) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("result.zip");
    let mut args = vec!["distill", "--out", zip.to_str().unwrap(), "--no-audit"];
    args.extend_from_slice(options);
    let out = Command::new(BIN).args(&args).output().unwrap();
    assert!(out.status.success(), "distill failed: {}", String::from_utf8_lossy(&out.stderr));

    // The test split the command line evaluated on (the same seeded split of the demo).
    let test = Prepared::from_loaded(load_files(demo_files(), 28, &Grouping::default()).unwrap(), &Config::default()).unwrap().test;
    write_f32(&dir.path().join("test.f32"), test.pixels.iter().map(|&p| p * 255.0));
    let labels: Vec<String> = test.labels.iter().map(|l| l.to_string()).collect();
    std::fs::write(dir.path().join("snippet.py"), snippet()).unwrap();
    let script = format!(
        "import os, torch\nos.chdir({dir:?})\nimport numpy as np\npixels = np.fromfile('test.f32', dtype='<f4').reshape(-1, {s}, {s})\n\
         truth = np.array([{}])\nacc = []\nfor seed in range({runs}):\n    torch.manual_seed(seed)\n    exec(open('snippet.py').read())\n    acc.append(float((classify(pixels).numpy() == truth).mean()))\n\
         print(repr(sum(acc) / len(acc)), repr(float(m['metrics']['distilled']['accuracy']['mean'])), repr(float(m['metrics']['distilled']['accuracy']['std'])))\n",
        labels.join(","),
        dir = dir.path().to_str().unwrap(),
        s = test.size
    );
    let v = python_numbers(&script, "the README's snippet");
    println!("{options:?}: PyTorch {:.4} (mean of {runs}), manifest {:.4} ± {} on {} test images", v[0], v[1], v[2], test.len());
    v
}

#[test]
fn the_readme_pytorch_snippet_replays_the_archive() {
    if !torch_present() {
        println!("skipped: python3 with torch and safetensors is not installed here, so the README's snippet was not run");
        return;
    }
    let test_len = Prepared::from_loaded(load_files(demo_files(), 28, &Grouping::default()).unwrap(), &Config::default()).unwrap().test.len();
    for options in [&[][..], &["--lenet-width", "2"][..], &["--label-mode", "softmax"][..], &["--net", "convnet"][..]] {
        let (torch, engine) = check(options);
        // Float rounding may flip an image whose two logits are nearly equal; no more than one.
        assert!((torch - engine).abs() <= 1.0 / test_len as f64 + 1e-9, "{options:?}: PyTorch {torch} against the engine's {engine}");
    }
}

#[test]
fn the_readme_pytorch_snippet_trains_a_matching_archive_by_its_recipe() {
    if !torch_present() {
        println!("skipped: python3 with torch and safetensors is not installed here, so the README's snippet was not run");
        return;
    }
    // The recipe trains from PyTorch's own random networks: no two runs are the same network, so
    // the mean of 5 is compared with the manifest's mean over its 10, within 3 of its std (the
    // std of the engine's networks, at least 2 test images' worth).
    // With DSA and the recipe's augmentation on, so that the snippet's augmentation runs too.
    // The second archive is trained into the field's ConvNet with instance norm.
    let matching = ["--objective", "matching", "--dsa", "true", "--recipe-augment", "true", "--max-iterations", "300", "--full-data-nets", "0"];
    for extra in [&[][..], &["--net", "convnet", "--convnet-norm", "instance"][..]] {
        let v = run_snippet(&[&matching[..], extra].concat(), 5);
        let (torch, engine, std) = (v[0], v[1], v[2]);
        println!("{extra:?}: PyTorch {torch}, the manifest {engine} ± {std}");
        assert!((torch - engine).abs() <= 3.0 * std.max(2.0 / 80.0), "{extra:?}: PyTorch's networks reach {torch} where the manifest says {engine} ± {std}");
    }
}

/// The snippet's `augment` against the engine's (`anondistill::augment`): the same image, 4,000
/// draws each, the mean squared change per pixel and the share of pixels set to zero (cutouts,
/// pixels shifted or turned in from outside; below 1e-3, since `grid_sample`'s whole-pixel
/// shifts leave a rounding error on the edge) must agree within 10 % (the two draw with their
/// own random streams).
#[test]
fn the_readme_augmentation_is_the_engines() {
    use anondistill::augment::{apply, draw};
    use burn_ndarray::NdArray;
    use burn_tensor::{Tensor, TensorData};
    use rand::SeedableRng;
    if !torch_present() {
        println!("skipped: python3 with torch is not installed here, so the README's augmentation was not run");
        return;
    }
    let (runs, s) = (4000, 28);
    let demo = Prepared::from_loaded(load_files(demo_files(), s, &Grouping::default()).unwrap(), &Config::default()).unwrap();
    let norm = demo.norm;
    let image: Vec<f32> = demo.test.image(0).iter().map(|&v| norm.normalise(v)).collect();
    let stats = |y: &[f32]| {
        let change = y.iter().zip(&image).map(|(a, b)| f64::from(a - b).powi(2)).sum::<f64>() / image.len() as f64;
        let zeros = y.iter().filter(|&&v| v.abs() < 1e-3).count() as f64 / image.len() as f64;
        (change, zeros)
    };
    let x = Tensor::<NdArray, 1>::from_data(TensorData::new(image.clone(), [s * s]), &Default::default()).reshape([1, 1, s, s]);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (mut change, mut zeros) = (0.0, 0.0);
    for _ in 0..runs {
        let y: Vec<f32> = apply(x.clone(), &draw(&mut rng, 1, s)).into_data().to_vec().unwrap();
        let (c, z) = stats(&y);
        change += c / runs as f64;
        zeros += z / runs as f64;
    }
    let dir = tempfile::tempdir().unwrap();
    write_f32(&dir.path().join("image.f32"), image.iter().copied());
    let code = snippet();
    let start = code.find("def augment(x):").expect("the snippet defines augment");
    let end = code[start..].find("\nif \"recipe\" in m:").expect("augment comes before the recipe") + start;
    let script = format!(
        "import numpy as np, torch, torch.nn.functional as F\ntorch.manual_seed(1)\n{}\nx = torch.from_numpy(np.fromfile({:?}, dtype='<f4').reshape(1, 1, {s}, {s}))\n\
         c = z = 0.0\nfor _ in range({runs}):\n    y = augment(x)\n    c += float(((y - x) ** 2).mean()) / {runs}\n    z += float((y.abs() < 1e-3).float().mean()) / {runs}\nprint(repr(c), repr(z))\n",
        &code[start..end],
        dir.path().join("image.f32").to_str().unwrap()
    );
    let v = python_numbers(&script, "the snippet's augmentation");
    println!("mean squared change: engine {change:.4}, snippet {:.4}; zeroed pixels: engine {zeros:.4}, snippet {:.4}", v[0], v[1]);
    assert!((v[0] - change).abs() <= 0.1 * change, "mean squared change per pixel: the snippet's {} against the engine's {change}", v[0]);
    assert!((v[1] - zeros).abs() <= 0.1 * zeros, "pixels set to zero: the snippet's {} against the engine's {zeros}", v[1]);
}

/// The snippet's `net` for the ConvNet with instance norm against the engine's forward: the same
/// weights and images must give the same logits. The recipe check above is statistical and
/// cannot see a wrong network: with the snippet's instance norm taken out, PyTorch's networks
/// still reached 79.50 against the manifest's 82.00 ± 2.22.
#[test]
fn the_readme_convnet_with_instance_norm_is_the_engines() {
    use anondistill::{net::Network, rng::{normal, rng, Stream}, ConvNorm, NetKind};
    use burn_ndarray::NdArray;
    use burn_tensor::{Tensor, TensorData};
    if !torch_present() {
        println!("skipped: python3 with torch is not installed here, so the README's network was not run");
        return;
    }
    let (s, width, depth, classes, n) = (16, 6, 3, 3, 4);
    let config = Config { net: NetKind::ConvNet, convnet_norm: ConvNorm::Instance, convnet_width: width, convnet_depth: depth, image_size: s, ..Config::default() };
    let net = Network::new(&config, classes).unwrap();
    let dev = Default::default();
    let mut r = rng(4, Stream::Training);
    let params = net.init::<NdArray>(&mut r, &dev);
    // Non-zero biases, so that their place is checked too.
    let params: Vec<Tensor<NdArray, 1>> = params.into_iter().map(|p| { let k = p.dims()[0]; p + Tensor::from_data(TensorData::new(normal(&mut r, k, 0.3), [k]), &dev) }).collect();
    let x = normal(&mut r, n * s * s, 1.0);
    let logits: Vec<f32> = net.forward(&params, Tensor::<NdArray, 1>::from_data(TensorData::new(x.clone(), [n * s * s]), &dev).reshape([n, 1, s, s])).into_data().to_vec().unwrap();

    let dir = tempfile::tempdir().unwrap();
    for (i, p) in params.iter().enumerate() {
        write_f32(&dir.path().join(format!("p{i}.f32")), p.clone().into_data().to_vec::<f32>().unwrap());
    }
    write_f32(&dir.path().join("x.f32"), x);
    let code = snippet();
    let start = code.find("per_step, classes, s = ").expect("the snippet reads the sizes");
    let end = code.find("def augment(x):").expect("the snippet defines augment after net");
    let script = format!(
        "import os, numpy as np, torch, torch.nn.functional as F\nos.chdir({dir:?})\n\
         c = {{'net': 'convnet', 'convnet_width': {width}, 'convnet_depth': {depth}, 'convnet_norm': 'instance', 'image_size': {s}}}\n\
         m = {{'images_per_step': 1, 'classes': [str(k) for k in range({classes})]}}\nt = {{}}\n{}\n\
         P = [torch.from_numpy(np.fromfile(f'p{{i}}.f32', dtype='<f4').reshape(sh)) for i, sh in enumerate(shapes)]\n\
         X = torch.from_numpy(np.fromfile('x.f32', dtype='<f4').reshape({n}, 1, {s}, {s}))\n\
         print(' '.join(repr(float(v)) for v in net(P, X).flatten()))\n",
        &code[start..end],
        dir = dir.path().to_str().unwrap()
    );
    let torch: Vec<f32> = python_numbers(&script, "the snippet's network").into_iter().map(|v| v as f32).collect();
    assert_eq!(torch.len(), logits.len());
    let gap = torch.iter().zip(&logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("largest logit difference, the snippet's ConvNet with instance norm against the engine's: {gap:e}");
    assert!(gap < 1e-4, "the snippet's logits differ from the engine's by up to {gap}: {torch:?} against {logits:?}");
}
