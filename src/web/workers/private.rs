//! A private iteration shared with the helper workers (`distill::private`, `crate::parallel`).
//! The page's worker begins the round ([`Session::private_plan`]) and hands each helper its
//! networks ([`Helper::begin_share`]). For each chunk of sampled patients, it computes its own
//! networks' norms ([`Session::private_norms`]) while the helpers compute theirs
//! ([`Helper::norms`]), turns them all into the patients' clipping weights
//! ([`Session::private_weights`]) and hands those back ([`Helper::weights`]). Then it draws the
//! noise ([`Session::private_noise`]), back-propagates its own networks
//! ([`Session::private_gradients`]) while the helpers do theirs ([`Helper::private_gradients`]),
//! and takes the Adam step with the sum ([`Session::private_apply`]). If a helper fails, this
//! worker computes the same round alone ([`Session::private_alone`]).

use js_sys::{Array, Float32Array, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::{gradient_from_js, gradient_to_js, planned_to_js, record_step, set, Helper, HelperEngine};
use crate::distill::{read_f32, Chunk};
use crate::parallel::{host_private_plan, HostGradient, HostNorms, HostState};
use crate::web::{js_err, take_engine, Engine, Inner, Session};

fn float_arrays(v: &JsValue, what: &str) -> Result<Vec<Vec<f32>>, JsValue> {
    if !Array::is_array(v) {
        return Err(js_err(format!("{what} is not an array")));
    }
    Array::from(v)
        .iter()
        .map(|x| if x.is_instance_of::<Float32Array>() { Ok(Float32Array::from(x).to_vec()) } else { Err(js_err(format!("{what} holds something other than a Float32Array"))) })
        .collect()
}

fn norms_from_js(v: &JsValue) -> Result<HostNorms, JsValue> {
    let sq = float_arrays(&Reflect::get(v, &"sq".into())?, "norms")?;
    let loss = Reflect::get(v, &"loss".into())?;
    if !loss.is_instance_of::<Float32Array>() {
        return Err(js_err("norms without their losses"));
    }
    Ok(HostNorms { sq, loss: Float32Array::from(loss).to_vec() })
}

fn engine_of(s: &mut Inner) -> Result<&mut Engine, JsValue> {
    s.engine.as_mut().ok_or_else(|| js_err("the distillation is not started, busy, or lost its device"))
}

#[wasm_bindgen]
impl Session {
    /// Begins a private iteration shared among `workers` workers (this one and helpers; network
    /// j goes to worker j mod workers); resolves to `{images, labels, rawLrs, inits, chunks,
    /// scale, step}` (the distilled data, one weight vector per network, the sampled patients as
    /// `[{batch, bounds}]`, the surrogate's factor, the noise grid's step), or to `null` when the
    /// run has done all its iterations.
    #[wasm_bindgen(js_name = privatePlan)]
    pub fn private_plan(&self, workers: usize) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut engine = take_engine(&inner)?;
            let planned = on_engine!(&mut engine, d => async {
                if d.iteration() >= d.total_iterations() {
                    return Ok(None);
                }
                let plan = host_private_plan(&d.begin_round(workers)?).await?;
                Ok::<_, crate::Error>(Some((plan, d.host_state().await?)))
            }.await);
            inner.borrow_mut().engine = Some(engine);
            let Some((plan, state)) = planned.map_err(js_err)? else { return Ok(JsValue::NULL) };
            let o = planned_to_js(&state, &plan.inits)?;
            let chunks = Array::new();
            for c in &plan.chunks {
                let chunk = js_sys::Object::new();
                let (batch, bounds): (Vec<u32>, Vec<u32>) = (c.batch.iter().map(|&i| i as u32).collect(), c.bounds.iter().map(|&i| i as u32).collect());
                set(&chunk, "batch", js_sys::Uint32Array::from(&batch[..]).into())?;
                set(&chunk, "bounds", js_sys::Uint32Array::from(&bounds[..]).into())?;
                chunks.push(&chunk);
            }
            set(&o, "chunks", chunks.into())?;
            set(&o, "scale", plan.scale.into())?;
            set(&o, "step", plan.step.into())?;
            Ok(o.into())
        })
    }

    /// This worker's networks' norms of the round's next chunk.
    #[wasm_bindgen(js_name = privateNorms)]
    pub fn private_norms(&self) -> Result<(), JsValue> {
        let mut s = self.inner.try_borrow_mut().map_err(|_| js_err("the session is busy"))?;
        on_engine!(engine_of(&mut s)?, d => d.round_norms()).map_err(js_err)
    }

    /// The chunk's clipping weights (a `Float32Array`, one per patient), from this worker's norms
    /// and `norms`, each helper's `{sq, loss}` ([`Helper::norms`]), helper after helper.
    #[wasm_bindgen(js_name = privateWeights)]
    pub fn private_weights(&self, norms: Array) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let host: Vec<HostNorms> = norms.iter().map(|n| norms_from_js(&n)).collect::<Result<_, _>>()?;
            let mut engine = take_engine(&inner)?;
            let w = on_engine!(&mut engine, d => async {
                let others = host.iter().map(|n| d.norms_from_host(n)).collect::<crate::Result<Vec<_>>>()?;
                read_f32(d.round_weights(others)?).await
            }.await);
            inner.borrow_mut().engine = Some(engine);
            Ok(Float32Array::from(&w.map_err(js_err)?[..]).into())
        })
    }

    /// Draws the round's noise; returns every network's (an `Array` of `Float32Array`s, in the
    /// networks' order), for the helpers.
    #[wasm_bindgen(js_name = privateNoise)]
    pub fn private_noise(&self) -> Result<Array, JsValue> {
        let mut s = self.inner.try_borrow_mut().map_err(|_| js_err("the session is busy"))?;
        let noise = on_engine!(engine_of(&mut s)?, d => d.round_noise()).map_err(js_err)?;
        Ok(noise.iter().map(|z| JsValue::from(Float32Array::from(&z[..]))).collect())
    }

    /// This worker's networks' part of the round's hyper-gradient.
    #[wasm_bindgen(js_name = privateGradients)]
    pub fn private_gradients(&self) -> Result<(), JsValue> {
        let mut s = self.inner.try_borrow_mut().map_err(|_| js_err("the session is busy"))?;
        on_engine!(engine_of(&mut s)?, d => d.round_gradients()).map_err(js_err)
    }

    /// The round's Adam step, with this worker's part and `parts`, each helper's `Array` of
    /// `{loss, images, labels, rawLrs}` ([`Helper::private_gradients`]), helper after helper;
    /// resolves as [`Session::apply`] does.
    #[wasm_bindgen(js_name = privateApply)]
    pub fn private_apply(&self, parts: Array) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let host: Vec<Vec<HostGradient>> = parts.iter().map(|p| Array::from(&p).iter().map(|g| gradient_from_js(&g)).collect::<Result<_, _>>()).collect::<Result<_, _>>()?;
            let mut engine = take_engine(&inner)?;
            let step = on_engine!(&mut engine, d => async {
                let others = host.iter().map(|p| p.iter().map(|g| d.gradient_from_host(g)).collect::<crate::Result<Vec<_>>>()).collect::<crate::Result<Vec<_>>>()?;
                let g = d.round_result(others)?;
                d.apply(g).await
            }.await);
            Ok(record_step(&inner, engine, step))
        })
    }

    /// Computes the begun round in this worker alone, from whatever step it reached (a helper
    /// failed): the same networks, patients and noise; then its Adam step. Resolves as
    /// [`Session::apply`] does.
    #[wasm_bindgen(js_name = privateAlone)]
    pub fn private_alone(&self) -> Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let mut engine = take_engine(&inner)?;
            let step = on_engine!(&mut engine, d => async {
                let g = d.finish_round_alone()?;
                d.apply(g).await
            }.await);
            Ok(record_step(&inner, engine, step))
        })
    }
}

#[wasm_bindgen]
impl Helper {
    /// Unrolls this helper's networks of a private round: the distilled data and their weights
    /// (an `Array` of `Float32Array`s) as [`Session::private_plan`] gives them.
    #[wasm_bindgen(js_name = beginShare)]
    pub fn begin_share(&self, images: Vec<f32>, labels: Vec<f32>, raw_lrs: Vec<f32>, inits: Array) -> Result<(), JsValue> {
        let inits = float_arrays(&inits.into(), "the networks' weights")?;
        let state = HostState { images, labels, raw_lrs };
        let mut cell = self.engine.try_borrow_mut().map_err(|_| js_err("the helper is busy"))?;
        let engine = cell.as_mut().ok_or_else(|| js_err("the helper is busy"))?;
        on_helper!(engine, d => d.remote_share(&state, &inits)).map_err(js_err)
    }

    /// This helper's networks' norms of a chunk of the round (`batch`, `bounds` as in the plan);
    /// resolves to `{sq, loss}`: per network, each patient's squared norm (`Float32Array`s) and
    /// the summed loss (one `Float32Array`).
    pub fn norms(&self, batch: Vec<u32>, bounds: Vec<u32>) -> Promise {
        let cell = self.engine.clone();
        future_to_promise(async move {
            let chunk = Chunk { batch: batch.into_iter().map(|i| i as usize).collect(), bounds: bounds.into_iter().map(|i| i as usize).collect() };
            let mut engine = cell.borrow_mut().take().ok_or_else(|| js_err("the helper is busy"))?;
            let norms = on_helper!(&mut engine, d => d.remote_norms(&chunk).await);
            *cell.borrow_mut() = Some(engine);
            let norms = norms.map_err(js_err)?;
            let o = js_sys::Object::new();
            set(&o, "sq", norms.sq.iter().map(|v| JsValue::from(Float32Array::from(&v[..]))).collect::<Array>().into())?;
            set(&o, "loss", Float32Array::from(&norms.loss[..]).into())?;
            Ok(o.into())
        })
    }

    /// Forms this helper's weighted sums of the chunk whose norms it gave, with the clipping
    /// weights of [`Session::private_weights`].
    pub fn weights(&self, w: Vec<f32>) -> Result<(), JsValue> {
        let mut cell = self.engine.try_borrow_mut().map_err(|_| js_err("the helper is busy"))?;
        let engine = cell.as_mut().ok_or_else(|| js_err("the helper is busy"))?;
        on_helper!(engine, d => d.remote_weights(&w)).map_err(js_err)
    }

    /// This helper's networks' part of the round's hyper-gradient, given their noise (an `Array`
    /// of `Float32Array`s, in their order, in steps of the grid), the plan's `scale` and `step`;
    /// resolves to an `Array` of `{loss, images, labels, rawLrs}`.
    #[wasm_bindgen(js_name = privateGradients)]
    pub fn private_gradients(&self, noise: Array, scale: f64, step: f64) -> Promise {
        let cell = self.engine.clone();
        future_to_promise(async move {
            let noise = float_arrays(&noise.into(), "the noise")?;
            let mut engine = cell.borrow_mut().take().ok_or_else(|| js_err("the helper is busy"))?;
            let parts = on_helper!(&mut engine, d => d.remote_private_gradients(&noise, scale, step).await);
            *cell.borrow_mut() = Some(engine);
            parts.map_err(js_err)?.iter().map(gradient_to_js).collect::<Result<Array, _>>().map(Into::into)
        })
    }
}
