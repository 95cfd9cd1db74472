//! Differential privacy per patient on the demo X-rays: the private hyper-gradient against the
//! plain one and against each patient's own meta-gradient clipped by hand, and what a private
//! archive holds.

use std::process::Command;

use anondistill::{
    config::{Config, PrivacyConfig},
    data::{load_files, Grouping},
    demo::demo_files,
    distill::{Distiller, MetaGradient},
    eval::evaluate,
    export::read_archive,
    grad::manual_loss_grads,
    loss::one_hot,
    pipeline::{export, run_audit, run_to_end, Prepared},
    privacy::{
        noise::{grid_release, Grid, SecretRng},
        PrivacyPlan, PUBLIC_NORMALIZATION,
    },
};
use burn_ndarray::NdArray;
use burn_tensor::Tensor;

type B = NdArray;

fn private_config() -> Config {
    Config {
        image_size: 16,
        steps: 2,
        nets_per_iteration: 2,
        max_iterations: Some(3),
        eval_nets: 2,
        full_data_nets: 1,
        full_data_epochs: 1,
        baseline_lrs: vec![0.01, 0.1],
        privacy: Some(PrivacyConfig { epsilon: 8.0, ..Default::default() }),
        ..Config::default()
    }
}

fn demo(config: &Config) -> Prepared {
    Prepared::from_loaded(load_files(demo_files(), config.image_size, &Grouping::default()).unwrap(), config).unwrap()
}

/// The demo's training images as patients of three consecutive images, and each patient's
/// images.
fn demo_in_threes(config: &Config) -> (Prepared, Vec<Vec<usize>>) {
    let mut prepared = demo(config);
    let train = &mut prepared.train;
    train.patients = (0..train.len() as u64).map(|i| i / 3).collect();
    let groups = (0..train.len().div_ceil(3)).map(|p| (3 * p..(3 * p + 3).min(train.len())).collect()).collect();
    (prepared, groups)
}

/// A plan without the accountant: the noise multiplier, the clipping norm, every patient sampled.
fn plan(noise_multiplier: f64, clip: f64, patients: usize) -> PrivacyPlan {
    PrivacyPlan { target_epsilon: f64::INFINITY, delta: 1e-5, clip, sample_rate: 1.0, noise_multiplier, iterations: 3, patients, unit: "patient", objective: Default::default() }
}

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

fn assert_close(got: &MetaGradient<B>, want: &MetaGradient<B>, what: &str) {
    for (name, a, b) in [
        ("images", values(got.images.clone()), values(want.images.clone())),
        ("labels", values(got.labels.clone()), values(want.labels.clone())),
        ("raw_lrs", values(got.raw_lrs.clone()), values(want.raw_lrs.clone())),
    ] {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(a.iter().chain(&b).all(|v| v.is_finite()), "{what}: {name} is not finite");
        assert!(scale > 0.0 && diff <= 2e-4 * scale, "{what}: {name} differs by {diff} (scale {scale})");
    }
}

#[test]
fn without_noise_or_clipping_the_private_hypergradient_is_the_plain_one() {
    let config = private_config();
    let prepared = demo(&config);
    assert_eq!(prepared.norm, PUBLIC_NORMALIZATION, "a private run normalises with public constants");
    let device = Default::default();
    let new = || Distiller::<B>::new(config.clone(), &prepared.train, prepared.norm, &device).unwrap();
    let mut d = new();
    d.override_privacy(plan(0.0, f64::INFINITY, prepared.train.len()), SecretRng::known(1)).unwrap();
    let got = d.hypergradient();
    // The plain hyper-gradient of the same two networks on every training image.
    let mut twin = new();
    let inits = [twin.sample_init(), twin.sample_init()];
    assert_ne!(inits[0][0].to_data(), inits[1][0].to_data(), "fresh weights for every network");
    let all: Vec<usize> = (0..prepared.train.len()).collect();
    let want = MetaGradient::mean(inits.iter().map(|i| twin.meta_gradient(i, &all)).collect());
    assert_close(&got, &want, "sigma 0, C infinite, q 1");
    let (shown, plain) = (got.loss.clone().into_scalar(), want.loss.clone().into_scalar());
    assert!((shown - plain).abs() <= 1e-4 * plain.abs(), "the loss shown is {shown}, the plain mean loss {plain}");
    // A planted fault is seen: the mean of one network is not the mean of two.
    let one = MetaGradient::mean(vec![twin.meta_gradient(&inits[0], &all)]);
    let (a, b) = (values(got.images.clone()), values(one.images));
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff.is_finite() && diff > 1e-2 * scale, "one network's gradient differs from two's by {diff} (scale {scale})");
}

#[test]
fn each_patient_is_clipped_jointly_over_the_networks_and_an_enormous_one_counts_at_most_c() {
    let config = private_config();
    // Patients of three images, and patient 0's pixels made enormous (its gradient with them).
    let (mut prepared, groups) = demo_in_threes(&config);
    let patients = groups.len();
    let train = &mut prepared.train;
    let pixels = train.size * train.size;
    train.pixels[..3 * pixels].iter_mut().for_each(|v| *v *= 400.0);
    let device = Default::default();
    let norm = prepared.norm;
    let new = || Distiller::<B>::new(config.clone(), &prepared.train, norm, &device).unwrap();

    // Each patient's gradient of its summed loss at each network's final weights, by hand.
    let mut twin = new();
    let inits = [twin.sample_init(), twin.sample_init()];
    let thetas: Vec<_> = inits.iter().map(|i| twin.final_weights(i)).collect();
    let classes = prepared.train.num_classes();
    let norms: Vec<f64> = groups
        .iter()
        .map(|idx| {
            let (x, _) = prepared.train.tensors::<B>(idx, norm, &device);
            let labels: Vec<usize> = idx.iter().map(|&i| prepared.train.labels[i]).collect();
            let y = one_hot::<B>(&labels, classes, &device);
            let sq: f64 = thetas
                .iter()
                .flat_map(|theta| manual_loss_grads(&config_net(&config, classes), theta, x.clone(), y.clone(), None).1)
                .map(|g| (g.clone() * g).sum().into_scalar() as f64 * (idx.len() * idx.len()) as f64)
                .sum();
            sq.sqrt()
        })
        .collect();
    let mut sorted = norms.clone();
    sorted.sort_by(f64::total_cmp);
    let clip = sorted[patients / 2];
    assert!(norms[0] > 50.0 * clip, "the planted patient's gradient is enormous: {} against C = {clip}", norms[0]);

    let mut d = new();
    d.override_privacy(plan(0.0, clip, patients), SecretRng::known(2)).unwrap();
    let got = d.hypergradient();
    // Σ_k Σ_p min(1, C/‖g_p‖) · (patient p's summed meta-gradient) / (q N K).
    let mut parts = Vec::new();
    for init in &inits {
        for (idx, n) in groups.iter().zip(&norms) {
            let w = (clip / n).min(1.0) * idx.len() as f64 / (patients * inits.len()) as f64;
            let g = twin.meta_gradient(init, idx);
            parts.push(MetaGradient { loss: g.loss, images: g.images * w, labels: g.labels * w, raw_lrs: g.raw_lrs * w });
        }
    }
    let k = parts.len() as f64;
    let want = MetaGradient::mean(parts);
    let want = MetaGradient { loss: want.loss, images: want.images * k, labels: want.labels * k, raw_lrs: want.raw_lrs * k };
    assert_close(&got, &want, "clipped per patient");
    // Clipping each network on its own would give another result (√2 more per patient at most).
    let w0 = clip / norms[0];
    assert!(w0 < 0.02 && (w0 * norms[0] - clip).abs() < 1e-9 * clip, "the enormous patient is scaled to norm C");
}

/// Each patient's gradient of its summed loss at each of `thetas`, per parameter, computed by
/// hand (the mean loss's gradient times the patient's images), and its norm over all of them.
fn patient_gradients(config: &Config, prepared: &Prepared, thetas: &[Vec<Tensor<B, 1>>], groups: &[Vec<usize>]) -> (Vec<Vec<Vec<Tensor<B, 1>>>>, Vec<f64>) {
    let device = Default::default();
    let classes = prepared.train.num_classes();
    let net = config_net(config, classes);
    let mut grads = Vec::new();
    let mut norms = Vec::new();
    for idx in groups {
        let (x, _) = prepared.train.tensors::<B>(idx, prepared.norm, &device);
        let labels: Vec<usize> = idx.iter().map(|&i| prepared.train.labels[i]).collect();
        let y = one_hot::<B>(&labels, classes, &device);
        let per_net: Vec<Vec<Tensor<B, 1>>> = thetas.iter().map(|theta| manual_loss_grads(&net, theta, x.clone(), y.clone(), None).1.into_iter().map(|g| g * idx.len() as f32).collect()).collect();
        let sq: f64 = per_net.iter().flatten().map(|g| (g.clone() * g.clone()).sum().into_scalar() as f64).sum();
        grads.push(per_net);
        norms.push(sq.sqrt());
    }
    (grads, norms)
}

#[test]
fn a_sampled_noisy_iteration_of_several_networks_is_the_mechanism_rebuilt_by_hand() {
    // q = 0.5, three networks, noise on: the released hyper-gradient equals the mechanism written
    // out from its definition, the secret stream replayed (one uniform per patient in key order
    // for the Poisson sample, then each network's grid noise in turn). It fails if the divisor is
    // the number sampled instead of qN, if images are sampled instead of patients, if one noise
    // draw serves every network, or if the noise is divided by the number of networks.
    let config = Config { nets_per_iteration: 3, ..private_config() };
    let (prepared, groups) = demo_in_threes(&config);
    let patients = groups.len();
    let device = Default::default();
    let new = || Distiller::<B>::new(config.clone(), &prepared.train, prepared.norm, &device).unwrap();
    let mut twin = new();
    let inits: Vec<_> = (0..3).map(|_| twin.sample_init()).collect();
    let thetas: Vec<_> = inits.iter().map(|i| twin.final_weights(i)).collect();
    let (grads, norms) = patient_gradients(&config, &prepared, &thetas, &groups);
    let mut sorted = norms.clone();
    sorted.sort_by(f64::total_cmp);
    let (clip, q, sigma, seed) = (sorted[patients / 2], 0.5, 0.7, 11);
    let plan = PrivacyPlan { sample_rate: q, ..plan(sigma, clip, patients) };

    // The sample and the noise, from the same known stream.
    let mut replay = SecretRng::known(seed);
    let sampled: Vec<usize> = (0..patients).filter(|_| replay.sampled(q)).collect();
    assert!(sampled.len() > 2 && sampled.len() as f64 != q * patients as f64, "the test needs |S| ≠ qN: {} of {patients}", sampled.len());
    let dims: usize = thetas[0].iter().map(|t| t.dims()[0]).sum();
    let grid = Grid::of(sigma, clip, 3 * dims).expect("noise on");
    let noise: Vec<Vec<f32>> = (0..3).map(|_| replay.grid_noise(dims, &grid)).collect();
    assert!(noise[0] != noise[1], "each network has its own noise");

    // Σ_k ∂⟨v_k, θ_k⟩ / (qNK), v_k = the grid release of Σ_{p∈S} min(1, C/‖g_p‖) g_pk.
    let scale = 1.0 / (q * patients as f64 * 3.0);
    let mut want: Option<MetaGradient<B>> = None;
    for (k, init) in inits.iter().enumerate() {
        let mut at = 0;
        let v: Vec<Tensor<B, 1>> = (0..thetas[k].len())
            .map(|j| {
                let sum = sampled.iter().map(|&p| grads[p][k][j].clone() * (clip / norms[p]).min(1.0) as f32).reduce(|a, b| a + b).unwrap();
                let n = sum.dims()[0];
                let z = Tensor::<B, 1>::from_data(burn_tensor::TensorData::new(noise[k][at..at + n].to_vec(), [n]), &device);
                at += n;
                grid_release(sum, z, grid.step)
            })
            .collect();
        let g = twin.weights_vjp(init, &v);
        let g = MetaGradient { loss: g.loss, images: g.images * scale, labels: g.labels * scale, raw_lrs: g.raw_lrs * scale };
        want = Some(match want {
            None => g,
            Some(w) => MetaGradient { loss: w.loss, images: w.images + g.images, labels: w.labels + g.labels, raw_lrs: w.raw_lrs + g.raw_lrs },
        });
    }
    let mut d = new();
    d.override_privacy(plan, SecretRng::known(seed)).unwrap();
    let got = d.hypergradient();
    assert_close(&got, &want.unwrap(), "q 0.5, 3 networks, noise on");
}

#[test]
fn a_patient_whose_gradient_is_not_finite_is_left_out_exactly_and_counted() {
    // Patients of three images; patient 0's pixels are NaN. The iteration is the one without
    // patient 0 (the divisor qN unchanged), finite, and its report counts one patient left out.
    let config = private_config();
    let (mut prepared, groups) = demo_in_threes(&config);
    let patients = groups.len();
    let train = &mut prepared.train;
    let pixels = train.size * train.size;
    train.pixels[..3 * pixels].iter_mut().for_each(|v| *v = f32::NAN);
    let without = train.subset(&(3..train.len()).collect::<Vec<_>>());
    let device = Default::default();
    let run = |data: &anondistill::data::Dataset| {
        let mut d = Distiller::<B>::new(config.clone(), data, prepared.norm, &device).unwrap();
        d.override_privacy(plan(0.0, 5.0, patients), SecretRng::known(3)).unwrap();
        d
    };
    let got = run(&prepared.train).hypergradient();
    let want = run(&without).hypergradient();
    assert_close(&got, &want, "a NaN patient left out");
    let report = pollster::block_on(run(&prepared.train).step()).unwrap();
    assert_eq!((report.dropped_patients, report.loss), (1, None), "counted for the local notice; no loss shown");
}

#[test]
fn a_private_session_carries_its_plan_and_a_resume_continues_it() {
    let config = Config { max_iterations: Some(2), ..private_config() };
    let prepared = demo(&config);
    let device = Default::default();
    let new = |config: &Config| Distiller::<B>::new(config.clone(), &prepared.train, prepared.norm, &device).unwrap();
    let mut d = new(&config);
    pollster::block_on(d.step()).unwrap();
    let saved = pollster::block_on(d.checkpoint()).unwrap();
    let saved = anondistill::checkpoint::Checkpoint::from_bytes(&saved.to_bytes().unwrap()).unwrap();
    let p = saved.meta.privacy.clone().expect("a private session carries its plan");
    let plan = d.privacy().unwrap().clone();
    assert_eq!(p.plan, plan);
    assert!((p.epsilon_spent - plan.spent(1)).abs() < 1e-12 && p.id.len() == 32, "{p:?}");
    // A resume continues the plan from there, up to T, and says which file it resumed.
    let mut resumed = new(&config);
    resumed.restore(&saved).unwrap();
    assert_eq!((resumed.iteration(), resumed.total_iterations(), resumed.resumed_session()), (1, 2, Some(p.id.as_str())));
    let outcome = pollster::block_on(run_to_end(&mut resumed, |_| {}));
    assert_eq!(outcome.iterations, 2);
    // Its own saves are a new segment, with the ε of all the iterations so far.
    let again = pollster::block_on(resumed.checkpoint()).unwrap().meta.privacy.unwrap();
    assert!(again.id != p.id && (again.epsilon_spent - plan.spent(2)).abs() < 1e-12);
    // A session saved without privacy, or with another plan, is refused.
    let mut plain = saved.clone();
    plain.meta.privacy = None;
    let err = new(&config).restore(&plain).unwrap_err().to_string();
    assert!(err.contains("saved by a run without privacy"), "{err}");
    let mut other = saved.clone();
    other.meta.privacy.as_mut().unwrap().plan.iterations = 5;
    let err = new(&config).restore(&other).unwrap_err().to_string();
    assert!(err.contains("another plan"), "{err}");
}

fn config_net(config: &Config, classes: usize) -> anondistill::net::Network {
    anondistill::net::Network::new(config, classes).unwrap()
}

#[test]
fn a_private_archive_holds_only_what_the_guarantee_covers() {
    let config = private_config();
    let prepared = demo(&config);
    let device = Default::default();
    // A normalisation from the data is refused.
    let data_norm = anondistill::data::Normalization::of(&prepared.train);
    assert!(Distiller::<B>::new(config.clone(), &prepared.train, data_norm, &device).is_err());
    let mut d = Distiller::<B>::new(config.clone(), &prepared.train, prepared.norm, &device).unwrap();
    let p = d.privacy().unwrap().clone();
    assert_eq!(d.total_iterations(), 3);
    assert!(p.noise_multiplier > 0.0 && (p.spent(3) - 8.0).abs() < 0.01, "{p:?}");
    let outcome = pollster::block_on(run_to_end(&mut d, |_| {}));
    assert_eq!(outcome.iterations, 3);
    let distilled = pollster::block_on(d.distilled()).unwrap();
    let e = pollster::block_on(evaluate::<B>(&config, &distilled, None, &prepared.train, &prepared.test, prepared.norm, &device)).unwrap();
    let bytes = pollster::block_on(export(&d, &prepared, &outcome, Some(e.clone()), None)).unwrap();
    let m = read_archive(&bytes).unwrap().manifest;
    let r = m.privacy.expect("a privacy record");
    assert_eq!((r.iterations, r.unit.as_str(), r.clip, r.sample_rate), (3, "image", 10.0, 1.0));
    assert!((r.epsilon - p.spent(3)).abs() < 1e-12 && r.noise_multiplier == p.noise_multiplier);
    assert!(r.covers.contains("Not covered") && r.accountant.contains("Balle"));
    assert_eq!(m.normalization, PUBLIC_NORMALIZATION);
    assert!(m.train_counts.is_empty() && m.holdout_counts.is_empty() && m.patients.is_none() && m.metrics.is_none());
    // The test patients' evaluation (JSON keeps it to the last digit or so).
    let t = m.test_metrics.expect("the test patients' evaluation");
    assert_eq!((t.nets, t.confusion.clone()), (e.distilled.nets, e.distilled.confusion.clone()));
    assert!((t.balanced_accuracy.mean - e.distilled.balanced_accuracy.mean).abs() < 1e-12);
    // The audit, which compares the result with the members without noise, reaches no field:
    // with a real audit whose near-copy list is not empty the archive is byte for byte the one
    // exported without an audit.
    let mut audit = pollster::block_on(run_audit::<B>(&distilled, &config, &prepared, None, Some(&e), &device)).unwrap();
    audit.near_copy.flagged = vec![0, 3];
    let with_audit = pollster::block_on(export(&d, &prepared, &outcome, Some(e.clone()), Some(&audit))).unwrap();
    assert!(with_audit == bytes, "a private archive changed with the audit: {:?}", read_archive(&with_audit).unwrap().manifest.warnings);
}

#[test]
fn the_command_line_turns_privacy_on_and_says_what_it_costs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("private.zip");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_anondistill"))
            .args(["distill", "--image-size", "16", "--steps", "2", "--max-iterations", "2", "--eval-nets", "1", "--full-data-nets", "0", "--no-audit", "--backend", "ndarray", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--dp-epsilon", "4", "--dp-clip", "0.5"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("differential privacy per image: epsilon 4.000") && err.contains("privacy spent: epsilon"), "{err}");
    let m = read_archive(&std::fs::read(&out).unwrap()).unwrap().manifest;
    let r = m.privacy.unwrap();
    assert_eq!((r.iterations, r.clip), (2, 0.5));
    assert!(r.epsilon <= 4.0 && r.epsilon > 3.99);
    // Settings that would leak outside the mechanism, and privacy options without a budget.
    for (extra, word) in [(&["--dp-epsilon", "4", "--init", "real", "--accept-real-init"][..], "init real"), (&["--dp-clip", "2"][..], "--dp-epsilon"), (&["--dp-epsilon", "4", "--balance-classes", "true"][..], "balance_classes")] {
        let o = run(extra);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(word), "{extra:?}: {err}");
    }
}
