//! The browser shell: a thin wasm-bindgen API over the engine, driven from a Web Worker
//! (`www/worker.js`). Every method that touches the device returns a promise and reads tensors
//! back only asynchronously; the distilled data are mirrored on the host after every chunk of
//! iterations, so a lost GPU device or a divergence still leaves something to download. On the CPU
//! backends the networks of an iteration can be shared with helper workers (`workers`).

use std::cell::RefCell;
use std::rc::Rc;

use burn_flex::Flex;
use burn_ndarray::NdArray;
use burn_tensor::backend::Backend;
use burn_wgpu::{graphics::WebGpu, init_setup_async, Wgpu, WgpuDevice};
use js_sys::{Array, Float32Array, Promise, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::checkpoint::Checkpoint;
use crate::config::Config;
use crate::data::{load_files, Grouping, InputFile, Skipped};
use crate::demo::{demo_files, ATTRIBUTION};
use crate::distill::{Distilled, Distiller, StepReport};
use crate::eval::evaluate;
use crate::metrics::imbalanced;
use crate::pipeline::{export_distilled, run_audit, run_until, Findings, Outcome, Prepared};
use crate::privacy::{noised_dims, PrivacyPlan};

macro_rules! on_engine {
    ($engine:expr, $d:ident => $body:expr) => {
        match $engine {
            Engine::Cpu($d) => $body,
            Engine::Ndarray($d) => $body,
            Engine::Gpu($d) => $body,
        }
    };
}

mod workers;

/// The page's backends: `cpu` is burn-flex (the fastest CPU backend in wasm too, bench/HISTORY.md
/// change 19), `ndarray` the burn-ndarray fallback a user can pick, `webgpu` burn-wgpu.
enum Engine {
    Cpu(Distiller<Flex>),
    Ndarray(Distiller<NdArray>),
    Gpu(Distiller<Wgpu>),
}

struct Inner {
    config: Config,
    /// The loaded splits, shared (not copied) with each promise that reads them.
    prepared: Rc<Prepared>,
    engine: Option<Engine>,
    backend: &'static str,
    outcome: Outcome,
    last_good: Option<Distilled>,
    last_checkpoint: Option<Checkpoint>,
    fixed_init: Option<Vec<Vec<f32>>>,
    /// The evaluation and the audit, each of the state at the iteration it was made.
    findings: Findings,
    /// The iteration planned for helper workers (see `workers`), and the chunk so far.
    parallel: workers::Pending,
    /// The differential-privacy plan of the started run, when privacy is on.
    privacy: Option<PrivacyPlan>,
}

/// What the page shows about the loaded data.
#[derive(Serialize)]
struct Summary<'a> {
    classes: &'a [String],
    train_counts: Vec<usize>,
    holdout_counts: Vec<usize>,
    test_counts: Vec<usize>,
    patients: crate::data::SplitPatients,
    skipped: &'a [Skipped],
    image_size: usize,
    distilled_images: usize,
    inner_steps: usize,
    /// What to know before the run (`Prepared::cautions`).
    cautions: Vec<String>,
}

/// One distillation in the page.
#[wasm_bindgen]
pub struct Session {
    inner: Rc<RefCell<Inner>>,
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

fn parse_config(json: &str) -> Result<Config, JsValue> {
    let config: Config = serde_json::from_str(json).map_err(|e| js_err(format!("invalid configuration: {e}")))?;
    config.validate().map_err(js_err)?;
    Ok(config)
}

/// Files as the page hands them over; each is copied in only when the loader reaches it.
fn input_files(names: Vec<String>, classes: Vec<String>, patients: Vec<String>, bytes: Array) -> Result<impl Iterator<Item = InputFile>, JsValue> {
    let n = names.len();
    if classes.len() != n || patients.len() != n || bytes.length() as usize != n {
        return Err(js_err("names, classes, patients and bytes must have the same length"));
    }
    Ok(names.into_iter().zip(classes).zip(patients).enumerate().map(move |(i, ((name, class), patient))| InputFile {
        name,
        class,
        patient: Some(patient).filter(|p| !p.is_empty()),
        bytes: Uint8Array::new(&bytes.get(i as u32)).to_vec(),
    }))
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(js_err)
}

/// Attribution of the built-in demo data.
#[wasm_bindgen(js_name = demoAttribution)]
pub fn demo_attribution() -> String {
    ATTRIBUTION.to_string()
}

/// The ranges of the numbers the page's settings take ([`crate::config::LIMITS`]), the CPU
/// workers' largest count (the page sets its fields and checks each value with them), and a
/// matching run's iterations when none are given.
#[wasm_bindgen(js_name = settingsFields)]
pub fn settings_fields() -> Result<JsValue, JsValue> {
    to_js(&serde_json::json!({ "limits": crate::config::LIMITS, "max_workers": crate::config::MAX_WORKERS, "matching_iterations": crate::config::MATCHING_ITERATIONS }))
}

/// The configuration a session file was saved with, as JSON (to load the data with it before
/// resuming).
#[wasm_bindgen(js_name = sessionConfig)]
pub fn session_config(bytes: &[u8]) -> Result<String, JsValue> {
    let config = Checkpoint::config_of(bytes).map_err(js_err)?;
    Ok(serde_json::to_string(&config).expect("serialisable"))
}

/// The default configuration, as JSON.
#[wasm_bindgen(js_name = defaultConfig)]
pub fn default_config() -> String {
    serde_json::to_string(&Config::default()).expect("serialisable")
}

/// A differential-privacy plan as the page shows it, before and during the run.
#[derive(Serialize)]
struct PlanView {
    epsilon: f64,
    delta: f64,
    noise_multiplier: f64,
    sample_rate: f64,
    clip: f64,
    iterations: usize,
    patients: usize,
    expected_batch: f64,
    unit: &'static str,
    in_words: String,
    covers: String,
    /// `unrolled` or `matching`: for matching, `iterations` are its releases.
    objective: crate::config::Objective,
    /// Matching: the iterations after the releases, which read no member (0 for unrolled).
    then: usize,
}

fn plan_view(p: &PrivacyPlan, config: &Config, classes: usize) -> Result<JsValue, JsValue> {
    let dims = noised_dims(config, classes).map_err(js_err)?;
    to_js(&PlanView {
        epsilon: p.target_epsilon,
        delta: p.delta,
        noise_multiplier: p.noise_multiplier,
        sample_rate: p.sample_rate,
        clip: p.clip,
        iterations: p.iterations,
        patients: p.patients,
        expected_batch: p.expected_batch(),
        unit: p.unit,
        in_words: p.noise_in_words(dims),
        covers: p.record(p.iterations).covers,
        objective: p.objective,
        then: match p.objective {
            crate::config::Objective::Matching => config.matching_iterations(),
            crate::config::Objective::Unrolled => 0,
        },
    })
}

/// The differential-privacy plan the configuration (JSON) would run with on `patients` training
/// patients holding `images` images of `classes` classes: `{epsilon, delta, noise_multiplier,
/// sample_rate, clip, iterations, patients, expected_batch, unit, in_words, covers, objective,
/// then}` (for matching, `iterations` are the releases and `then` the iterations after), or `null`
/// when privacy is off. For the page to say what the noise costs before the run.
#[wasm_bindgen(js_name = privacyPlan)]
pub fn privacy_plan(config_json: &str, patients: usize, images: usize, classes: usize) -> Result<JsValue, JsValue> {
    let config = parse_config(config_json)?;
    match PrivacyPlan::of(&config, patients, images).map_err(js_err)? {
        Some(p) => plan_view(&p, &config, classes),
        None => Ok(JsValue::NULL),
    }
}

/// The evaluation as the page gets it: with the class names, whether the test classes are
/// imbalanced (balanced accuracy is then the headline) and the distilled program's warnings.
#[derive(Serialize)]
struct EvaluationReport<'a> {
    #[serde(flatten)]
    evaluation: &'a crate::eval::Evaluation,
    classes: &'a [String],
    imbalanced: bool,
    warnings: Vec<String>,
    /// The caveat of a test set too small to judge by (also in the archive's warnings).
    too_few: Option<String>,
}

#[wasm_bindgen]
impl Session {
    /// A session over files handed in memory: `names[i]` (the path below the picked folder, for
    /// messages and patient ids), `classes[i]`, `patients[i]` (the patient folder, or "") and
    /// `bytes[i]` (a `Uint8Array`). `pattern` and `csv` (the text of a `file,patient` table) give
    /// patient ids as the command line's `--group-pattern` and `--groups` do; `test` (an object
    /// `{names, classes, patients, bytes}`) is a separate test set, else the files are split by
    /// patient. The configuration is JSON (missing fields take defaults). Each file is copied
    /// into the engine's memory only while it is decoded, one at a time, so the files' bytes are
    /// not held twice (and the engine's memory, which never shrinks, does not grow to their
    /// total).
    #[wasm_bindgen(js_name = fromFiles)]
    #[allow(clippy::too_many_arguments)]
    pub fn from_files(
        names: Vec<String>,
        classes: Vec<String>,
        patients: Vec<String>,
        bytes: Array,
        config_json: &str,
        pattern: Option<String>,
        csv: Option<String>,
        test: JsValue,
    ) -> Result<Session, JsValue> {
        console_error_panic_hook::set_once();
        let grouping = Grouping::new(pattern.as_deref().filter(|p| !p.is_empty()), csv.as_deref().map(|t| ("the patient table", t))).map_err(js_err)?;
        let config = parse_config(config_json)?;
        let loaded = load_files(input_files(names, classes, patients, bytes)?, config.image_size, &grouping).map_err(js_err)?;
        let prepared = if test.is_undefined() || test.is_null() {
            Prepared::from_loaded(loaded, &config)
        } else {
            let field = |k: &str| js_sys::Reflect::get(&test, &k.into());
            let strings = |k: &str| -> Result<Vec<String>, JsValue> { serde_wasm_bindgen::from_value(field(k)?).map_err(|e| js_err(format!("test.{k}: {e}"))) };
            let files = input_files(strings("names")?, strings("classes")?, strings("patients")?, field("bytes")?.into())?;
            // The test set is not split; its patients (folders, the pattern) are checked against the training data's.
            let test = load_files(files, config.image_size, &grouping.pattern_only()).map_err(|e| js_err(format!("the test folder: {e}")))?;
            Prepared::with_test(loaded, test, &config)
        }
        .map_err(js_err)?;
        Ok(Self::new(prepared, config))
    }

    /// A session over the built-in demo X-ray patches.
    pub fn demo(config_json: &str) -> Result<Session, JsValue> {
        console_error_panic_hook::set_once();
        let config = parse_config(config_json)?;
        let loaded = load_files(demo_files(), config.image_size, &Grouping::default()).map_err(js_err)?;
        Ok(Self::new(Prepared::from_loaded(loaded, &config).map_err(js_err)?, config))
    }

    fn new(prepared: Prepared, config: Config) -> Session {
        let inner = Inner {
            config,
            prepared: Rc::new(prepared),
            engine: None,
            backend: "none",
            outcome: Outcome { iterations: 0, stopped_early: None },
            last_good: None,
            last_checkpoint: None,
            fixed_init: None,
            findings: Findings::default(),
            parallel: Default::default(),
            privacy: None,
        };
        Session { inner: Rc::new(RefCell::new(inner)) }
    }

    /// Classes, split counts, skipped files and sizes.
    pub fn summary(&self) -> Result<JsValue, JsValue> {
        let s = self.inner.borrow();
        let c = &s.config;
        let classes = s.prepared.train.num_classes();
        to_js(&Summary {
            classes: &s.prepared.train.classes,
            train_counts: s.prepared.train.class_counts(),
            holdout_counts: s.prepared.holdout.class_counts(),
            test_counts: s.prepared.test.class_counts(),
            patients: s.prepared.patients(),
            skipped: &s.prepared.skipped,
            image_size: c.image_size,
            distilled_images: c.images_per_step(classes) * c.steps,
            inner_steps: c.inner_steps(),
            cautions: s.prepared.cautions(c),
        })
    }

    /// The backend in use: `webgpu`, `cpu` (burn-flex), `ndarray` or `none` before `start`.
    pub fn backend(&self) -> String {
        self.inner.borrow().backend.to_string()
    }

    /// The started run's differential-privacy plan (see [`privacy_plan`]), or `null` without
    /// privacy or before `start`.
    pub fn privacy(&self) -> Result<JsValue, JsValue> {
        let s = self.inner.borrow();
        match &s.privacy {
            Some(p) => plan_view(p, &s.config, s.prepared.train.num_classes()),
            None => Ok(JsValue::NULL),
        }
    }

    /// The id of the private session file the started run resumed, or `undefined` (the page
    /// keeps the ids it resumed, to flag a second resume of the same file).
    #[wasm_bindgen(js_name = resumedSession)]
    pub fn resumed_session(&self) -> Option<String> {
        let s = self.inner.borrow();
        s.engine.as_ref().and_then(|e| on_engine!(e, d => d.resumed_session().map(str::to_string)))
    }

    /// Outer iterations done.
    pub fn iterations(&self) -> usize {
        self.inner.borrow().outcome.iterations
    }

    /// Prepares the distillation on `webgpu` (the caller has checked that an adapter exists),
    /// `cpu` (burn-flex) or `ndarray` (burn-ndarray), from the start or, given the bytes of a session file, from where it was saved;
    /// resolves to the total number of outer iterations.
    pub fn start(&self, backend: String, session_file: Option<Vec<u8>>) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let resume = session_file.map(|b| Checkpoint::from_bytes(&b)).transpose().map_err(js_err)?;
            let (config, prepared) = {
                let s = inner.borrow();
                (s.config.clone(), s.prepared.clone())
            };
            let (train, norm) = (&prepared.train, prepared.norm);
            let (mut engine, name) = match backend.as_str() {
                "webgpu" => {
                    let device = WgpuDevice::default();
                    init_setup_async::<WebGpu>(&device, Default::default()).await;
                    (Engine::Gpu(Distiller::new(config, train, norm, &device).map_err(js_err)?), "webgpu")
                }
                "ndarray" => (Engine::Ndarray(Distiller::new(config, train, norm, &Default::default()).map_err(js_err)?), "ndarray"),
                "cpu" => (Engine::Cpu(Distiller::new(config, train, norm, &Default::default()).map_err(js_err)?), "cpu"),
                other => return Err(js_err(format!("unknown backend {other:?}: expected webgpu, cpu or ndarray"))),
            };
            if let Some(c) = &resume {
                on_engine!(&mut engine, d => d.restore(c)).map_err(js_err)?;
            }
            let total = on_engine!(&engine, d => d.total_iterations());
            let snap = on_engine!(&engine, d => snapshot(d).await)?;
            let mut s = inner.borrow_mut();
            s.outcome = Outcome { iterations: on_engine!(&engine, d => d.iteration()), stopped_early: None };
            s.engine = Some(engine);
            s.backend = name;
            s.last_good = Some(snap.distilled);
            s.last_checkpoint = Some(snap.checkpoint);
            s.fixed_init = snap.fixed_init;
            s.findings = Findings::default();
            s.privacy = on_engine!(s.engine.as_ref().expect("just set"), d => d.privacy().cloned());
            Ok(JsValue::from(total as u32))
        })
    }

    /// Runs up to `iterations` outer iterations; resolves to `{reports, iterations, total,
    /// stopped, device_lost}` where `iterations` counts those in the kept state and `stopped`
    /// says why the run cannot go on (divergence, lost device), if so.
    pub fn run(&self, iterations: u32) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut engine = take_engine(&inner)?;
            let chunk = on_engine!(&mut engine, d => run_chunk(d, iterations as usize).await);
            settle(&inner, engine, chunk)
        })
    }

    /// Evaluates the distilled program and the baselines on the held-out images; resolves to the
    /// evaluation.
    pub fn evaluate(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let engine = take_engine(&inner)?;
            let (config, prepared, distilled) = {
                let s = inner.borrow();
                (s.config.clone(), s.prepared.clone(), s.last_good.clone().ok_or_else(|| js_err("nothing distilled yet"))?)
            };
            let result = on_engine!(&engine, d => {
                evaluate(&config, &distilled, d.fixed_init(), &prepared.train, &prepared.test, prepared.norm, d.device()).await
            });
            let mut s = inner.borrow_mut();
            s.engine = Some(engine);
            let e = result.map_err(js_err)?;
            let at = s.outcome.iterations;
            s.findings.set_metrics(at, e.clone());
            let classes = &s.prepared.train.classes;
            to_js(&EvaluationReport { warnings: e.distilled.warnings(classes), imbalanced: imbalanced(&e.test_counts), classes, too_few: e.too_few(), evaluation: &e })
        })
    }

    /// The privacy audit of the last good state against the members and the holdout; resolves
    /// to `{report, size, gallery}`: the report as `audit.json` holds it, and for each distilled
    /// image its pixels and those of its nearest member and holdout image by L2 and by SSIM
    /// (`Float32Array`s in [0, 1] units), for the page to show locally. Only the report goes
    /// into the export.
    pub fn audit(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let engine = take_engine(&inner)?;
            let (config, prepared, distilled, metrics) = {
                let s = inner.borrow();
                (
                    s.config.clone(),
                    s.prepared.clone(),
                    s.last_good.clone().ok_or_else(|| js_err("nothing distilled yet"))?,
                    s.findings.metrics(s.outcome.iterations).cloned(),
                )
            };
            let result = on_engine!(&engine, d => {
                run_audit(&distilled, &config, &prepared, d.fixed_init(), metrics.as_ref(), d.device()).await
            });
            let mut s = inner.borrow_mut();
            s.engine = Some(engine);
            let a = result.map_err(js_err)?;
            let out = js_sys::Object::new();
            let set = |o: &js_sys::Object, k: &str, v: JsValue| js_sys::Reflect::set(o, &k.into(), &v).map(|_| ());
            set(&out, "report", to_js(&a)?)?;
            set(&out, "size", (distilled.size as u32).into())?;
            let n = distilled.size * distilled.size;
            let norm = prepared.norm;
            let gallery = Array::new();
            for (i, nb) in a.neighbours.iter().enumerate() {
                let row = js_sys::Object::new();
                let own: Vec<f32> = distilled.images[i * n..(i + 1) * n].iter().map(|&v| norm.pixel(v)).collect();
                set(&row, "distilled", Float32Array::from(&own[..]).into())?;
                set(&row, "memberL2", Float32Array::from(prepared.train.image(nb.member.l2_index)).into())?;
                set(&row, "memberSsim", Float32Array::from(prepared.train.image(nb.member.ssim_index)).into())?;
                set(&row, "holdoutL2", Float32Array::from(prepared.holdout.image(nb.holdout.l2_index)).into())?;
                set(&row, "holdoutSsim", Float32Array::from(prepared.holdout.image(nb.holdout.ssim_index)).into())?;
                gallery.push(&row);
            }
            set(&out, "gallery", gallery.into())?;
            let at = s.outcome.iterations;
            s.findings.set_audit(at, a);
            Ok(out.into())
        })
    }

    /// The distilled data as last read back: `{size, classes, perStep, images, labels, lrs}`
    /// with `Float32Array`s (images in normalised space, row-major, image after image).
    pub fn distilled(&self) -> Result<JsValue, JsValue> {
        let s = self.inner.borrow();
        let d = s.last_good.as_ref().ok_or_else(|| js_err("nothing distilled yet"))?;
        let o = js_sys::Object::new();
        let set = |k: &str, v: JsValue| js_sys::Reflect::set(&o, &k.into(), &v).map(|_| ());
        set("size", (d.size as u32).into())?;
        set("classes", (d.classes as u32).into())?;
        set("perStep", (d.per_step as u32).into())?;
        set("images", Float32Array::from(&d.images[..]).into())?;
        set("labels", Float32Array::from(&d.labels[..]).into())?;
        set("lrs", Float32Array::from(&d.lrs[..]).into())?;
        Ok(o.into())
    }

    /// The session file of the state last read back (after the latest chunk): the distilled
    /// data, the optimiser's moments and the progress; no real image.
    #[wasm_bindgen(js_name = sessionFile)]
    pub fn session_file(&self) -> Result<Uint8Array, JsValue> {
        let s = self.inner.borrow();
        let c = s.last_checkpoint.as_ref().ok_or_else(|| js_err("nothing distilled yet"))?;
        Ok(Uint8Array::from(&c.to_bytes().map_err(js_err)?[..]))
    }

    /// The result archive (the engine's export) of the last good state, with the privacy audit
    /// when one was run on that state.
    pub fn export(&self) -> Result<Uint8Array, JsValue> {
        let s = self.inner.borrow();
        let d = s.last_good.as_ref().ok_or_else(|| js_err("nothing distilled yet"))?;
        let at = s.outcome.iterations;
        let (metrics, audit) = (s.findings.metrics(at).cloned(), s.findings.audit(at));
        let privacy = s.privacy.as_ref().map(|p| p.record(at));
        let bytes = export_distilled(d, &s.config, &s.prepared, &s.outcome, metrics, audit, s.fixed_init.clone(), privacy).map_err(js_err)?;
        Ok(Uint8Array::from(&bytes[..]))
    }
}

/// Keeps a chunk's last state (and the engine, unless its device is lost); the chunk's result
/// for the page.
fn settle(inner: &Rc<RefCell<Inner>>, engine: Engine, chunk: Chunk) -> Result<JsValue, JsValue> {
    let total = on_engine!(&engine, d => d.total_iterations());
    let mut s = inner.borrow_mut();
    if let Some((d, c)) = chunk.snapshot {
        s.outcome.iterations = c.meta.iteration;
        s.last_good = Some(d);
        s.last_checkpoint = Some(c);
    }
    if let Some(why) = &chunk.stopped {
        s.outcome.stopped_early = Some(why.clone());
    }
    if !chunk.device_lost {
        s.engine = Some(engine);
    }
    to_js(&ChunkResult {
        reports: chunk.reports,
        iterations: s.outcome.iterations,
        total,
        stopped: chunk.stopped,
        device_lost: chunk.device_lost,
        epsilon_spent: s.privacy.as_ref().map(|p| p.spent_by(s.outcome.iterations)),
    })
}

#[derive(Serialize)]
struct ChunkResult {
    reports: Vec<StepReport>,
    iterations: usize,
    total: usize,
    stopped: Option<String>,
    device_lost: bool,
    /// ε spent by the iterations in the kept state, with privacy on.
    epsilon_spent: Option<f64>,
}

struct Chunk {
    reports: Vec<StepReport>,
    stopped: Option<String>,
    snapshot: Option<(Distilled, Checkpoint)>,
    device_lost: bool,
}

fn take_engine(inner: &Rc<RefCell<Inner>>) -> Result<Engine, JsValue> {
    let mut s = inner.try_borrow_mut().map_err(|_| js_err("the session is busy"))?;
    s.engine.take().ok_or_else(|| js_err("the distillation is not started, busy, or lost its device"))
}

async fn run_chunk<B: Backend>(d: &mut Distiller<B>, n: usize) -> Chunk {
    let mut reports = Vec::new();
    let error = run_until(d, d.iteration() + n, |r| reports.push(r.clone())).await;
    finish_chunk(d, reports, error).await
}

/// The end of a chunk of iterations: the state read back, unless an error says the device is gone.
async fn finish_chunk<B: Backend>(d: &mut Distiller<B>, reports: Vec<StepReport>, error: Option<crate::Error>) -> Chunk {
    let mut device_lost = matches!(error, Some(crate::Error::Backend(_)));
    let mut stopped = error.map(|e| e.to_string());
    let snapshot = if device_lost {
        None
    } else {
        match read_state(d).await {
            Ok(state) => Some(state),
            Err(e) => {
                device_lost = true;
                stopped = Some(e.to_string());
                None
            }
        }
    };
    Chunk { reports, stopped, snapshot, device_lost }
}

struct Snapshot {
    distilled: Distilled,
    checkpoint: Checkpoint,
    fixed_init: Option<Vec<Vec<f32>>>,
}

/// The whole state and the distilled data, each value read back from the device once.
async fn read_state<B: Backend>(d: &Distiller<B>) -> crate::Result<(Distilled, Checkpoint)> {
    let checkpoint = d.checkpoint().await?;
    Ok((d.distilled_of(&checkpoint).await?, checkpoint))
}

async fn snapshot<B: Backend>(d: &Distiller<B>) -> Result<Snapshot, JsValue> {
    let (distilled, checkpoint) = read_state(d).await.map_err(js_err)?;
    Ok(Snapshot { distilled, checkpoint, fixed_init: d.fixed_init_values().await.map_err(js_err)? })
}
