//! The differentially private outer iteration (`crate::privacy`): Poisson sampling of patients,
//! each sampled patient's gradient with respect to the final inner weights of all the
//! iteration's networks clipped jointly to C, Gaussian noise, and the exact vector–Jacobian
//! product of that noisy sum back to the images, labels and learning rates, through the
//! surrogate loss `(Σ_p w_p ℓ_p(θ_T) + σC⟨ξ, θ_T⟩) / (qN)` with `w_p = min(1, C/‖g_p‖)` from a
//! detached pass. Everything after the noise is post-processing.

use std::collections::BTreeMap;

use burn_tensor::{backend::Backend, Int, Tensor, TensorData};

use super::{Distiller, MetaGradient, A};
use crate::config::{Config, PrivacyConfig};
use crate::data::{Dataset, Normalization};
use crate::error::{Error, Result};
use crate::grad::group_grads;
use crate::loss::soft_cross_entropy;
use crate::privacy::{noise::SecretRng, PrivacyPlan, DEFAULT_ITERATIONS, PUBLIC_NORMALIZATION};

/// Per-image gradients of one parameter materialised at once at most (floats): the detached
/// pass takes the sampled patients in chunks of about this many values of the largest parameter.
const CHUNK_VALUES: usize = 4 << 20;

/// A private run's plan, its training patients and its secret randomness.
pub(super) struct Private {
    pub(super) plan: PrivacyPlan,
    /// Each training patient's images (indices into the training split), in patient-id order.
    patients: Vec<Vec<usize>>,
    rng: SecretRng,
}

impl Private {
    /// Calibrates the plan for `train`'s patients; refuses a normalisation other than the public one.
    pub(super) fn new(settings: &PrivacyConfig, config: &Config, train: &Dataset, norm: Normalization) -> Result<Self> {
        if norm != PUBLIC_NORMALIZATION {
            return Err(Error::Config("a private run normalises pixels with the fixed public constants (privacy::PUBLIC_NORMALIZATION), not with statistics of the training images".into()));
        }
        let mut by_patient: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, &p) in train.patients.iter().enumerate() {
            by_patient.entry(p).or_default().push(i);
        }
        let patients: Vec<Vec<usize>> = by_patient.into_values().collect();
        let iterations = config.max_iterations.unwrap_or(DEFAULT_ITERATIONS);
        let plan = PrivacyPlan::new(settings, config.batch_size, iterations, patients.len(), train.len())?;
        Ok(Self { plan, patients, rng: SecretRng::from_os()? })
    }

    /// One Poisson sample: the sampled patients' images in the training split, grouped in
    /// chunks of whole patients of at most `chunk` images (a larger patient is a chunk alone).
    fn sample(&mut self, chunk: usize) -> Vec<Vec<&[usize]>> {
        let q = self.plan.sample_rate;
        let mut chunks: Vec<Vec<&[usize]>> = Vec::new();
        let mut size = chunk;
        for p in &self.patients {
            if !self.rng.sampled(q) {
                continue;
            }
            if size + p.len() > chunk {
                chunks.push(Vec::new());
                size = 0;
            }
            chunks.last_mut().expect("a chunk").push(p);
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
    /// outer loss of the sampled images, for display only.
    pub(super) fn private_hypergradient(&mut self) -> MetaGradient<B> {
        let inits: Vec<_> = (0..self.networks_per_iteration()).map(|_| self.sample_init()).collect();
        let largest = self.net.params().iter().map(|p| p.numel()).max().unwrap_or(1);
        let private = self.private.as_mut().expect("privacy is on");
        let chunks: Vec<Vec<Vec<usize>>> = private.sample((CHUNK_VALUES / largest).clamp(1, 1024)).into_iter().map(|c| c.into_iter().map(<[usize]>::to_vec).collect()).collect();
        let plan = private.plan.clone();
        let device = self.device.clone();

        // The sampled images in chunk order; each image's patient within its chunk (for the
        // per-patient norms) and over all chunks (for the clipping weights).
        let (mut batch, mut group, mut groups) = (Vec::new(), Vec::<i64>::new(), Vec::new());
        for c in &chunks {
            let first = group.last().map_or(0, |&g| g + 1);
            let within: Vec<i64> = c.iter().enumerate().flat_map(|(g, images)| std::iter::repeat_n(g as i64, images.len())).collect();
            group.extend(within.iter().map(|g| first + g));
            batch.extend(c.iter().flatten());
            let images = within.len();
            groups.push((Tensor::<B, 1, Int>::from_data(TensorData::new(within, [images]), &device), c.len()));
        }
        let (real_x, real_y) = if batch.is_empty() { (None, None) } else { let (x, y) = self.real_batch(&batch); (Some(x), Some(y)) };

        // Detached pass: each patient's squared gradient norm, summed over the networks.
        let mut sq: Option<Tensor<B, 1>> = None;
        if let (Some(x), Some(y)) = (&real_x, &real_y) {
            for init in &inits {
                let theta = self.final_weights(init);
                let mut at = 0;
                let mut parts = Vec::new();
                for (within, patients) in &groups {
                    let n = within.dims()[0];
                    let (xc, yc) = (x.clone().narrow(0, at, n), y.clone().narrow(0, at, n));
                    at += n;
                    let norms = group_grads(&self.net, &theta, xc, yc, within.clone(), *patients).into_iter().map(|g| (g.clone() * g).sum_dim(1)).reduce(|a, b| a + b).expect("parameters");
                    parts.push(norms.reshape([-1]));
                }
                let here = Tensor::cat(parts, 0);
                sq = Some(match sq { Some(s) => s + here, None => here });
            }
        }
        // Each image's clipping weight min(1, C/‖g_p‖): 1 for a zero gradient, 0 for one that is
        // not finite (that patient is left out of the sum, which bounds its effect all the same).
        let weights = sq.map(|sq| {
            let w = sq.sqrt().recip().mul_scalar(plan.clip).clamp_max(1.0);
            let w = w.clone().mask_fill(w.is_nan(), 0.0);
            let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(group.clone(), [group.len()]), &device);
            w.select(0, idx)
        });

        // The surrogate, network by network: its gradient is the noisy clipped sum divided by qN,
        // back-propagated; the networks' gradients are averaged, as without privacy.
        let k = inits.len() as f64;
        let scale = 1.0 / (plan.sample_rate * plan.patients as f64 * k);
        // σC, and no noise at all with σ = 0 (even with C = ∞, where the product is NaN).
        let sd = if plan.noise_multiplier == 0.0 { 0.0 } else { plan.noise_multiplier * plan.clip };
        let classes = self.net.classes();
        let mut total: Option<MetaGradient<B>> = None;
        for init in &inits {
            let u = self.unroll(init);
            let p = self.private.as_mut().expect("privacy is on");
            let mut surrogate: Option<Tensor<A<B>, 1>> = None;
            for theta in &u.params {
                let n = theta.dims()[0];
                let xi = Tensor::<A<B>, 1>::from_data(TensorData::new(p.rng.gaussians(n, 1.0), [n]), &device);
                let term = (theta.clone() * xi).sum().mul_scalar(sd);
                surrogate = Some(match surrogate { Some(s) => s + term, None => term });
            }
            let mut shown = Tensor::<B, 1>::zeros([1], &device);
            if let (Some(x), Some(y), Some(w)) = (&real_x, &real_y, &weights) {
                let n = x.dims()[0];
                let logits = self.net.forward_ad(&u.params, Tensor::from_inner(x.clone()));
                shown = soft_cross_entropy(logits.clone().inner(), y.clone());
                let weighted = y.clone() * w.clone().reshape([n, 1]).expand([n, classes]);
                let sum = soft_cross_entropy(logits, Tensor::from_inner(weighted)).mul_scalar(n as f64);
                surrogate = surrogate.map(|s| s + sum);
            }
            let mut g = self.gradient_of(&u, surrogate.expect("parameters").mul_scalar(scale));
            g.loss = shown;
            total = Some(match total { Some(t) => t.plus(g), None => g });
        }
        let mut total = total.expect("at least one network");
        total.loss = total.loss.div_scalar(k);
        total
    }
}
