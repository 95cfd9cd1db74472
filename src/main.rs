//! The `anondistill` command line: a thin shell over the library.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// Large tensors are freed and allocated again every step; glibc's malloc unmaps and remaps them
/// (page faults), mimalloc reuses them (bench/HISTORY.md, change 10), and with
/// `keep_freed_memory` never gives them back (change 14).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anondistill::{
    config::{Config, PrivacyConfig},
    privacy::{noised_dims, PrivacyPlan},
    data::{load_files, load_folder, load_npz, Dataset, Grouping, Loaded, Normalization},
    demo,
    distill::Distiller,
    eval::{evaluate, evaluate_distilled, TestSet},
    export::read_archive,
    pipeline::{check_same_classes, export, run_audit, run_to_end, Prepared},
    Error, Result,
};
use burn_tensor::{backend::Backend, Tensor, TensorData};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(name = "anondistill", version, about = "Soft-label dataset distillation of labelled image patches")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of its largest variant (every configuration field as an
// option) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Distil a folder (root/<class>/<image> or root/<class>/<patient>/<image>) or an .npz;
    /// without DATA, the built-in demo X-rays.
    Distill(DistillArgs),
    /// Replay a result archive on fresh networks and report test accuracy on a dataset.
    Eval(EvalArgs),
    /// Write the images of an .npz split as PNG files in folder layout (root/<class>/<image>.png).
    NpzToFolder(NpzArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// burn-flex on the CPU (the fastest CPU backend here; needs the `flex` cargo feature).
    Flex,
    /// burn-ndarray on the CPU.
    Ndarray,
    /// burn-wgpu on a GPU (needs the `wgpu` cargo feature).
    Wgpu,
}

#[derive(Args)]
struct DistillArgs {
    /// Image folder or .npz archive; the built-in demo data when left out.
    data: Option<PathBuf>,
    /// A separate test set (folder or .npz: its test_ arrays, or train_ when it has none),
    /// instead of a split of DATA by patient.
    #[arg(long, value_name = "TESTDATA")]
    test: Option<PathBuf>,
    #[command(flatten)]
    groups: GroupArgs,
    /// Where the result archive goes.
    #[arg(long, default_value = "result.zip")]
    out: PathBuf,
    /// A JSON configuration; the options below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Skip the evaluation.
    #[arg(long)]
    no_eval: bool,
    /// Skip the privacy audit (it also needs holdout_fraction above 0).
    #[arg(long)]
    no_audit: bool,
    /// Allow `--init real`: the distilled images then start from patients' images and can stay
    /// close to them; the archive's manifest says so.
    #[arg(long)]
    accept_real_init: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value = if cfg!(feature = "flex") { "flex" } else { "ndarray" })]
    backend: BackendArg,
    #[command(flatten)]
    privacy: PrivacyArgs,
    #[command(flatten)]
    overrides: ConfigArgs,
}

/// Differential privacy per patient.
#[derive(Args)]
struct PrivacyArgs {
    /// Make the result (EPSILON, delta)-differentially private per patient: the noise is
    /// calibrated before the run so that its iterations (--max-iterations, default 300) spend
    /// EPSILON. The expected patients per iteration are --batch-size.
    #[arg(long, value_name = "EPSILON")]
    dp_epsilon: Option<f64>,
    /// delta (default 1/(10 × training patients), at most 1e-5).
    #[arg(long, value_name = "DELTA")]
    dp_delta: Option<f64>,
    /// The clipping norm of each patient's contribution (default 10; with --objective matching 1,
    /// one image's worth).
    #[arg(long, value_name = "C")]
    dp_clip: Option<f64>,
    /// With --objective matching: the noisy releases of the class targets, drawn once before
    /// the images are optimised against them (default 200); --max-iterations then counts the
    /// optimisation's iterations, which cost no privacy.
    #[arg(long, value_name = "R")]
    dp_draws: Option<usize>,
    /// Each patient's chance to be sampled in an iteration, instead of --batch-size / patients.
    #[arg(long, value_name = "Q")]
    dp_sample_rate: Option<f64>,
}

impl PrivacyArgs {
    /// Turns privacy on (or changes a configuration file's privacy settings).
    fn apply(&self, c: &mut Config) -> Result<()> {
        if let Some(e) = self.dp_epsilon {
            c.privacy = Some(PrivacyConfig { epsilon: e, ..c.privacy.clone().unwrap_or_default() });
        }
        let Some(p) = c.privacy.as_mut() else {
            if self.dp_delta.is_some() || self.dp_clip.is_some() || self.dp_sample_rate.is_some() || self.dp_draws.is_some() {
                return Err(Error::Config("--dp-delta, --dp-clip, --dp-sample-rate and --dp-draws need --dp-epsilon, which turns differential privacy on".into()));
            }
            return Ok(());
        };
        p.delta = self.dp_delta.or(p.delta);
        p.clip = self.dp_clip.or(p.clip);
        p.draws = self.dp_draws.unwrap_or(p.draws);
        p.sample_rate = self.dp_sample_rate.or(p.sample_rate);
        Ok(())
    }
}

#[derive(Args)]
struct EvalArgs {
    /// The result archive.
    archive: PathBuf,
    /// Image folder or .npz; the built-in demo data when left out.
    data: Option<PathBuf>,
    /// Use every image of a folder, not only the test part of the run's seeded split.
    #[arg(long)]
    all: bool,
    /// Evaluation networks (default: the archive's setting).
    #[arg(long)]
    nets: Option<usize>,
    #[command(flatten)]
    groups: GroupArgs,
}

/// Where patient ids come from, besides the folder layout and an .npz's *_groups.
#[derive(Args)]
struct GroupArgs {
    /// A regular expression with one capture group, searched in each file's path below the data
    /// folder (or in an .npz's *_files names); the group is the patient id, e.g. 'person(\d+)_'.
    #[arg(long, value_name = "REGEX")]
    group_pattern: Option<String>,
    /// A CSV table with the columns file,patient (file: a path below the data folder, or its
    /// tail); it wins over the pattern and the folders.
    #[arg(long, value_name = "CSV")]
    groups: Option<PathBuf>,
}

impl GroupArgs {
    fn grouping(&self) -> Result<Grouping> {
        let csv = match &self.groups {
            Some(p) => Some((p.display().to_string(), std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?)),
            None => None,
        };
        Grouping::new(self.group_pattern.as_deref(), csv.as_ref().map(|(n, t)| (n.as_str(), t.as_str())))
    }
}

#[derive(Args)]
struct NpzArgs {
    /// The .npz archive.
    npz: PathBuf,
    /// Output folder.
    out: PathBuf,
    /// Which split: train, val or test.
    #[arg(long, default_value = "train")]
    split: String,
    /// Images per class (the first ones of a seeded shuffle); all when left out.
    #[arg(long)]
    per_class: Option<usize>,
    /// Class folder names, comma-separated, in label order.
    #[arg(long)]
    names: Option<String>,
    /// Seed of the shuffle.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> std::result::Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| e.to_string())
}

macro_rules! config_args {
    ($($field:ident: $ty:ty $(=> $parser:expr)?, $doc:literal;)*) => {
        /// Every configuration field as an option.
        #[derive(Args, Default)]
        struct ConfigArgs {
            $(
                #[doc = $doc]
                #[arg(long $(, value_parser = $parser)?)]
                $field: Option<$ty>,
            )*
        }
        impl ConfigArgs {
            fn apply(&self, c: &mut Config) {
                $(if let Some(v) = &self.$field { c.$field = v.clone().into(); })*
            }
        }
    };
}

config_args! {
    objective: anondistill::Objective => parse_json::<anondistill::Objective>, "What the images are learned for: unrolled (the replay, default) or matching (distribution matching, for an ordinary training loop)";
    embed_width: usize, "Matching: channels of the random embedding network";
    embed_depth: usize, "Matching: blocks of the embedding network";
    real_per_class: usize, "Matching: real images of each class embedded per iteration";
    image_lr: f64, "Matching: learning rate of the images' SGD (momentum 0.5)";
    dsa: bool, "Matching: differentiable Siamese augmentation of real and distilled images alike (true/false)";
    label_iterations: usize, "Matching: iterations of the unrolled objective after matching that learn each image's label and the replay's learning rates on top (default 0: none; not with privacy)";
    label_images: bool, "Matching: those label iterations move the images too (true/false)";
    recipe_epochs: usize, "Matching: passes of the ordinary loop the set is evaluated with (and recorded for)";
    recipe_lr: f64, "Matching: the ordinary loop's Adam learning rate";
    recipe_batch: usize, "Matching: the ordinary loop's minibatch";
    recipe_augment: bool, "Matching: the ordinary loop augments each minibatch (true/false)";
    net: anondistill::NetKind => parse_json::<anondistill::NetKind>, "Network: lenet or convnet";
    convnet_width: usize, "Channels of every ConvNet block";
    convnet_depth: usize, "ConvNet blocks";
    convnet_norm: anondistill::ConvNorm => parse_json::<anondistill::ConvNorm>, "What follows each ConvNet convolution: none or instance (instance norm, as the field's evaluation ConvNet; matching only)";
    lenet_width: usize, "Multiplier of LeNet's channels and hidden units (1: 6, 16, 120, 84)";
    image_size: usize, "Images are resized to this square size";
    steps: usize, "Distilled steps";
    images_per_class_per_step: usize, "Distilled images of each class in each step";
    images_per_step: usize, "Distilled images per step in all (overrides the per-class count; may be fewer than the classes)";
    epochs: usize, "Replays of the step sequence";
    init: anondistill::ImageInit => parse_json::<anondistill::ImageInit>, "Image init: noise or real (real starts from patients' images, which the result can stay close to: see the privacy audit)";
    learn_labels: bool, "Learn the labels (true/false)";
    label_mode: anondistill::LabelMode => parse_json::<anondistill::LabelMode>, "Label mode: raw or softmax";
    lr_init: f64, "Initial inner learning rate";
    known_init: bool, "Keep one fixed initial network (true/false)";
    batch_size: usize, "Real minibatch size";
    balance_classes: bool, "Weight the outer loss (and the full-data baseline's) so each class counts equally (true/false)";
    nets_per_iteration: usize, "Initial networks per outer iteration (their hyper-gradients averaged)";
    outer_lr: f64, "Adam learning rate";
    beta1: f64, "Adam beta1";
    beta2: f64, "Adam beta2";
    decay_iterations: usize, "Halve the Adam learning rate every this many outer iterations, whatever the data's size (default 2320: the reference's 40 passes over MNIST)";
    decay_epochs: usize, "Halve it every this many passes over the data instead";
    decay_factor: f64, "Factor of the step decay";
    epochs_outer: usize, "Passes over the real training data";
    max_iterations: usize, "Stop after this many outer iterations (unrolled: at most epochs_outer passes; private: T, default 300; matching: the optimisation's length, default 1000, after any private releases)";
    eval_nets: usize, "Evaluation networks";
    full_data_nets: usize, "Networks of the full-data baseline (0 skips it)";
    full_data_epochs: usize, "Epochs of the full-data baseline";
    test_fraction: f64, "Share of each class's patients held out for testing (not with --test or an .npz's own test split)";
    holdout_fraction: f64, "Share of each class's patients of the training data kept back for the privacy audit (0: no audit)";
    seed: u64, "Seed of every random choice";
}

/// A folder's files, or an .npz's train split with its test split when it has one.
fn read_data(data: Option<&Path>, config: &Config, grouping: &Grouping) -> Result<(Loaded, Option<Dataset>)> {
    match data {
        None => {
            eprintln!("{}", demo::ATTRIBUTION);
            Ok((load_files(demo::demo_files(), config.image_size, grouping)?, None))
        }
        Some(p) if p.extension().is_some_and(|e| e == "npz") => {
            let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            let splits = load_npz(&bytes, Some(config.image_size), grouping)?;
            Ok((Loaded { dataset: splits.train, skipped: Vec::new() }, splits.test))
        }
        Some(p) => Ok((load_folder(p, config.image_size, grouping)?, None)),
    }
}

/// The splits of a run: DATA split by patient, or with its own (or a separate) test set.
fn load(data: Option<&Path>, test: Option<&Path>, config: &Config, grouping: &Grouping) -> Result<Prepared> {
    let (loaded, own_test) = read_data(data, config, grouping)?;
    let prepared = match (test, own_test) {
        (Some(t), _) => {
            // The test set is not split; its patients (folders, the pattern) are checked against
            // the training data's.
            let (test, test_of_test) = read_data(Some(t), config, &grouping.pattern_only())?;
            let test = match test_of_test {
                Some(dataset) => Loaded { dataset, skipped: Vec::new() },
                None => test,
            };
            Prepared::with_test(loaded, test, config)?
        }
        (None, Some(dataset)) => Prepared::with_test(loaded, Loaded { dataset, skipped: Vec::new() }, config)?,
        (None, None) => Prepared::from_loaded(loaded, config)?,
    };
    if !prepared.skipped.is_empty() {
        eprintln!("skipped {} file(s):", prepared.skipped.len());
        for s in &prepared.skipped {
            eprintln!("  {}: {}", s.file, s.reason);
        }
    }
    Ok(prepared)
}

/// "normal 120 images of 40 patients, …" in all and for each split.
fn describe_splits(prepared: &Prepared) -> String {
    let line = |classes: &[String], images: &[usize], patients: &[usize]| {
        let each = classes.iter().zip(images).zip(patients).map(|((c, n), p)| format!("{c} {n} images of {p} patients"));
        each.collect::<Vec<_>>().join(", ")
    };
    let split = |d: &Dataset| format!("{} ({} patients)", line(&d.classes, &d.class_counts(), &d.patient_counts().per_class), d.patient_counts().total);
    let parts = [&prepared.train, &prepared.holdout, &prepared.test];
    let sum = |f: &dyn Fn(&Dataset) -> Vec<usize>| -> Vec<usize> { parts.iter().map(|d| f(d)).fold(vec![0; prepared.train.num_classes()], |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect()) };
    let (images, patients) = (sum(&|d| d.class_counts()), sum(&|d| d.patient_counts().per_class));
    format!(
        "found {} images of {} patients: {}\n(a patient is a patient folder, a --group-pattern match or a --groups row; any other image is its own patient; every split is by patient)\ntrain (members): {}\nholdout: {}\ntest: {}",
        images.iter().sum::<usize>(),
        parts.iter().map(|d| d.patient_counts().total).sum::<usize>(),
        line(&prepared.train.classes, &images, &patients),
        split(&prepared.train),
        split(&prepared.holdout),
        split(&prepared.test)
    )
}

/// A private run's plan, and what its noise costs, in words.
fn describe_privacy(p: &PrivacyPlan, dims: usize) -> String {
    let matching = p.objective == anondistill::Objective::Matching;
    let (steps, what) = if matching { ("releases of the class targets", "contribution (per class, its images' unit-norm embeddings summed, and their count)") } else { ("iterations", "gradient") };
    let after = if matching {
        "The images are then optimised against these releases only; their losses are shown.".to_string()
    } else {
        "The loss is not shown: it would be the members' loss without noise.".to_string()
    };
    format!(
        "differential privacy per {unit}: epsilon {:.3} at delta {:.1e} over {} {steps}; each samples {:.1} of {} {unit}s on average (rate {:.4}), clips each {unit}'s {what} to norm {}, rounds the sum to a fine grid and adds discrete Gaussian noise of standard deviation at least {:.3} x {} per coordinate (noise multiplier {:.3}).\nin words: {}\ncovered: {}\n{after}",
        p.target_epsilon,
        p.delta,
        p.iterations,
        p.expected_batch(),
        p.patients,
        p.sample_rate,
        p.clip,
        p.noise_multiplier,
        p.clip,
        p.noise_multiplier,
        p.noise_in_words(dims),
        p.record(p.iterations).covers,
        unit = p.unit,
    )
}

fn distill<B: Backend>(args: &DistillArgs, config: Config, device: B::Device) -> Result<()> {
    let prepared = load(args.data.as_deref(), args.test.as_deref(), &config, &args.groups.grouping()?)?;
    eprintln!("{}", describe_splits(&prepared));
    for c in prepared.cautions(&config) {
        eprintln!("caution: {c}");
    }
    let mut d = Distiller::<B>::new(config.clone(), &prepared.train, prepared.norm, &device)?;
    let total = d.total_iterations();
    if let Some(p) = d.privacy() {
        eprintln!("{}", describe_privacy(p, noised_dims(&config, prepared.train.num_classes())?));
    } else if config.max_iterations.is_some_and(|m| m > total) {
        eprintln!(
            "note: {} passes (epochs_outer) over this data are {total} iterations, fewer than --max-iterations; raise --epochs-outer to run longer",
            config.epochs_outer
        );
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}").expect("template"));
    let start = Instant::now();
    let mut dropped = 0;
    let outcome = pollster::block_on(run_to_end(&mut d, |r| {
        let mean_lr = r.lrs.iter().sum::<f32>() / r.lrs.len() as f32;
        // A private run shows no loss: it is the members' loss without noise.
        let loss = r.loss.map_or_else(|| "loss not shown (private)".to_string(), |l| format!("loss {l:.4}"));
        bar.set_message(format!("{loss}  inner lr {:.4}  outer lr {:.4}", mean_lr, r.outer_lr));
        dropped += r.dropped_patients;
        bar.inc(1);
    }));
    bar.finish();
    eprintln!(
        "{} iterations in {:.1} s ({:.3} s each)",
        outcome.iterations,
        start.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64() / outcome.iterations.max(1) as f64
    );
    if let Some(why) = &outcome.stopped_early {
        eprintln!("stopped early: {why}");
    }
    if dropped > 0 {
        eprintln!("notice (local, not in the archive): {dropped} sampled patient gradient(s) were not finite and were left out of their iterations");
    }
    if let Some(p) = d.privacy() {
        let r = p.record(outcome.iterations);
        eprintln!("privacy spent: epsilon {:.3} at delta {:.1e} ({} of {} planned {})", r.epsilon, r.delta, r.iterations, r.planned_iterations, if p.objective == anondistill::Objective::Matching { "releases" } else { "iterations" });
    }
    let metrics = if args.no_eval {
        None
    } else {
        let distilled = pollster::block_on(d.distilled())?;
        let e = pollster::block_on(evaluate(&config, &distilled, d.fixed_init(), &prepared.train, &prepared.test, prepared.norm, &device))?;
        println!("{}", e.summary());
        println!("the distilled program, class by class:\n{}", e.distilled.per_class_text(&prepared.train.classes));
        for w in e.distilled.warnings(&prepared.train.classes) {
            println!("warning: the distilled program: {w}");
        }
        Some(e)
    };
    let audit = if args.no_audit || prepared.holdout.is_empty() {
        None
    } else {
        let distilled = pollster::block_on(d.distilled())?;
        let start = Instant::now();
        match pollster::block_on(run_audit(&distilled, &config, &prepared, d.fixed_init(), metrics.as_ref(), &device)) {
            Ok(a) => {
                println!("{}", a.summary());
                eprintln!("audit in {:.1} s", start.elapsed().as_secs_f64());
                Some(a)
            }
            // The distilled set is still worth keeping; the archive says no audit ran.
            Err(e) => {
                eprintln!("privacy audit failed: {e}\nthe archive is written without an audit");
                None
            }
        }
    };
    let bytes = pollster::block_on(export(&d, &prepared, &outcome, metrics, audit.as_ref()))?;
    std::fs::write(&args.out, bytes).map_err(|e| Error::io(&args.out, e))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn eval_archive(args: &EvalArgs) -> Result<()> {
    type B = burn_ndarray::NdArray;
    let bytes = std::fs::read(&args.archive).map_err(|e| Error::io(&args.archive, e))?;
    let archive = read_archive(&bytes)?;
    let mut config = archive.manifest.config.clone();
    if let Some(n) = args.nets {
        config.eval_nets = n;
        config.validate().map_err(|e| match e {
            Error::Config(why) => Error::Config(format!("--nets {n}: {why}")),
            other => other,
        })?;
    }
    let grouping = args.groups.grouping()?;
    let test = if args.all {
        read_data(args.data.as_deref(), &config, &grouping)?.0.dataset
    } else {
        load(args.data.as_deref(), None, &config, &grouping)?.test
    };
    check_same_classes(&test, &archive.manifest.classes)?;
    let device = Default::default();
    let norm: Normalization = archive.manifest.normalization;
    let fixed: Option<Vec<Tensor<B, 1>>> = archive
        .fixed_init
        .as_ref()
        .map(|ps| ps.iter().map(|p| Tensor::from_data(TensorData::new(p.clone(), [p.len()]), &device)).collect());
    let acc = pollster::block_on(evaluate_distilled::<B>(&config, &archive.distilled, fixed.as_ref(), &TestSet::new(&test, norm, &device), &device))?;
    println!(
        "distilled program on {} images: accuracy {:.2}% ± {:.2}, balanced accuracy {:.2}% ± {:.2}, AUC {} ({} nets; ± is the sample std)",
        test.len(),
        100.0 * acc.accuracy.mean,
        100.0 * acc.accuracy.std,
        100.0 * acc.balanced_accuracy.mean,
        100.0 * acc.balanced_accuracy.std,
        acc.auc.map_or("n/a".into(), |v| format!("{v:.3}")),
        acc.nets
    );
    print!("{}", acc.per_class_text(&test.classes));
    for w in acc.warnings(&test.classes) {
        println!("warning: {w}");
    }
    Ok(())
}

fn npz_to_folder(args: &NpzArgs) -> Result<()> {
    let bytes = std::fs::read(&args.npz).map_err(|e| Error::io(&args.npz, e))?;
    let splits = load_npz(&bytes, None, &Grouping::default())?;
    let data = match args.split.as_str() {
        "train" => Some(splits.train),
        "val" => splits.val,
        "test" => splits.test,
        other => return Err(Error::Config(format!("--split {other}: expected train, val or test"))),
    }
    .ok_or_else(|| Error::Data(format!("the archive has no {} split", args.split)))?;
    let names: Vec<String> = match &args.names {
        Some(n) => n.split(',').map(|s| s.trim().to_string()).collect(),
        None => data.classes.clone(),
    };
    if names.len() != data.num_classes() {
        return Err(Error::Config(format!("--names gives {} names for {} classes", names.len(), data.num_classes())));
    }
    // The names come from the archive or the user: each must be one plain folder inside `out`.
    for name in &names {
        let plain = Path::new(name).components().count() == 1
            && matches!(Path::new(name).components().next(), Some(std::path::Component::Normal(_)))
            && !name.contains(['/', '\\', '\0'])
            && !name.starts_with('.');
        if !plain {
            return Err(Error::Data(format!("class name {name:?} cannot be a folder name (give plain names with --names)")));
        }
    }
    let mut r = anondistill::rng::rng(args.seed, anondistill::rng::Stream::Split);
    let mut written = 0;
    for (c, idx) in data.indices_by_class().iter().enumerate().filter(|(_, idx)| !idx.is_empty()) {
        let dir = args.out.join(&names[c]);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let perm = anondistill::rng::permutation(&mut r, idx.len());
        let mut chosen: Vec<usize> = perm.iter().take(args.per_class.unwrap_or(idx.len())).map(|&p| idx[p]).collect();
        chosen.sort_unstable();
        for i in chosen {
            let grey: Vec<u8> = data.image(i).iter().map(|&v| (v * 255.0).round() as u8).collect();
            let img = image::GrayImage::from_raw(data.size as u32, data.size as u32, grey).expect("size×size values");
            let path = dir.join(format!("{}_{i:05}.png", args.split));
            img.save(&path).map_err(|e| Error::io(&path, e))?;
            written += 1;
        }
    }
    println!("wrote {written} images to {}", args.out.display());
    Ok(())
}

fn main() {
    anondistill::native::keep_freed_memory();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Distill(args) => (|| {
            let mut config = match &args.config {
                Some(p) => serde_json::from_slice(&std::fs::read(p).map_err(|e| Error::io(p, e))?)
                    .map_err(|e| Error::Config(format!("{}: {e}", p.display())))?,
                None => Config::default(),
            };
            args.overrides.apply(&mut config);
            args.privacy.apply(&mut config)?;
            if let (Some(_), Some(e)) = (args.overrides.decay_iterations, config.decay_epochs) {
                return Err(Error::Config(format!("--decay-iterations has no effect while decay_epochs is {e}: give one of the two")));
            }
            config.validate()?;
            if config.init == anondistill::ImageInit::Real && !args.accept_real_init {
                return Err(Error::Config(
                    "init real starts the distilled images from patients' images, and the result can stay close to them (see the privacy audit in README.md); add --accept-real-init to go on".into(),
                ));
            }
            match args.backend {
                BackendArg::Ndarray => distill::<burn_ndarray::NdArray>(args, config, Default::default()),
                #[cfg(feature = "flex")]
                BackendArg::Flex => distill::<burn_flex::Flex>(args, config, Default::default()),
                #[cfg(not(feature = "flex"))]
                BackendArg::Flex => Err(Error::Config("this build has no flex backend; build with --features flex".into())),
                #[cfg(feature = "wgpu")]
                BackendArg::Wgpu => distill::<burn_wgpu::Wgpu>(args, config, Default::default()),
                #[cfg(not(feature = "wgpu"))]
                BackendArg::Wgpu => Err(Error::Config("this build has no wgpu backend; build with --features wgpu".into())),
            }
        })(),
        Command::Eval(args) => eval_archive(args),
        Command::NpzToFolder(args) => npz_to_folder(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
