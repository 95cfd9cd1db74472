//! One outer iteration's networks spread over several workers (the page's helper Web Workers).
//! The main [`Distiller`] draws the iteration's [`Plan`]; each worker computes the meta-gradients
//! of its share of the networks from host copies of the distilled data and of the networks'
//! weights ([`Distiller::remote_gradient`]); the main distiller takes their mean in the plan's
//! order and the Adam step ([`Distiller::apply`]). Every copy is exact, so the result is bit for
//! bit that of [`Distiller::step`] on one worker.
//!
//! A private iteration is shared the same way, in more steps (see `distill::private`): the main
//! distiller begins a round ([`Distiller::begin_round`], [`host_private_plan`]); each helper
//! unrolls its networks ([`Distiller::remote_share`]) and, chunk of patients by chunk, reports
//! their squared norms ([`Distiller::remote_norms`]) and gets back the clipping weights that the
//! main distiller computes from every network's norms ([`Distiller::remote_weights`]); last, it
//! back-propagates its networks' clipped sums plus the noise the main distiller drew
//! ([`Distiller::remote_private_gradients`]), and the main distiller adds the parts up.

use burn_tensor::{backend::Backend, Tensor, TensorData};

use crate::distill::{read_f32, Chunk, ChunkNorms, DistilledTensors, Distiller, MetaGradient, Plan, PrivatePlan};
use crate::error::{Error, Result};
use crate::net::Params;

/// The learnable distilled data on the host, as a worker needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostState {
    /// Images, `[n, 1, size, size]` row-major.
    pub images: Vec<f32>,
    /// Label values, `[n, classes]`.
    pub labels: Vec<f32>,
    /// Raw (pre-softplus) learning rates.
    pub raw_lrs: Vec<f32>,
}

/// A meta-gradient on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostGradient {
    /// The outer loss.
    pub loss: f32,
    /// d loss / d images.
    pub images: Vec<f32>,
    /// d loss / d labels.
    pub labels: Vec<f32>,
    /// d loss / d raw learning rates.
    pub raw_lrs: Vec<f32>,
}

/// A [`Plan`] on the host: each network's weights, parameter after parameter, and the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct HostPlan {
    /// One flat weight vector per network, in the plan's order.
    pub inits: Vec<Vec<f32>>,
    /// Indices of the real minibatch.
    pub batch: Vec<usize>,
}

/// A private iteration's [`PrivatePlan`] on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostPrivatePlan {
    /// One flat weight vector per network, in the plan's order.
    pub inits: Vec<Vec<f32>>,
    /// The sampled patients, in chunks.
    pub chunks: Vec<Chunk>,
    /// The surrogate's factor 1/(qNK).
    pub scale: f64,
    /// The noise grid's step (0 without noise).
    pub step: f64,
}

/// [`ChunkNorms`] on the host: per network, each patient's squared norm and the summed loss.
#[derive(Clone, Debug, PartialEq)]
pub struct HostNorms {
    /// Per network, `[patients]`.
    pub sq: Vec<Vec<f32>>,
    /// Per network.
    pub loss: Vec<f32>,
}

async fn host_inits<B: Backend>(inits: &[Params<B>]) -> Result<Vec<Vec<f32>>> {
    let mut flat_inits = Vec::with_capacity(inits.len());
    for params in inits {
        let mut flat = Vec::new();
        for p in params {
            flat.extend(read_f32(p.clone()).await?);
        }
        flat_inits.push(flat);
    }
    Ok(flat_inits)
}

/// Reads a plan back to the host.
pub async fn host_plan<B: Backend>(plan: &Plan<B>) -> Result<HostPlan> {
    Ok(HostPlan { inits: host_inits(&plan.inits).await?, batch: plan.batch.clone() })
}

/// Reads a private iteration's plan back to the host.
pub async fn host_private_plan<B: Backend>(plan: &PrivatePlan<B>) -> Result<HostPrivatePlan> {
    Ok(HostPrivatePlan { inits: host_inits(&plan.inits).await?, chunks: plan.chunks.clone(), scale: plan.scale, step: plan.step })
}

/// Reads a chunk's norms back to the host.
pub async fn host_norms<B: Backend>(n: ChunkNorms<B>) -> Result<HostNorms> {
    let mut host = HostNorms { sq: Vec::with_capacity(n.sq.len()), loss: Vec::with_capacity(n.loss.len()) };
    for (sq, loss) in n.sq.into_iter().zip(n.loss) {
        host.sq.push(read_f32(sq).await?);
        host.loss.push(read_f32(loss).await?[0]);
    }
    Ok(host)
}

/// Reads a meta-gradient back to the host.
pub async fn host_gradient<B: Backend>(g: MetaGradient<B>) -> Result<HostGradient> {
    Ok(HostGradient {
        loss: read_f32(g.loss).await?[0],
        images: read_f32(g.images.reshape([-1])).await?,
        labels: read_f32(g.labels.reshape([-1])).await?,
        raw_lrs: read_f32(g.raw_lrs).await?,
    })
}

fn tensor<B: Backend, const D: usize>(values: &[f32], shape: [usize; D], what: &str, device: &B::Device) -> Result<Tensor<B, D>> {
    let want: usize = shape.iter().product();
    if values.len() != want {
        return Err(Error::Worker(format!("{what}: {} values where {want} were expected", values.len())));
    }
    Ok(Tensor::from_data(TensorData::new(values.to_vec(), shape), device))
}

impl<B: Backend> Distiller<B> {
    /// The learnable distilled data read back to the host.
    pub async fn host_state(&self) -> Result<HostState> {
        let s = self.state();
        Ok(HostState {
            images: read_f32(s.images.clone().reshape([-1])).await?,
            labels: read_f32(s.labels.clone().reshape([-1])).await?,
            raw_lrs: read_f32(s.raw_lrs.clone()).await?,
        })
    }

    /// Network weights from their flat host copy.
    pub fn params_from_host(&self, values: &[f32]) -> Result<Params<B>> {
        let specs = self.network().params();
        let want = self.network().weights();
        if values.len() != want {
            return Err(Error::Worker(format!("network weights: {} values where {want} were expected", values.len())));
        }
        let mut at = 0;
        let mut params = Vec::with_capacity(specs.len());
        for p in specs {
            params.push(Tensor::from_data(TensorData::new(values[at..at + p.numel()].to_vec(), [p.numel()]), self.device()));
            at += p.numel();
        }
        Ok(params)
    }

    /// A meta-gradient from its host copy (shaped like this distiller's data).
    pub fn gradient_from_host(&self, g: &HostGradient) -> Result<MetaGradient<B>> {
        let s = self.state();
        let dev = self.device();
        Ok(MetaGradient {
            loss: tensor(&[g.loss], [1], "loss", dev)?,
            images: tensor(&g.images, s.images.dims(), "image gradient", dev)?,
            labels: tensor(&g.labels, s.labels.dims(), "label gradient", dev)?,
            raw_lrs: tensor(&g.raw_lrs, s.raw_lrs.dims(), "learning-rate gradient", dev)?,
        })
    }

    /// Replaces this distiller's distilled data with another distiller's host copy.
    fn set_host_state(&mut self, state: &HostState) -> Result<()> {
        let (s, dev) = (self.state(), self.device());
        let next = DistilledTensors {
            images: tensor(&state.images, s.images.dims(), "images", dev)?,
            labels: tensor(&state.labels, s.labels.dims(), "labels", dev)?,
            raw_lrs: tensor(&state.raw_lrs, s.raw_lrs.dims(), "learning rates", dev)?,
        };
        self.set_state(next);
        Ok(())
    }

    /// The meta-gradient of one network of another distiller's plan (same configuration, same
    /// training split): the distilled data `state`, the network's weights `init`, the minibatch
    /// `batch`. Replaces this distiller's own distilled data with `state`.
    pub async fn remote_gradient(&mut self, state: &HostState, init: &[f32], batch: &[usize]) -> Result<HostGradient> {
        if let Some(&i) = batch.iter().find(|&&i| i >= self.train_len()) {
            return Err(Error::Worker(format!("batch index {i} is outside the {} training images", self.train_len())));
        }
        self.set_host_state(state)?;
        let init = self.params_from_host(init)?;
        host_gradient(self.meta_gradient(&init, batch)).await
    }

    /// A helper's share of another distiller's private round: the distilled data `state` and
    /// the weights `inits` of its networks (see [`Distiller::begin_share`]).
    pub fn remote_share(&mut self, state: &HostState, inits: &[Vec<f32>]) -> Result<()> {
        self.set_host_state(state)?;
        let inits = inits.iter().map(|i| self.params_from_host(i)).collect::<Result<Vec<_>>>()?;
        self.begin_share(&inits)
    }

    /// A helper's norms of a chunk of the round (see [`Distiller::helper_norms`]).
    pub async fn remote_norms(&mut self, chunk: &Chunk) -> Result<HostNorms> {
        host_norms(self.helper_norms(chunk)?).await
    }

    /// A helper's weighted sums of the chunk (see [`Distiller::helper_weights`]).
    pub fn remote_weights(&mut self, w: &[f32]) -> Result<()> {
        let w = Tensor::from_data(TensorData::new(w.to_vec(), [w.len()]), self.device());
        self.helper_weights(w)
    }

    /// A helper's networks' part of the round's hyper-gradient (see
    /// [`Distiller::helper_gradients`]).
    pub async fn remote_private_gradients(&mut self, noise: &[Vec<f32>], scale: f64, step: f64) -> Result<Vec<HostGradient>> {
        let mut host = Vec::new();
        for g in self.helper_gradients(noise, scale, step)? {
            host.push(host_gradient(g).await?);
        }
        Ok(host)
    }

    /// The helpers' norms of a chunk as the main distiller's tensors.
    pub fn norms_from_host(&self, n: &HostNorms) -> Result<ChunkNorms<B>> {
        let dev = self.device();
        Ok(ChunkNorms {
            sq: n.sq.iter().map(|v| tensor(v, [v.len()], "norms", dev)).collect::<Result<_>>()?,
            loss: n.loss.iter().map(|&l| tensor(&[l], [1], "loss", dev)).collect::<Result<_>>()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, PrivacyConfig};
    use crate::data::tests::toy;
    use crate::privacy::{noise::SecretRng, PUBLIC_NORMALIZATION};
    use crate::data::Normalization;
    use burn_ndarray::NdArray;

    type B = NdArray;

    fn config() -> Config {
        Config { image_size: 28, steps: 2, epochs: 2, nets_per_iteration: 3, batch_size: 16, eval_nets: 1, ..Config::default() }
    }

    /// Three iterations with each network's meta-gradient computed by a second distiller from
    /// host copies end exactly where three ordinary steps end.
    #[test]
    fn spreading_the_networks_over_workers_changes_nothing() {
        let data = toy(2, 12, 28);
        let norm = Normalization::of(&data);
        let dev = Default::default();
        let mut one = Distiller::<B>::new(config(), &data, norm, &dev).unwrap();
        let mut main = Distiller::<B>::new(config(), &data, norm, &dev).unwrap();
        let mut worker = Distiller::<B>::new(Config { seed: 99, ..config() }, &data, norm, &dev).unwrap();
        for _ in 0..3 {
            let expected = pollster::block_on(one.step()).unwrap();
            let plan = pollster::block_on(host_plan(&main.plan())).unwrap();
            assert_eq!(plan.inits.len(), 3);
            let state = pollster::block_on(main.host_state()).unwrap();
            let grads: Vec<MetaGradient<B>> = plan
                .inits
                .iter()
                .map(|init| {
                    let g = pollster::block_on(worker.remote_gradient(&state, init, &plan.batch)).unwrap();
                    main.gradient_from_host(&g).unwrap()
                })
                .collect();
            let report = pollster::block_on(main.apply(MetaGradient::mean(grads))).unwrap();
            assert_eq!(report, expected);
        }
        let (a, b) = (pollster::block_on(one.host_state()).unwrap(), pollster::block_on(main.host_state()).unwrap());
        assert!(a == b, "the distilled data differ");
    }

    /// A private iteration shared with a helper through host copies, the helper's networks' norms
    /// and parts coming back as the page's helper workers send them, ends where three one-worker
    /// private steps end, given the same secret randomness (malformed norms refused on the way);
    /// and so does a fourth whose helper fails midway, finished by the main distiller alone.
    #[test]
    fn sharing_a_private_iteration_changes_nothing() {
        let mut data = toy(2, 40, 28);
        data.patients = (0..data.len() as u64).map(|i| i / 2).collect();
        let privacy = PrivacyConfig { epsilon: 8.0, sample_rate: Some(0.5), ..Default::default() };
        let config = Config { privacy: Some(privacy), ..config() };
        let dev = Default::default();
        let new = |seed| {
            let mut d = Distiller::<B>::new(Config { seed, ..config.clone() }, &data, PUBLIC_NORMALIZATION, &dev).unwrap();
            let plan = d.privacy().unwrap().clone();
            d.override_privacy(plan, SecretRng::known(5)).unwrap();
            d.limit_chunks(100_000);
            d
        };
        let (mut one, mut main, mut helper) = (new(0), new(0), new(99));
        let mut most_chunks = 0;
        for i in 0..4 {
            let expected = pollster::block_on(one.step()).unwrap();
            let plan = pollster::block_on(host_private_plan(&main.begin_round(2).unwrap())).unwrap();
            let theirs = |all: &[Vec<f32>]| -> Vec<Vec<f32>> { all.iter().skip(1).step_by(2).cloned().collect() };
            most_chunks = most_chunks.max(plan.chunks.len());
            helper.remote_share(&pollster::block_on(main.host_state()).unwrap(), &theirs(&plan.inits)).unwrap();
            if i == 3 {
                // The helper fails after the first chunk's weights: this distiller computes the
                // same round alone.
                main.round_norms().unwrap();
                let n = pollster::block_on(helper.remote_norms(&plan.chunks[0])).unwrap();
                main.round_weights(vec![main.norms_from_host(&n).unwrap()]).unwrap();
                let g = main.finish_round_alone().unwrap();
                assert_eq!(pollster::block_on(main.apply(g)).unwrap(), expected);
                continue;
            }
            for chunk in &plan.chunks {
                main.round_norms().unwrap();
                let n = pollster::block_on(helper.remote_norms(chunk)).unwrap();
                if i == 1 {
                    // Norms for too few patients are refused, and change nothing.
                    let short = HostNorms { sq: n.sq.iter().map(|v| v[1..].to_vec()).collect(), loss: n.loss.clone() };
                    let e = main.round_weights(vec![main.norms_from_host(&short).unwrap()]).err().unwrap().to_string();
                    assert!(e.contains("where the chunk has"), "{e}");
                }
                let w = main.round_weights(vec![main.norms_from_host(&n).unwrap()]).unwrap();
                helper.remote_weights(&pollster::block_on(read_f32(w)).unwrap()).unwrap();
            }
            let noise = main.round_noise().unwrap();
            main.round_gradients().unwrap();
            let parts = pollster::block_on(helper.remote_private_gradients(&theirs(&noise), plan.scale, plan.step)).unwrap();
            let parts = parts.iter().map(|g| main.gradient_from_host(g).unwrap()).collect();
            let g = main.round_result(vec![parts]).unwrap();
            assert_eq!(pollster::block_on(main.apply(g)).unwrap(), expected);
        }
        assert!(most_chunks > 1, "the patients came in one chunk only: the test does not cover the loop");
        let (a, b) = (pollster::block_on(one.host_state()).unwrap(), pollster::block_on(main.host_state()).unwrap());
        assert!(a == b, "the distilled data differ");
    }

    #[test]
    fn host_copies_of_the_wrong_size_are_refused() {
        let data = toy(2, 6, 28);
        let d = Distiller::<B>::new(config(), &data, Normalization::of(&data), &Default::default()).unwrap();
        let e = d.params_from_host(&[0.0; 3]).err().unwrap().to_string();
        assert!(e.contains("network weights: 3 values"), "{e}");
        let g = HostGradient { loss: 1.0, images: vec![0.0; 5], labels: vec![], raw_lrs: vec![] };
        let e = d.gradient_from_host(&g).err().unwrap().to_string();
        assert!(e.contains("image gradient: 5 values"), "{e}");
    }
}
