//! The differentially private outer iteration (`crate::privacy`): Poisson sampling of patients,
//! each sampled patient's gradient g_p with respect to the final inner weights θ_T of all the
//! iteration's networks clipped jointly to C, Gaussian noise: the vector
//! `v = Σ_p min(1, C/‖g_p‖) g_p + σCξ`, formed explicitly (the mechanism's output). Then the
//! exact vector–Jacobian product of `v/(qN)` back to the images, labels and learning rates,
//! through the surrogate `⟨v, θ_T⟩/(qN)` with `v` a constant: post-processing. The real images
//! never enter an autodiff graph; the per-patient pass is detached ([`patient_grads`]), and each
//! network is unrolled once, with its (small) graph over the distilled images.
//!
//! The iteration is a [`Round`] of steps, so that its networks can be shared among workers (the
//! page's helper Web Workers, `crate::parallel`): each worker unrolls its networks (a [`Share`])
//! and reports its patients' squared norms chunk by chunk; this distiller adds them up over all
//! the networks, in their order, and hands back each patient's clipping weight; at the end it
//! draws all the noise, and each worker back-propagates its networks' part. With one worker the
//! same steps run here, so a shared iteration is bit for bit the one-worker one.

use std::collections::BTreeMap;

use burn_tensor::{backend::Backend, Tensor, TensorData};

use super::{Distiller, MetaGradient, Unrolled, A};
use crate::checkpoint::SessionPrivacy;
use crate::config::Config;
use crate::data::{Dataset, Normalization};
use crate::error::{Error, Result};
use crate::grad::{patient_grads, PatientGrads};
use crate::net::{Network, Params};
use crate::privacy::noise::{grid_release, Grid, SecretRng};
use crate::privacy::{PrivacyPlan, PUBLIC_NORMALIZATION};

/// Floats the detached pass holds per chunk of patients at most, roughly: it takes the sampled
/// patients in chunks of whole patients sized by [`chunk_images`].
const CHUNK_VALUES: usize = 4 << 20;

/// Images per chunk: what [`PatientGrads`] keeps per image for every network (the
/// convolutions' per-patient gradients, the dense layers' inputs and output gradients) within
/// [`CHUNK_VALUES`].
fn chunk_images(net: &Network, networks: usize, values: usize) -> usize {
    let per_image: usize = net.params().iter().map(|p| match p.shape.as_slice() { [i, o] => i + o, s => s.iter().product() }).sum();
    (values / (networks * per_image).max(1)).clamp(1, 1024)
}

/// A private run's plan, its training patients and its secret randomness.
pub(super) struct Private<B: Backend> {
    pub(super) plan: PrivacyPlan,
    /// Each training patient's images (indices into the training split), in patient-id order.
    patients: Vec<Vec<usize>>,
    rng: SecretRng,
    /// The iteration in progress, when this distiller coordinates one.
    round: Option<Round<B>>,
    /// The networks this distiller computes for another one's iteration (a helper's).
    share: Option<Share<B>>,
    /// [`CHUNK_VALUES`], smaller in tests that need several chunks of few patients.
    chunk_values: usize,
    /// The last round's count of patients left out (non-finite gradients), for its report.
    dropped: Option<Tensor<B, 1>>,
    /// This run segment's random id (a session file saved from it carries it).
    segment: String,
    /// The id of the session file this run resumed, if it did.
    resumed_from: Option<String>,
}

impl<B: Backend> Private<B> {
    /// Calibrates the plan for `train`'s patients; refuses a normalisation other than the public one.
    pub(super) fn new(config: &Config, train: &Dataset, norm: Normalization) -> Result<Self> {
        let patients = members(train, norm)?;
        let plan = PrivacyPlan::of(config, patients.len(), train.len())?.ok_or_else(|| Error::Config("privacy is off in this configuration".into()))?;
        let mut rng = SecretRng::from_os()?;
        let segment = rng.hex_id();
        Ok(Self { plan, patients, rng, round: None, share: None, chunk_values: CHUNK_VALUES, dropped: None, segment, resumed_from: None })
    }

    /// What a session file saved after `iteration` iterations carries.
    pub(super) fn session_record(&self, iteration: usize) -> SessionPrivacy {
        SessionPrivacy { id: self.segment.clone(), epsilon_spent: self.plan.spent_by(iteration), plan: self.plan.clone(), releases: Vec::new() }
    }

    /// Continues the plan a private session file saved: the same σ, q, C, δ and T (so the run
    /// never passes T, which [`Distiller::restore`] checks the saved iteration against, and the
    /// accountant adds up from where the file stopped). Refuses a session saved without privacy
    /// (its state was computed from the members without noise) or with another plan than this
    /// data and these settings give.
    pub(super) fn resume(&mut self, saved: Option<&SessionPrivacy>) -> Result<()> {
        self.resumed_from = Some(saved_plan(&self.plan, saved)?.id.clone());
        Ok(())
    }

    /// One Poisson sample of the patients ([`sample_chunks`]).
    fn sample(&mut self, chunk: usize) -> Vec<Chunk> {
        sample_chunks(&self.patients, self.plan.sample_rate, &mut self.rng, chunk)
    }
}

/// The private record of a session file that a private run with `plan` may continue: refuses a
/// session saved without privacy (its state was computed from the members without noise) or
/// with another plan than this data and these settings give.
pub(super) fn saved_plan<'a>(plan: &PrivacyPlan, saved: Option<&'a SessionPrivacy>) -> Result<&'a SessionPrivacy> {
    let Some(s) = saved else {
        return Err(Error::Session("the session was saved by a run without privacy: its state was computed from the training images without noise, so a private run cannot continue it".into()));
    };
    let p = &s.plan;
    if p != plan {
        return Err(Error::Session(format!(
            "the private session was saved with another plan (epsilon {} over {} {}, {} {}s); a resume continues the plan it was saved with",
            p.target_epsilon,
            p.iterations,
            if p.objective == crate::config::Objective::Matching { "releases" } else { "iterations" },
            p.patients,
            p.unit
        )));
    }
    Ok(s)
}

/// The training patients as either private form samples them: each patient's images (indices
/// into the training split), in patient-id order. Refuses a normalisation other than the public
/// one (statistics of the members would reach the result outside the mechanism).
pub(super) fn members(train: &Dataset, norm: Normalization) -> Result<Vec<Vec<usize>>> {
    if norm != PUBLIC_NORMALIZATION {
        return Err(Error::Config("a private run normalises pixels with the fixed public constants (privacy::PUBLIC_NORMALIZATION), not with statistics of the training images".into()));
    }
    let mut by_patient: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, &p) in train.patients.iter().enumerate() {
        by_patient.entry(p).or_default().push(i);
    }
    Ok(by_patient.into_values().collect())
}

/// One Poisson sample of `patients` at rate `q`: the sampled patients ordered by their number of
/// images (the order of a sum; it keeps the padding of [`patient_grads`]'s Gram matrices small),
/// in chunks of whole patients of at most `chunk` images (a larger patient is a chunk alone).
pub(super) fn sample_chunks(patients: &[Vec<usize>], q: f64, rng: &mut SecretRng, chunk: usize) -> Vec<Chunk> {
    let mut sampled: Vec<&Vec<usize>> = patients.iter().filter(|_| rng.sampled(q)).collect();
    sampled.sort_by_key(|p| p.len());
    let mut chunks: Vec<Chunk> = Vec::new();
    for p in sampled {
        match chunks.last_mut() {
            Some(c) if c.batch.len() + p.len() <= chunk => c.push(p),
            _ => {
                let mut c = Chunk { batch: Vec::new(), bounds: vec![0] };
                c.push(p);
                chunks.push(c);
            }
        }
    }
    chunks
}

/// Some sampled patients, whole: their images (indices into the training split), patient after
/// patient, and where each patient's images start and end (`bounds`, `0 = b_0 < … < b_P`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chunk {
    /// The images.
    pub batch: Vec<usize>,
    /// Patient p is `batch[bounds[p]..bounds[p + 1]]`.
    pub bounds: Vec<usize>,
}

impl Chunk {
    /// Patients in the chunk.
    pub fn patients(&self) -> usize {
        self.bounds.len().saturating_sub(1)
    }

    /// Refuses a chunk that is not whole patients of a training split of `train_len` images.
    pub fn check(&self, train_len: usize) -> Result<()> {
        if let Some(&i) = self.batch.iter().find(|&&i| i >= train_len) {
            return Err(Error::Worker(format!("chunk index {i} is outside the {train_len} training images")));
        }
        if self.bounds.first() != Some(&0) || self.bounds.last() != Some(&self.batch.len()) || self.bounds.windows(2).any(|b| b[0] >= b[1]) {
            return Err(Error::Worker(format!("chunk bounds {:?} do not split {} images into patients", self.bounds, self.batch.len())));
        }
        Ok(())
    }

    fn push(&mut self, patient: &[usize]) {
        self.batch.extend_from_slice(patient);
        self.bounds.push(self.batch.len());
    }
}

/// A private iteration's draw: each network's initial weights, and the sampled patients.
pub struct PrivatePlan<B: Backend> {
    /// One set of initial weights per network.
    pub inits: Vec<Params<B>>,
    /// The sampled patients, in chunks.
    pub chunks: Vec<Chunk>,
    /// The factor 1/(qNK) of the surrogate (K networks).
    pub scale: f64,
    /// The noise grid's step ([`Grid`]); 0 without noise.
    pub step: f64,
}

/// What a share of the networks reports on a chunk, network by network: each patient's squared
/// norm `[patients]`, and the chunk's summed loss `[1]` (for display).
pub struct ChunkNorms<B: Backend> {
    /// Per network.
    pub sq: Vec<Tensor<B, 1>>,
    /// Per network.
    pub loss: Vec<Tensor<B, 1>>,
}

/// Some of an iteration's networks as one worker computes them: unrolled, their final weights,
/// the clipped sums so far, and the per-patient gradients of the chunk whose weights are awaited.
pub struct Share<B: Backend> {
    unrolled: Vec<Unrolled<B>>,
    thetas: Vec<Params<B>>,
    sums: Vec<Params<B>>,
    held: Option<(usize, Vec<PatientGrads<B>>)>,
}

/// A private iteration in progress, its networks shared among `workers` workers: network j is
/// computed by worker j mod workers, 0 being this distiller. Its steps, in order:
/// [`Distiller::begin_round`]; for each chunk [`Distiller::round_norms`] then
/// [`Distiller::round_weights`]; [`Distiller::round_noise`]; [`Distiller::round_gradients`];
/// [`Distiller::round_result`]. [`Distiller::finish_round_alone`] computes the same round in
/// this distiller alone from any step on (when a helper fails): same networks, same patients,
/// same noise.
struct Round<B: Backend> {
    workers: usize,
    chunks: Vec<Chunk>,
    scale: f64,
    /// The noise's grid, none without noise.
    grid: Option<Grid>,
    /// Every network's initial weights.
    inits: Vec<Params<B>>,
    /// This distiller's networks, unrolled when first needed (so that the helpers unroll theirs
    /// meanwhile) and until their gradients are taken.
    share: Option<Share<B>>,
    /// Chunks whose weights are known.
    done: usize,
    /// This distiller's norms of chunk `done`, once computed.
    norms: Option<ChunkNorms<B>>,
    /// Σ of the sampled images' losses over the networks, and their number.
    loss: Tensor<B, 1>,
    images: usize,
    /// Sampled patients left out because their gradient was not finite, `[1]`.
    dropped: Tensor<B, 1>,
    /// Every network's noise, once drawn; then this distiller's networks' gradients.
    noise: Option<Vec<Vec<f32>>>,
    grads: Option<Vec<MetaGradient<B>>>,
}

impl<B: Backend> Round<B> {
    /// This distiller's networks' share of a list with one entry per network.
    fn own<'a, T>(&self, all: &'a [T]) -> impl Iterator<Item = &'a T> {
        all.iter().step_by(self.workers)
    }

    /// The same round (networks, patients, noise if drawn) for this distiller alone, from its
    /// first step.
    fn alone(self) -> Self {
        Round { workers: 1, share: None, done: 0, norms: None, loss: self.loss.zeros_like(), images: 0, dropped: self.dropped.zeros_like(), grads: None, ..self }
    }
}

fn out_of_order(what: &str) -> Error {
    Error::Worker(format!("a private iteration's steps came out of order: {what}"))
}

impl<B: Backend> Distiller<B> {
    /// The differential-privacy plan of this run, when privacy is on.
    pub fn privacy(&self) -> Option<&PrivacyPlan> {
        self.private.as_ref().map(|p| &p.plan).or_else(|| self.private_matching().map(|p| &p.plan))
    }

    /// Replaces the privacy plan and its randomness: for tests, which need σ = 0, C = ∞ or
    /// known noise. The archive records the ε of the plan that ran, whatever it is.
    pub fn override_privacy(&mut self, plan: PrivacyPlan, rng: SecretRng) -> Result<()> {
        if let Some(p) = self.matching.as_mut().and_then(|m| m.private.as_mut()) {
            p.override_plan(plan, rng);
            return Ok(());
        }
        let p = self.private_mut()?;
        p.plan = plan;
        p.rng = rng;
        Ok(())
    }

    /// Makes the chunks of patients hold about `values` floats instead of [`CHUNK_VALUES`].
    #[cfg(test)]
    pub(crate) fn limit_chunks(&mut self, values: usize) {
        self.private_mut().expect("privacy is on").chunk_values = values;
    }

    /// The id of the private session file this run resumed, if it did (see
    /// [`SessionPrivacy::id`]).
    pub fn resumed_session(&self) -> Option<&str> {
        self.private.as_ref().and_then(|p| p.resumed_from.as_deref()).or_else(|| self.private_matching().and_then(|p| p.resumed_from.as_deref()))
    }

    /// The count of patients the last private round left out, taken (once).
    pub(super) fn take_dropped(&mut self) -> Option<Tensor<B, 1>> {
        self.private.as_mut().and_then(|p| p.dropped.take())
    }

    fn private_mut(&mut self) -> Result<&mut Private<B>> {
        self.private.as_mut().ok_or_else(|| Error::Config("privacy is off in this run".into()))
    }

    /// One private hyper-gradient (see the module documentation), all its networks computed
    /// here. Its loss is the mean outer loss of the sampled images over the networks, for display.
    pub(super) fn private_hypergradient(&mut self) -> MetaGradient<B> {
        self.begin_round(1).expect("privacy is on");
        self.finish_round_alone().expect("a round just begun")
    }

    /// Computes the round begun from here on in this distiller alone, whatever steps were taken
    /// (a helper failed): the same networks, patients and noise, so the same hyper-gradient,
    /// bit for bit, as had the helpers finished it.
    pub fn finish_round_alone(&mut self) -> Result<MetaGradient<B>> {
        let private = self.private_mut()?;
        let round = private.round.take().ok_or_else(|| out_of_order("no iteration was begun"))?;
        private.round = Some(if round.workers > 1 { round.alone() } else { round });
        while self.round_mut()?.done < self.round_mut()?.chunks.len() {
            if self.round_mut()?.norms.is_none() {
                self.round_norms()?;
            }
            self.round_weights(Vec::new())?;
        }
        self.round_noise()?;
        if self.round_mut()?.grads.is_none() {
            self.round_gradients()?;
        }
        self.round_result(Vec::new())
    }

    /// Starts a private iteration shared among `workers` workers (a round left unfinished is
    /// dropped: nothing of it was released): draws its networks and samples its patients. The
    /// plan is for the helpers.
    pub fn begin_round(&mut self, workers: usize) -> Result<PrivatePlan<B>> {
        let workers = workers.max(1);
        let inits: Vec<Params<B>> = (0..self.networks_per_iteration()).map(|_| self.sample_init()).collect();
        let values = self.private_mut()?.chunk_values;
        let chunk = chunk_images(&self.net, inits.len(), values);
        let private = self.private_mut()?;
        private.round = None;
        let chunks = private.sample(chunk);
        let scale = 1.0 / (private.plan.sample_rate * private.plan.patients as f64 * inits.len() as f64);
        let grid = Grid::of(private.plan.noise_multiplier, private.plan.clip, inits.len() * self.net.weights());
        let step = grid.map_or(0.0, |g| g.step);
        let round = Round { workers, chunks: chunks.clone(), scale, grid, inits: inits.clone(), share: None, done: 0, norms: None, loss: Tensor::zeros([1], &self.device), images: 0, dropped: Tensor::zeros([1], &self.device), noise: None, grads: None };
        self.private_mut()?.round = Some(round);
        Ok(PrivatePlan { inits, chunks, scale, step })
    }

    /// Unrolls this distiller's networks of `round`, unless they are.
    fn unroll_own(&self, round: &mut Round<B>) {
        if round.share.is_none() {
            round.share = Some(self.share(&round.own(&round.inits).cloned().collect::<Vec<_>>()));
        }
    }

    fn round_mut(&mut self) -> Result<&mut Round<B>> {
        self.private_mut()?.round.as_mut().ok_or_else(|| out_of_order("no iteration was begun"))
    }

    /// This distiller's norms of the round's next chunk.
    pub fn round_norms(&mut self) -> Result<()> {
        let mut round = self.private_mut()?.round.take().ok_or_else(|| out_of_order("no iteration was begun"))?;
        let result = if round.done < round.chunks.len() && round.norms.is_none() {
            self.unroll_own(&mut round);
            Ok(self.share_norms(round.share.as_mut().expect("unrolled"), &round.chunks[round.done]))
        } else {
            Err(out_of_order("norms of no chunk"))
        };
        let ok = result.map(|n| round.norms = Some(n));
        self.private_mut()?.round = Some(round);
        ok
    }

    /// The clipping weight of each patient of the round's chunk, `[patients]`: from the squared
    /// norms of every network, this distiller's and `others'` (each helper's, helper after
    /// helper, its networks in their order), added up in the networks' order. Forms this
    /// distiller's weighted sums too.
    pub fn round_weights(&mut self, others: Vec<ChunkNorms<B>>) -> Result<Tensor<B, 1>> {
        let clip = self.private_mut()?.plan.clip;
        let round = self.round_mut()?;
        let own = round.norms.as_ref().ok_or_else(|| out_of_order("weights before norms"))?;
        if others.len() != round.workers - 1 {
            return Err(Error::Worker(format!("norms from {} helpers where {} were expected", others.len(), round.workers - 1)));
        }
        // Every network's norms, in the networks' order, checked before anything is added up.
        let patients = round.chunks[round.done].patients();
        let by_worker: Vec<&ChunkNorms<B>> = std::iter::once(own).chain(&others).collect();
        let mut each = Vec::with_capacity(round.inits.len());
        for j in 0..round.inits.len() {
            let (w, k) = (j % round.workers, j / round.workers);
            let (Some(s), Some(l)) = (by_worker[w].sq.get(k), by_worker[w].loss.get(k)) else {
                return Err(Error::Worker(format!("worker {w} sent no norms for network {j}")));
            };
            if s.dims() != [patients] || l.dims() != [1] {
                return Err(Error::Worker(format!("worker {w} sent norms of {:?} patients for network {j}, where the chunk has {patients}", s.dims())));
            }
            each.push((s.clone(), l.clone()));
        }
        round.norms = None;
        let mut sq: Option<Tensor<B, 1>> = None;
        for (s, l) in each {
            sq = Some(match sq { Some(t) => t + s, None => s });
            round.loss = round.loss.clone() + l;
        }
        // A patient whose gradient is not finite somewhere is left out exactly: weight 0 here,
        // its entries read as 0 in the weighted sums (`PatientGrads::weighted`). Counted for a
        // local notice only.
        let sq = sq.expect("a network");
        let bad = sq.clone().is_finite().bool_not();
        round.dropped = round.dropped.clone() + bad.clone().float().sum();
        let w = sq.sqrt().recip().mul_scalar(clip).clamp_max(1.0).mask_fill(bad, 0.0);
        round.images += round.chunks[round.done].batch.len();
        round.done += 1;
        round.share.as_mut().ok_or_else(|| out_of_order("weights after the gradients"))?.add(w.clone());
        Ok(w)
    }

    /// Draws the round's noise once: for every parameter of every network, network after
    /// network, discrete Gaussian noise in steps of the round's grid ([`Grid`], whose σ_g is at
    /// least σ times the rounded sum's sensitivity); zeros without noise (σ = 0, even with
    /// C = ∞). Returns all of it (each network's flat over its parameters), for the helpers, and
    /// the same again if called again.
    pub fn round_noise(&mut self) -> Result<Vec<Vec<f32>>> {
        let dims = self.net.weights();
        let private = self.private_mut()?;
        let round = private.round.as_mut().ok_or_else(|| out_of_order("no iteration was begun"))?;
        if round.done < round.chunks.len() {
            return Err(out_of_order("noise before every chunk's weights"));
        }
        if round.noise.is_none() {
            let grid = round.grid;
            round.noise = Some((0..round.inits.len()).map(|_| grid.map_or_else(|| vec![0.0; dims], |g| private.rng.grid_noise(dims, &g))).collect());
        }
        Ok(round.noise.clone().expect("drawn"))
    }

    /// This distiller's networks' part of the round's hyper-gradient.
    pub fn round_gradients(&mut self) -> Result<()> {
        let mut round = self.private_mut()?.round.take().ok_or_else(|| out_of_order("no iteration was begun"))?;
        let result = match (&round.noise, round.grads.is_none()) {
            (Some(noise), true) => {
                let noise: Vec<Vec<f32>> = round.own(noise).cloned().collect();
                self.unroll_own(&mut round);
                let step = round.grid.map_or(0.0, |g| g.step);
                Ok(self.share_gradients(round.share.take().expect("unrolled"), &noise, round.scale, step))
            }
            _ => Err(out_of_order("gradients before the noise, or twice")),
        };
        let ok = result.map(|g| round.grads = Some(g));
        self.private_mut()?.round = Some(round);
        ok
    }

    /// Ends the round: its hyper-gradient, the sum of every network's part, this distiller's and
    /// `others'` (each helper's, helper after helper), in the networks' order; its loss is the
    /// sampled images' mean loss over the networks.
    pub fn round_result(&mut self, others: Vec<Vec<MetaGradient<B>>>) -> Result<MetaGradient<B>> {
        let round = self.private_mut()?.round.take().ok_or_else(|| out_of_order("no iteration was begun"))?;
        let own = round.grads.ok_or_else(|| out_of_order("the result before the gradients"))?;
        if others.len() != round.workers - 1 {
            return Err(Error::Worker(format!("gradients from {} helpers where {} were expected", others.len(), round.workers - 1)));
        }
        let mut by_worker: Vec<std::vec::IntoIter<MetaGradient<B>>> = std::iter::once(own).chain(others).map(Vec::into_iter).collect();
        let mut total: Option<MetaGradient<B>> = None;
        for j in 0..round.inits.len() {
            let w = j % round.workers;
            let g = by_worker[w].next().ok_or_else(|| Error::Worker(format!("worker {w} sent no gradient for network {j}")))?;
            total = Some(match total { Some(t) => t.plus(g), None => g });
        }
        let mut total = total.expect("a network");
        let per = round.images.max(1) as f64 * round.inits.len() as f64;
        total.loss = if round.images == 0 { round.loss } else { round.loss.div_scalar(per) };
        self.private_mut()?.dropped = Some(round.dropped);
        Ok(total)
    }

    /// A helper's part of another distiller's round: unrolls the networks `inits` from the
    /// distilled data as they are now (a share left unfinished is dropped).
    pub fn begin_share(&mut self, inits: &[Params<B>]) -> Result<()> {
        self.private_mut()?.share = None;
        let share = self.share(inits);
        self.private_mut()?.share = Some(share);
        Ok(())
    }

    fn helper_share(&mut self) -> Result<Share<B>> {
        self.private_mut()?.share.take().ok_or_else(|| out_of_order("the helper has no networks"))
    }

    /// A helper's norms of `chunk` (see [`Distiller::round_weights`]).
    pub fn helper_norms(&mut self, chunk: &Chunk) -> Result<ChunkNorms<B>> {
        chunk.check(self.train_len)?;
        let mut share = self.helper_share()?;
        let norms = if share.held.is_some() { Err(out_of_order("norms of a chunk before the last one's weights")) } else { Ok(self.share_norms(&mut share, chunk)) };
        self.private_mut()?.share = Some(share);
        norms
    }

    /// A helper's weighted sums of the chunk whose norms it gave, with the weights `w`.
    pub fn helper_weights(&mut self, w: Tensor<B, 1>) -> Result<()> {
        let share = self.private_mut()?.share.as_mut().ok_or_else(|| out_of_order("the helper has no networks"))?;
        match &share.held {
            None => return Err(out_of_order("weights before norms")),
            Some((patients, _)) if w.dims() != [*patients] => {
                return Err(Error::Worker(format!("{:?} weights for a chunk of {patients} patients", w.dims())));
            }
            Some(_) => share.add(w),
        }
        Ok(())
    }

    /// A helper's networks' part of the hyper-gradient, given their noise (in steps of the
    /// grid), the factor 1/(qNK) and the grid's step (0 without noise).
    pub fn helper_gradients(&mut self, noise: &[Vec<f32>], scale: f64, step: f64) -> Result<Vec<MetaGradient<B>>> {
        let dims = self.net.weights();
        let share = self.helper_share()?;
        if share.held.is_some() {
            return Err(out_of_order("gradients before the last chunk's weights"));
        }
        if noise.len() != share.unrolled.len() || noise.iter().any(|z| z.len() != dims) {
            return Err(Error::Worker(format!("noise for {} networks where the helper has {} of {dims} weights each", noise.len(), share.unrolled.len())));
        }
        Ok(self.share_gradients(share, noise, scale, step))
    }

    /// `inits` unrolled on the distilled data.
    fn share(&self, inits: &[Params<B>]) -> Share<B> {
        let unrolled: Vec<Unrolled<B>> = inits.iter().map(|init| self.unroll(init)).collect();
        let thetas: Vec<Params<B>> = unrolled.iter().map(|u| u.params.iter().map(|p| p.clone().inner()).collect()).collect();
        let sums = thetas.iter().map(|t| t.iter().map(|p| p.zeros_like()).collect()).collect();
        Share { unrolled, thetas, sums, held: None }
    }

    /// Each patient's gradient of `chunk` at each of the share's final weights (detached),
    /// kept for [`Share::add`]; their squared norms and losses.
    fn share_norms(&self, share: &mut Share<B>, chunk: &Chunk) -> ChunkNorms<B> {
        let (x, y) = self.real_batch(&chunk.batch);
        let grads: Vec<PatientGrads<B>> = share.thetas.iter().map(|theta| patient_grads(&self.net, theta, x.clone(), y.clone(), &chunk.bounds)).collect();
        let norms = ChunkNorms { sq: grads.iter().map(PatientGrads::total_sq_norms).collect(), loss: grads.iter().map(|g| g.loss_sum.clone()).collect() };
        share.held = Some((chunk.patients(), grads));
        norms
    }

    /// Each network's part: v = its clipped sum released on the grid of `step` with its `noise`
    /// ([`grid_release`]), and the exact gradient of the surrogate `scale·⟨v, θ_T⟩` with respect
    /// to the learnable tensors.
    fn share_gradients(&self, share: Share<B>, noise: &[Vec<f32>], scale: f64, step: f64) -> Vec<MetaGradient<B>> {
        share
            .unrolled
            .iter()
            .zip(share.sums)
            .zip(noise)
            .map(|((u, sum), noise)| {
                let mut at = 0;
                let surrogate = u
                    .params
                    .iter()
                    .zip(sum)
                    .map(|(theta, clipped)| {
                        let n = theta.dims()[0];
                        let z = Tensor::<B, 1>::from_data(TensorData::new(noise[at..at + n].to_vec(), [n]), &self.device);
                        at += n;
                        (theta.clone() * Tensor::<A<B>, 1>::from_inner(grid_release(clipped, z, step))).sum()
                    })
                    .reduce(|a, b| a + b)
                    .expect("parameters");
                self.gradient_of(u, surrogate.mul_scalar(scale))
            })
            .collect()
    }
}

impl<B: Backend> Share<B> {
    /// Adds Σ_p w_p g_p of the held chunk to each network's sums.
    fn add(&mut self, w: Tensor<B, 1>) {
        let (_, held) = self.held.take().expect("a chunk's gradients");
        for (sum, g) in self.sums.iter_mut().zip(&held) {
            for (s, part) in sum.iter_mut().zip(g.weighted(w.clone())) {
                *s = s.clone() + part;
            }
        }
    }
}
