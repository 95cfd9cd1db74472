//! Saving a session and resuming it: the resumed run continues exactly where the saved one was,
//! across backends, and refuses other data or other settings with a message that says so.

use anondistill::{
    checkpoint::Checkpoint,
    config::{Config, Objective},
    data::{load_files, Grouping},
    demo::demo_files,
    distill::Distiller,
    pipeline::{run_to_end, Prepared},
    Error,
};
use burn_ndarray::NdArray;
use burn_tensor::backend::Backend;

fn demo(config: &Config) -> Prepared {
    Prepared::from_loaded(load_files(demo_files(), config.image_size, &Grouping::default()).unwrap(), config).unwrap()
}

fn config() -> Config {
    // Batch 64 on 320 training images (no audit holdout): 5 iterations per pass, so the saved
    // point falls inside a pass and the order of the remaining real images must be carried over.
    Config { max_iterations: Some(7), nets_per_iteration: 1, batch_size: 64, steps: 3, epochs: 2, holdout_fraction: 0.0, ..Config::default() }
}

fn steps<B: Backend>(d: &mut Distiller<B>, n: usize) -> Vec<f32> {
    (0..n).map(|_| pollster::block_on(d.step()).unwrap().loss.unwrap()).collect()
}

/// Runs `cfg` 7 iterations straight, and 3, saved (through the file's bytes), restored into a
/// fresh distiller and run to the end: the losses and the final state must be the same.
fn continues_exactly(cfg: Config) -> Checkpoint {
    let p = demo(&cfg);
    let dev = Default::default();
    let mut straight = Distiller::<NdArray>::new(cfg.clone(), &p.train, p.norm, &dev).unwrap();
    let straight_losses = steps(&mut straight, 7);
    let end = pollster::block_on(straight.checkpoint()).unwrap();

    let mut first = Distiller::<NdArray>::new(cfg.clone(), &p.train, p.norm, &dev).unwrap();
    let mut losses = steps(&mut first, 3);
    let bytes = pollster::block_on(first.checkpoint()).unwrap().to_bytes().unwrap();
    drop(first);
    let saved = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!(saved.meta.iteration, 3);

    let mut second = Distiller::<NdArray>::new(cfg.clone(), &p.train, p.norm, &dev).unwrap();
    second.restore(&saved).unwrap();
    let outcome = pollster::block_on(run_to_end(&mut second, |r| losses.push(r.loss.unwrap())));
    assert_eq!(outcome.iterations, 7);
    assert_eq!(losses, straight_losses);
    let resumed = pollster::block_on(second.checkpoint()).unwrap();
    assert!(resumed == end, "the resumed state differs from the uninterrupted one");
    saved
}

#[test]
fn a_resumed_run_continues_exactly() {
    let saved = continues_exactly(config());
    assert_eq!(saved.meta.order.len(), 2 * 64, "two batches of the pass are left");
}

#[test]
fn a_resumed_matching_run_continues_exactly() {
    // The images' velocity (SGD with momentum) travels in the session as their first moment:
    // resumed without it, the 4th iteration's step would differ.
    continues_exactly(Config { objective: Objective::Matching, embed_width: 4, real_per_class: 16, ..config() });
}

#[test]
fn a_resumed_matching_run_with_labels_on_top_continues_exactly() {
    // Saved after the first label iteration (its images' Adam moments travel instead of the
    // velocity), and saved during matching with the label iterations still to come (the images'
    // Adam starts afresh where they begin, wherever the run was resumed).
    let matching = Config { objective: Objective::Matching, embed_width: 4, real_per_class: 16, label_iterations: 5, label_images: true, ..config() };
    continues_exactly(Config { max_iterations: Some(2), ..matching.clone() });
    continues_exactly(Config { max_iterations: Some(4), label_iterations: 3, ..matching });
}

/// Saves a run on burn-ndarray with the default engine after 3 iterations (through the file's
/// bytes), restores it into the distiller `make` builds, and checks that its next 2 losses are
/// those of the run that went on (within 1e-4).
fn resumes_in<B2: Backend>(what: &str, make: impl FnOnce(Config, &Prepared) -> Distiller<B2>) {
    let cfg = config();
    let p = demo(&cfg);
    let mut a = Distiller::<NdArray>::new(cfg.clone(), &p.train, p.norm, &Default::default()).unwrap();
    steps(&mut a, 3);
    let saved = Checkpoint::from_bytes(&pollster::block_on(a.checkpoint()).unwrap().to_bytes().unwrap()).unwrap();
    let expected = steps(&mut a, 2);
    let mut b = make(cfg, &p);
    b.restore(&saved).unwrap();
    let got = steps(&mut b, 2);
    for (x, y) in got.iter().zip(&expected) {
        assert!((x - y).abs() <= 1e-4 * y.abs(), "{what} {got:?} vs ndarray with the default engine {expected:?}");
    }
}

#[cfg(feature = "flex")]
#[test]
fn a_session_saved_on_one_backend_resumes_on_another() {
    resumes_in("flex", |cfg, p| Distiller::<burn_flex::Flex>::new(cfg, &p.train, p.norm, &Default::default()).unwrap());
}

/// The engine's settings are not the user's: a session saved with one engine resumes with
/// another (they were in the configuration, which refused it) and continues the same run.
#[test]
fn a_session_resumes_with_other_engine_settings() {
    use anondistill::engine::{ConvImpl, Engine, InnerGrad, OnceImpl};
    let other = Engine { conv: ConvImpl::Im2col, inner_grad: InnerGrad::Nested, once_ops: OnceImpl::Off };
    resumes_in(&format!("{other:?}"), |cfg, p| Distiller::<NdArray>::with_engine(cfg, other, &p.train, p.norm, &Default::default()).unwrap());
}

/// The configuration, the demo data and the state after one step on it.
fn saved_after_one_step() -> (Config, Prepared, Checkpoint) {
    let cfg = config();
    let p = demo(&cfg);
    let mut d = Distiller::<NdArray>::new(cfg.clone(), &p.train, p.norm, &Default::default()).unwrap();
    steps(&mut d, 1);
    let saved = pollster::block_on(d.checkpoint()).unwrap();
    (cfg, p, saved)
}

#[test]
fn other_data_or_settings_are_refused_with_the_reason() {
    let (cfg, p, saved) = saved_after_one_step();
    let dev = Default::default();

    // Same classes and counts, one pixel changed.
    let mut other = p.train.clone();
    other.pixels[0] = 1.0 - other.pixels[0];
    let mut e = Distiller::<NdArray>::new(cfg.clone(), &other, p.norm, &dev).unwrap();
    let msg = e.restore(&saved).unwrap_err().to_string();
    assert!(msg.contains("other data"), "{msg}");

    let other_cfg = Config { seed: 5, ..cfg.clone() };
    let mut f = Distiller::<NdArray>::new(other_cfg, &p.train, p.norm, &dev).unwrap();
    let msg = f.restore(&saved).unwrap_err().to_string();
    assert!(msg.contains("other settings"), "{msg}");

    // A moment of the wrong shape is named, before anything is restored.
    let mut bent = saved.clone();
    bent.tensors.labels.m.shape = vec![bent.tensors.labels.m.values.len()];
    let bytes = bent.to_bytes().unwrap();
    let mut g = Distiller::<NdArray>::new(cfg.clone(), &p.train, p.norm, &dev).unwrap();
    let msg = g.restore(&Checkpoint::from_bytes(&bytes).unwrap()).unwrap_err().to_string();
    assert!(msg.contains("labels") && msg.contains("wrong shape"), "{msg}");

    let not_a_session = b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1}        ";
    assert!(matches!(Checkpoint::from_bytes(not_a_session), Err(Error::Session(_))));
    assert!(matches!(Checkpoint::from_bytes(b"PK\x03\x04 a zip"), Err(Error::Session(_))));
}

#[test]
fn a_session_file_holds_no_real_image() {
    let cfg = config();
    let p = demo(&cfg);
    let mut d = Distiller::<NdArray>::new(cfg.clone(), &p.train, p.norm, &Default::default()).unwrap();
    steps(&mut d, 2);
    let c = pollster::block_on(d.checkpoint()).unwrap();
    let bytes = c.to_bytes().unwrap();
    // Every tensor is distilled state or optimiser moments, none has the real data's length.
    assert_eq!(c.tensors.named().iter().map(|(_, t)| t.values.len()).sum::<usize>(), (3 * 2 * 28 * 28 + 3 * 2 * 2 + 3 * 2) * 3);
    // No real image's pixels (as the distiller's f32 in normalised space) appear in the file.
    for i in 0..p.train.len() {
        let first: Vec<u8> = p.train.image(i)[..8].iter().flat_map(|v| ((v - p.norm.mean) / p.norm.std).to_le_bytes()).collect();
        assert!(!bytes.windows(first.len()).any(|w| w == first.as_slice()), "image {i} appears in the session file");
    }
}

#[test]
fn a_format_1_session_resumes_with_the_decay_it_ran_with() {
    let (cfg, p, c) = saved_after_one_step();
    let dev = Default::default();
    let format_1 = |decay: serde_json::Value| {
        let mut meta = serde_json::to_value(&c.meta).unwrap();
        meta["format"] = "anondistill-session/1".into();
        let config = meta["config"].as_object_mut().unwrap();
        config.insert("decay_epochs".into(), 40.into());
        match decay {
            serde_json::Value::Bool(false) => config.remove("decay_iterations"),
            v => config.insert("decay_iterations".into(), v),
        };
        Checkpoint::from_bytes(&c.to_bytes_with_meta(meta.to_string()).unwrap()).unwrap()
    };
    // Format 1 decayed per iteration when decay_iterations was a number: today's default.
    let per_iteration = format_1(2320.into());
    assert_eq!(per_iteration.meta.config, cfg);
    Distiller::<NdArray>::new(cfg.clone(), &p.train, p.norm, &dev).unwrap().restore(&per_iteration).unwrap();
    // Without it, or with null, per pass.
    for decay in [serde_json::Value::Bool(false), serde_json::Value::Null] {
        let per_pass = format_1(decay);
        assert_eq!(per_pass.meta.config, Config { decay_epochs: Some(40), ..cfg.clone() });
        assert_eq!(per_pass.meta.format, anondistill::checkpoint::FORMAT);
    }
}
