//! The differentially private outer iteration (`crate::privacy`): Poisson sampling of patients,
//! each sampled patient's gradient g_p with respect to the final inner weights θ_T of all the
//! iteration's networks clipped jointly to C, Gaussian noise: the vector
//! `v = Σ_p min(1, C/‖g_p‖) g_p + σCξ`, formed explicitly (the mechanism's output). Then the
//! exact vector–Jacobian product of `v/(qN)` back to the images, labels and learning rates,
//! through the surrogate `⟨v, θ_T⟩/(qN)` with `v` a constant: post-processing. The real images
//! never enter an autodiff graph; the per-patient pass is detached ([`patient_grads`]), and each
//! network is unrolled once, with its (small) graph over the distilled images.

use std::collections::BTreeMap;

use burn_tensor::{backend::Backend, Tensor, TensorData};

use super::{Distiller, MetaGradient, Unrolled, A};
use crate::config::Config;
use crate::data::{Dataset, Normalization};
use crate::error::{Error, Result};
use crate::grad::{patient_grads, PatientGrads};
use crate::net::{Network, Params};
use crate::privacy::{noise::SecretRng, PrivacyPlan, PUBLIC_NORMALIZATION};

/// Floats the detached pass holds per chunk of patients at most, roughly: it takes the sampled
/// patients in chunks of whole patients sized by [`chunk_images`].
const CHUNK_VALUES: usize = 4 << 20;

/// Images per chunk: what [`PatientGrads`] keeps per image for every network (the
/// convolutions' per-patient gradients, the dense layers' inputs and output gradients) within
/// [`CHUNK_VALUES`].
fn chunk_images(net: &Network, networks: usize) -> usize {
    let per_image: usize = net.params().iter().map(|p| match p.shape.as_slice() { [i, o] => i + o, s => s.iter().product() }).sum();
    (CHUNK_VALUES / (networks * per_image).max(1)).clamp(1, 1024)
}

/// A private run's plan, its training patients and its secret randomness.
pub(super) struct Private {
    pub(super) plan: PrivacyPlan,
    /// Each training patient's images (indices into the training split), in patient-id order.
    patients: Vec<Vec<usize>>,
    rng: SecretRng,
}

impl Private {
    /// Calibrates the plan for `train`'s patients; refuses a normalisation other than the public one.
    pub(super) fn new(config: &Config, train: &Dataset, norm: Normalization) -> Result<Self> {
        if norm != PUBLIC_NORMALIZATION {
            return Err(Error::Config("a private run normalises pixels with the fixed public constants (privacy::PUBLIC_NORMALIZATION), not with statistics of the training images".into()));
        }
        let mut by_patient: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, &p) in train.patients.iter().enumerate() {
            by_patient.entry(p).or_default().push(i);
        }
        let patients: Vec<Vec<usize>> = by_patient.into_values().collect();
        let plan = PrivacyPlan::of(config, patients.len(), train.len())?.ok_or_else(|| Error::Config("privacy is off in this configuration".into()))?;
        Ok(Self { plan, patients, rng: SecretRng::from_os()? })
    }

    /// One Poisson sample: the sampled patients' images (indices into the training split), the
    /// patients ordered by their number of images (the order of a sum; it keeps the padding of
    /// [`patient_grads`]'s Gram matrices small) and grouped in chunks of whole patients of at
    /// most `chunk` images (a larger patient is a chunk alone).
    fn sample(&mut self, chunk: usize) -> Vec<Vec<Vec<usize>>> {
        let q = self.plan.sample_rate;
        let mut sampled: Vec<&Vec<usize>> = self.patients.iter().filter(|_| self.rng.sampled(q)).collect();
        sampled.sort_by_key(|p| p.len());
        let mut chunks: Vec<Vec<Vec<usize>>> = Vec::new();
        let mut size = chunk;
        for p in sampled {
            if size + p.len() > chunk {
                chunks.push(Vec::new());
                size = 0;
            }
            chunks.last_mut().expect("a chunk").push(p.clone());
            size += p.len();
        }
        chunks
    }
}

impl<B: Backend> Distiller<B> {
    /// The differential-privacy plan of this run, when privacy is on.
    pub fn privacy(&self) -> Option<&PrivacyPlan> {
        self.private.as_ref().map(|p| &p.plan)
    }

    /// Replaces the privacy plan and its randomness: for tests, which need σ = 0, C = ∞ or
    /// known noise. The archive records the ε of the plan that ran, whatever it is.
    pub fn override_privacy(&mut self, plan: PrivacyPlan, rng: SecretRng) -> Result<()> {
        let p = self.private.as_mut().ok_or_else(|| Error::Config("privacy is off in this run".into()))?;
        p.plan = plan;
        p.rng = rng;
        Ok(())
    }

    /// One private hyper-gradient (see the module documentation). Its loss is the plain mean
    /// outer loss of the sampled images over the networks, for display only.
    pub(super) fn private_hypergradient(&mut self) -> MetaGradient<B> {
        let inits: Vec<_> = (0..self.networks_per_iteration()).map(|_| self.sample_init()).collect();
        let chunk = chunk_images(&self.net, inits.len());
        let private = self.private.as_mut().expect("privacy is on");
        let chunks = private.sample(chunk);
        let plan = private.plan.clone();
        let unrolled: Vec<Unrolled<B>> = inits.iter().map(|init| self.unroll(init)).collect();
        let thetas: Vec<Params<B>> = unrolled.iter().map(|u| u.params.iter().map(|p| p.clone().inner()).collect()).collect();
        let (sums, loss_sum, images) = self.clipped_sums(&thetas, &chunks, plan.clip);

        // v = the clipped sum plus N(0, σ²C²) noise, network by network; the surrogate's
        // gradient is v/(qN) back-propagated, and the networks' gradients are averaged as
        // without privacy. σC, and no noise at all with σ = 0 (even with C = ∞, where the
        // product is NaN).
        let k = inits.len() as f64;
        let scale = 1.0 / (plan.sample_rate * plan.patients as f64 * k);
        let sd = if plan.noise_multiplier == 0.0 { 0.0 } else { plan.noise_multiplier * plan.clip };
        let shown = if images == 0 { loss_sum } else { loss_sum.div_scalar(images as f64 * k) };
        let mut total: Option<MetaGradient<B>> = None;
        for (u, sum) in unrolled.iter().zip(sums) {
            let rng = &mut self.private.as_mut().expect("privacy is on").rng;
            let surrogate = u
                .params
                .iter()
                .zip(sum)
                .map(|(theta, clipped)| {
                    let n = theta.dims()[0];
                    let noise = Tensor::<B, 1>::from_data(TensorData::new(rng.gaussians(n, sd), [n]), &self.device);
                    let v = Tensor::<A<B>, 1>::from_inner(clipped + noise);
                    (theta.clone() * v).sum()
                })
                .reduce(|a, b| a + b)
                .expect("parameters");
            let mut g = self.gradient_of(u, surrogate.mul_scalar(scale));
            g.loss = shown.clone();
            total = Some(match total { Some(t) => t.plus(g), None => g });
        }
        total.expect("at least one network")
    }

    /// For each network (final weights `thetas`), Σ_p min(1, C/‖g_p‖) g_p per parameter, where
    /// g_p is patient p's gradient at all the networks' final weights jointly; also the summed
    /// loss of the sampled images (`[1]`, for display) and their number. A patient whose norm is
    /// not finite gets weight 0 (left out of the sum, which bounds its effect all the same).
    fn clipped_sums(&self, thetas: &[Params<B>], chunks: &[Vec<Vec<usize>>], clip: f64) -> (Vec<Params<B>>, Tensor<B, 1>, usize) {
        let mut sums: Vec<Params<B>> = thetas.iter().map(|t| t.iter().map(|p| p.zeros_like()).collect()).collect();
        let mut loss = Tensor::<B, 1>::zeros([1], &self.device);
        let mut images = 0;
        for chunk in chunks {
            let batch: Vec<usize> = chunk.iter().flatten().copied().collect();
            let bounds: Vec<usize> = std::iter::once(0).chain(chunk.iter().scan(0, |at, p| { *at += p.len(); Some(*at) })).collect();
            let (x, y) = self.real_batch(&batch);
            let grads: Vec<PatientGrads<B>> = thetas.iter().map(|theta| patient_grads(&self.net, theta, x.clone(), y.clone(), &bounds)).collect();
            let sq = grads.iter().map(PatientGrads::total_sq_norms).reduce(|a, b| a + b).expect("a network");
            let w = sq.sqrt().recip().mul_scalar(clip).clamp_max(1.0);
            let w = w.clone().mask_fill(w.is_nan(), 0.0);
            for (sum, g) in sums.iter_mut().zip(&grads) {
                for (s, part) in sum.iter_mut().zip(g.weighted(w.clone())) {
                    *s = s.clone() + part;
                }
                loss = loss + g.loss_sum.clone();
            }
            images += batch.len();
        }
        (sums, loss, images)
    }
}
