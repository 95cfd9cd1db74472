//! One outer iteration's networks spread over several workers (the page's helper Web Workers).
//! The main [`Distiller`] draws the iteration's [`Plan`]; each worker computes the meta-gradients
//! of its share of the networks from host copies of the distilled data and of the networks'
//! weights ([`Distiller::remote_gradient`]); the main distiller takes their mean in the plan's
//! order and the Adam step ([`Distiller::apply`]). Every copy is exact, so the result is bit for
//! bit that of [`Distiller::step`] on one worker.

use burn_tensor::{backend::Backend, Tensor, TensorData};

use crate::distill::{read_f32, DistilledTensors, Distiller, MetaGradient, Plan};
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

/// Reads a plan back to the host.
pub async fn host_plan<B: Backend>(plan: &Plan<B>) -> Result<HostPlan> {
    let mut inits = Vec::with_capacity(plan.inits.len());
    for params in &plan.inits {
        let mut flat = Vec::new();
        for p in params {
            flat.extend(read_f32(p.clone()).await?);
        }
        inits.push(flat);
    }
    Ok(HostPlan { inits, batch: plan.batch.clone() })
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
        let want: usize = specs.iter().map(|p| p.numel()).sum();
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

    /// The meta-gradient of one network of another distiller's plan (same configuration, same
    /// training split): the distilled data `state`, the network's weights `init`, the minibatch
    /// `batch`. Replaces this distiller's own distilled data with `state`.
    pub async fn remote_gradient(&mut self, state: &HostState, init: &[f32], batch: &[usize]) -> Result<HostGradient> {
        if let Some(&i) = batch.iter().find(|&&i| i >= self.train_len()) {
            return Err(Error::Worker(format!("batch index {i} is outside the {} training images", self.train_len())));
        }
        let (s, dev) = (self.state(), self.device());
        let next = DistilledTensors {
            images: tensor(&state.images, s.images.dims(), "images", dev)?,
            labels: tensor(&state.labels, s.labels.dims(), "labels", dev)?,
            raw_lrs: tensor(&state.raw_lrs, s.raw_lrs.dims(), "learning rates", dev)?,
        };
        self.set_state(next);
        let init = self.params_from_host(init)?;
        host_gradient(self.meta_gradient(&init, batch)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::data::tests::toy;
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
