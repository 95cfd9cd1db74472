//! Helper Web Workers for the CPU backends: the networks an outer iteration samples
//! (`nets_per_iteration`) are independent, so the page's worker plans each iteration
//! ([`Session::plan`]), hands some networks to helpers, each with its own wasm instance and a
//! copy of the training split ([`Helper`]), computes its own share ([`Session::gradient`]) and
//! applies the mean ([`Session::apply`]). The result is bit for bit that of [`Session::run`]
//! (`crate::parallel`), in less time where the machine has the cores.

use std::cell::RefCell;
use std::rc::Rc;

use burn_flex::Flex;
use burn_ndarray::NdArray;
use js_sys::{Array, Float32Array, Object, Promise, Reflect, Uint32Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{finish_chunk, js_err, settle, take_engine, Engine, Session};
use crate::config::Config;
use crate::data::{Dataset, Normalization};
use crate::distill::{Distiller, MetaGradient, StepReport};
use crate::parallel::{host_gradient, host_plan, HostGradient, HostPlan, HostState};

/// The iteration planned and not yet applied, and the chunk of iterations applied so far.
#[derive(Default)]
pub(super) struct Pending {
    plan: Option<HostPlan>,
    reports: Vec<StepReport>,
    error: Option<crate::Error>,
}

pub(super) fn set(o: &Object, key: &str, value: JsValue) -> Result<(), JsValue> {
    Reflect::set(o, &key.into(), &value).map(|_| ())
}

pub(super) fn floats(o: &JsValue, key: &str) -> Result<Vec<f32>, JsValue> {
    let v = Reflect::get(o, &key.into())?;
    if !v.is_instance_of::<Float32Array>() {
        return Err(js_err(format!("gradient field {key} is not a Float32Array")));
    }
    Ok(Float32Array::from(v).to_vec())
}

pub(super) fn gradient_to_js(g: &HostGradient) -> Result<JsValue, JsValue> {
    let o = Object::new();
    set(&o, "loss", g.loss.into())?;
    set(&o, "images", Float32Array::from(&g.images[..]).into())?;
    set(&o, "labels", Float32Array::from(&g.labels[..]).into())?;
    set(&o, "rawLrs", Float32Array::from(&g.raw_lrs[..]).into())?;
    Ok(o.into())
}

/// The distilled data and the networks' weights of a planned iteration: `{images, labels,
/// rawLrs, inits}`.
pub(super) fn planned_to_js(state: &HostState, inits: &[Vec<f32>]) -> Result<Object, JsValue> {
    let o = Object::new();
    set(&o, "images", Float32Array::from(&state.images[..]).into())?;
    set(&o, "labels", Float32Array::from(&state.labels[..]).into())?;
    set(&o, "rawLrs", Float32Array::from(&state.raw_lrs[..]).into())?;
    set(&o, "inits", inits.iter().map(|w| JsValue::from(Float32Array::from(&w[..]))).collect::<Array>().into())?;
    Ok(o)
}

pub(super) fn gradient_from_js(v: &JsValue) -> Result<HostGradient, JsValue> {
    let loss = Reflect::get(v, &"loss".into())?.as_f64().ok_or_else(|| js_err("gradient without a loss"))? as f32;
    Ok(HostGradient { loss, images: floats(v, "images")?, labels: floats(v, "labels")?, raw_lrs: floats(v, "rawLrs")? })
}

#[wasm_bindgen]
impl Session {
    /// The settings of this session, as JSON (for the helpers).
    #[wasm_bindgen(js_name = configJson)]
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.inner.borrow().config).expect("serialisable")
    }

    /// The training split the distillation reads, for the helpers: `{size, pixels, labels,
    /// patients, classes, mean, std}` (pixels in [0, 1], image after image).
    #[wasm_bindgen(js_name = trainSplit)]
    pub fn train_split(&self) -> Result<JsValue, JsValue> {
        let s = self.inner.borrow();
        let (t, norm) = (&s.prepared.train, s.prepared.norm);
        let o = Object::new();
        set(&o, "size", (t.size as u32).into())?;
        set(&o, "pixels", Float32Array::from(&t.pixels[..]).into())?;
        let labels: Vec<u32> = t.labels.iter().map(|&c| c as u32).collect();
        set(&o, "labels", Uint32Array::from(&labels[..]).into())?;
        // Only equality matters to a helper: each key's rank among the keys (which keeps their order).
        let mut keys = t.patients.clone();
        keys.sort_unstable();
        keys.dedup();
        let patients: Vec<u32> = t.patients.iter().map(|p| keys.binary_search(p).expect("a key of the list") as u32).collect();
        set(&o, "patients", Uint32Array::from(&patients[..]).into())?;
        set(&o, "classes", t.classes.iter().map(JsValue::from).collect::<Array>().into())?;
        set(&o, "mean", norm.mean.into())?;
        set(&o, "std", norm.std.into())?;
        Ok(o.into())
    }

    /// Draws the next iteration's networks and minibatch; resolves to `{images, labels, rawLrs,
    /// inits, batch}` (the distilled data, one weight vector per network, the minibatch's
    /// indices), or to `null` when the run has done all its iterations.
    pub fn plan(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut engine = take_engine(&inner)?;
            let planned = on_engine!(&mut engine, d => async {
                if d.privacy().is_some() {
                    return Err(crate::Error::Config("a private run shares its iterations through privatePlan".into()));
                }
                if d.config().objective != crate::Objective::Unrolled {
                    return Err(crate::Error::Config("a matching run draws one embedding network an iteration: run it with run, not shared".into()));
                }
                if d.iteration() >= d.total_iterations() {
                    return Ok(None);
                }
                let plan = host_plan(&d.plan()).await?;
                Ok::<_, crate::Error>(Some((plan, d.host_state().await?)))
            }.await);
            let mut s = inner.borrow_mut();
            s.engine = Some(engine);
            let Some((plan, state)) = planned.map_err(js_err)? else { return Ok(JsValue::NULL) };
            let o = planned_to_js(&state, &plan.inits)?;
            let batch: Vec<u32> = plan.batch.iter().map(|&i| i as u32).collect();
            set(&o, "batch", Uint32Array::from(&batch[..]).into())?;
            s.parallel.plan = Some(plan);
            Ok(o.into())
        })
    }

    /// The meta-gradient of network `i` of the planned iteration, computed here; resolves to
    /// `{loss, images, labels, rawLrs}`, the form [`Helper::gradient`] gives too.
    pub fn gradient(&self, i: usize) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            // The plan is read before the engine is taken, so that a bad call cannot lose it.
            let (init, batch) = {
                let s = inner.borrow();
                let plan = s.parallel.plan.as_ref().ok_or_else(|| js_err("no iteration is planned"))?;
                let init = plan.inits.get(i).ok_or_else(|| js_err(format!("the plan has no network {i}")))?;
                (init.clone(), plan.batch.clone())
            };
            let engine = take_engine(&inner)?;
            let g = on_engine!(&engine, d => async {
                let init = d.params_from_host(&init)?;
                host_gradient(d.meta_gradient(&init, &batch)).await
            }.await);
            inner.borrow_mut().engine = Some(engine);
            gradient_to_js(&g.map_err(js_err)?)
        })
    }

    /// The Adam step of the planned iteration with its networks' meta-gradients, in the plan's
    /// order (an `Array` of `{loss, images, labels, rawLrs}`); resolves to `true`, or to `false`
    /// when the step failed (a divergence: [`Session::end_chunk`] says why).
    pub fn apply(&self, gradients: Array) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let host: Vec<HostGradient> = gradients.iter().map(|g| gradient_from_js(&g)).collect::<Result<_, _>>()?;
            let planned = inner.borrow_mut().parallel.plan.take().ok_or_else(|| js_err("no iteration is planned"))?;
            if host.len() != planned.inits.len() {
                return Err(js_err(format!("{} gradients for {} networks", host.len(), planned.inits.len())));
            }
            let mut engine = take_engine(&inner)?;
            let step = on_engine!(&mut engine, d => async {
                let grads = host.iter().map(|g| d.gradient_from_host(g)).collect::<crate::Result<Vec<_>>>()?;
                d.apply(MetaGradient::mean(grads)).await
            }.await);
            Ok(record_step(&inner, engine, step))
        })
    }

    /// Ends a chunk of planned iterations as [`Session::run`] ends one (the state read back and
    /// kept); resolves to the same result.
    #[wasm_bindgen(js_name = endChunk)]
    pub fn end_chunk(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut engine = take_engine(&inner)?;
            let (reports, error) = {
                let mut s = inner.borrow_mut();
                s.parallel.plan = None;
                (std::mem::take(&mut s.parallel.reports), s.parallel.error.take())
            };
            let chunk = on_engine!(&mut engine, d => finish_chunk(d, reports, error).await);
            settle(&inner, engine, chunk)
        })
    }
}

/// Gives the engine back and keeps the outcome of a planned iteration's Adam step; `true` if it
/// was taken, `false` if it failed (a divergence: [`Session::end_chunk`] says why).
pub(super) fn record_step(inner: &Rc<RefCell<super::Inner>>, engine: Engine, step: crate::Result<StepReport>) -> JsValue {
    let mut s = inner.borrow_mut();
    s.engine = Some(engine);
    match step {
        Ok(report) => {
            s.parallel.reports.push(report);
            true
        }
        Err(e) => {
            s.parallel.error = Some(e);
            false
        }
    }
    .into()
}

pub(super) enum HelperEngine {
    Cpu(Distiller<Flex>),
    Ndarray(Distiller<NdArray>),
}

macro_rules! on_helper {
    ($engine:expr, $d:ident => $body:expr) => {
        match $engine {
            HelperEngine::Cpu($d) => $body,
            HelperEngine::Ndarray($d) => $body,
        }
    };
}

/// A helper worker's engine: the session's settings and training split on one CPU backend,
/// computing the meta-gradients of the networks it is handed.
#[wasm_bindgen]
pub struct Helper {
    pub(super) engine: Rc<RefCell<Option<HelperEngine>>>,
}

#[wasm_bindgen]
impl Helper {
    /// A helper on `backend` (`cpu` or `ndarray`, as the session) with the session's settings
    /// (JSON) and its training split (as [`Session::train_split`] gives it).
    #[wasm_bindgen(constructor)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(backend: &str, config_json: &str, size: usize, pixels: Vec<f32>, labels: Vec<u32>, patients: Vec<u32>, classes: Vec<String>, mean: f32, std: f32) -> Result<Helper, JsValue> {
        console_error_panic_hook::set_once();
        let config: Config = serde_json::from_str(config_json).map_err(|e| js_err(format!("invalid configuration: {e}")))?;
        if patients.len() != labels.len() {
            return Err(js_err(format!("{} patient ids for {} images", patients.len(), labels.len())));
        }
        let mut train = Dataset::new(size, pixels, labels.into_iter().map(|c| c as usize).collect(), classes);
        train.patients = patients.into_iter().map(u64::from).collect();
        let norm = Normalization { mean, std };
        let engine = match backend {
            "cpu" => HelperEngine::Cpu(Distiller::new(config, &train, norm, &Default::default()).map_err(js_err)?),
            "ndarray" => HelperEngine::Ndarray(Distiller::new(config, &train, norm, &Default::default()).map_err(js_err)?),
            other => return Err(js_err(format!("helpers run on cpu or ndarray, not {other:?}"))),
        };
        Ok(Helper { engine: Rc::new(RefCell::new(Some(engine))) })
    }

    /// The meta-gradient of one network of a planned iteration: the distilled data, the
    /// network's weights and the minibatch as [`Session::plan`] gives them; resolves to
    /// `{loss, images, labels, rawLrs}`.
    pub fn gradient(&self, images: Vec<f32>, labels: Vec<f32>, raw_lrs: Vec<f32>, init: Vec<f32>, batch: Vec<u32>) -> Promise {
        let cell = self.engine.clone();
        future_to_promise(async move {
            let mut engine = cell.borrow_mut().take().ok_or_else(|| js_err("the helper is busy"))?;
            let state = HostState { images, labels, raw_lrs };
            let batch: Vec<usize> = batch.into_iter().map(|i| i as usize).collect();
            let g = on_helper!(&mut engine, d => d.remote_gradient(&state, &init, &batch).await);
            *cell.borrow_mut() = Some(engine);
            gradient_to_js(&g.map_err(js_err)?)
        })
    }
}

// After `on_helper!`, which it uses.
mod private;
