//! Distribution matching's private form, per patient (NDPDC: Zheng & Li 2023; Dosser's cache:
//! the noisy targets are released a fixed number of times once, then the images are optimised
//! against them for free).
//!
//! A release: a fresh random embedding network (from the public, seeded stream); every training
//! patient sampled with rate q from the secret stream (Poisson sampling); each sampled
//! patient's vector holds, per class, the sum of its images' embeddings (each normalised to
//! unit norm) and its image count, each image's part scaled to norm 1, concatenated over the
//! classes and clipped jointly to C; the sum over the patients, rounded to a grid, plus discrete
//! Gaussian noise of σC (`privacy::noise`). A class's target is its noisy sum over its noisy
//! count (at least one image): no exact count, no other statistic of the members, reaches the
//! images. After the last release the distiller drops the members' pixels
//! ([`super::Distiller::members_dropped`]) and never reads a member again.
//!
//! A session file carries the releases drawn so far (they are the mechanism's noisy outputs)
//! and where the public stream stood for each one's network: a resume after the last release
//! needs no member; one during the draws draws the rest with fresh secret randomness.

use burn_tensor::{backend::Backend, Tensor, TensorData};

use super::matching::{Embedder, EmbedderParams};
use crate::augment::{self, Transform};
use super::private::{members, sample_chunks, saved_plan, Chunk};
use crate::checkpoint::{HostTensor, SessionPrivacy};
use crate::config::Config;
use crate::data::{Dataset, Normalization};
use crate::loss::one_hot;
use crate::privacy::noise::{grid_release, Grid, SecretRng};
use crate::privacy::PrivacyPlan;
use crate::train::indices;

/// Floats a chunk's per-image vectors may take at most, roughly.
const CHUNK_VALUES: usize = 4 << 20;

/// One release: the network it was drawn under and its noisy sums `[classes, d + 1]` (per class
/// the scaled embedding sum, then the scaled count).
pub struct Release<B: Backend> {
    /// The release's random embedding network.
    pub params: EmbedderParams<B>,
    /// Where the public training stream stood when `params` were drawn from it.
    pub stream: u128,
    /// With DSA, the one transform every image of the release took (drawn after `params`).
    pub aug: Option<Transform>,
    /// The noisy released vector, `[classes, d + 1]`.
    pub noisy: Tensor<B, 2>,
}

impl<B: Backend> Release<B> {
    /// Each class's target: its noisy embedding sum over its noisy count, the count taken as at
    /// least one image (post-processing of the release).
    pub fn targets(&self) -> Vec<Tensor<B, 1>> {
        let [classes, cols] = self.noisy.dims();
        let d = cols - 1;
        let sums = self.noisy.clone().narrow(1, 0, d);
        let counts = self.noisy.clone().narrow(1, d, 1).clamp_min(IMAGE_PART);
        let means = sums / counts;
        (0..classes).map(|c| means.clone().narrow(0, c, 1).reshape([d])).collect()
    }
}

/// Each image's part of a patient's vector is scaled to norm 1: its unit embedding and its
/// count of one each times 1/√2.
const IMAGE_PART: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// A private matching run's plan, its patients, its secret randomness and its releases so far.
pub(super) struct PrivateMatching<B: Backend> {
    pub(super) plan: PrivacyPlan,
    /// Each training patient's images (indices into the training split), in patient-id order;
    /// emptied once the releases are drawn.
    patients: Vec<Vec<usize>>,
    rng: SecretRng,
    pub(super) releases: Vec<Release<B>>,
    /// The values of the first releases, read back to the host by an earlier session save or
    /// restored from a session file: a release never changes, so each save reads only the new
    /// ones from the device ([`PrivateMatching::releases_host`]).
    host: std::sync::Mutex<Vec<f32>>,
    /// This run segment's random id (a session file saved from it carries it).
    segment: String,
    /// The id of the session file this run resumed, if it did.
    pub(super) resumed_from: Option<String>,
}

impl<B: Backend> PrivateMatching<B> {
    /// Calibrates the plan of `config` for `train`'s patients, normalised with `norm` (the
    /// public constants only).
    pub(super) fn new(config: &Config, train: &Dataset, norm: Normalization) -> crate::Result<Self> {
        let patients = members(train, norm)?;
        let plan = PrivacyPlan::of(config, patients.len(), train.len())?.ok_or_else(|| crate::Error::Config("privacy is off in this configuration".into()))?;
        let mut rng = SecretRng::from_os()?;
        let segment = rng.hex_id();
        Ok(Self { plan, patients, rng, releases: Vec::new(), host: Default::default(), segment, resumed_from: None })
    }

    /// What a session file saved after `iteration` iterations carries besides the releases'
    /// tensor ([`PrivateMatching::releases_host`]).
    pub(super) fn session_record(&self, iteration: usize) -> SessionPrivacy {
        SessionPrivacy {
            id: self.segment.clone(),
            epsilon_spent: self.plan.spent_by(iteration),
            plan: self.plan.clone(),
            releases: self.releases.iter().map(|r| r.stream.to_string()).collect(),
        }
    }

    /// The releases so far, `[releases, classes, d + 1]`, on the host (`None` before the first):
    /// those not read back by an earlier call are read from the device now.
    pub(super) async fn releases_host(&self) -> crate::Result<Option<HostTensor>> {
        let Some(first) = self.releases.first() else { return Ok(None) };
        let [classes, cols] = first.noisy.dims();
        let per = classes * cols;
        let known = self.host.lock().expect("the host cache").len() / per;
        if known < self.releases.len() {
            let new = Tensor::cat(self.releases[known..].iter().map(|r| r.noisy.clone().reshape([1, classes, cols])).collect(), 0);
            let values = super::read_f32(new.reshape([-1])).await?;
            let mut host = self.host.lock().expect("the host cache");
            // Another save may have read them meanwhile: keep one copy.
            host.truncate(known * per);
            host.extend(values);
        }
        let values = self.host.lock().expect("the host cache")[..self.releases.len() * per].to_vec();
        Ok(Some(HostTensor { shape: vec![self.releases.len(), classes, cols], values }))
    }

    /// Continues the releases a session file saved after `iteration` iterations: the same plan
    /// (see [`saved_plan`]), its `releases` (`[k, classes, d + 1]`, k the releases among those
    /// iterations) each under the network the public stream `stream` gave at its saved
    /// position. The remaining releases are drawn with this run's own secret randomness; after
    /// the last one the patients are forgotten.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resume(&mut self, saved: Option<&SessionPrivacy>, releases: Option<&HostTensor>, iteration: usize, e: &Embedder, config: &Config, classes: usize, stream: &rand_chacha::ChaCha8Rng, device: &B::Device) -> crate::Result<()> {
        let size = config.image_size;
        let saved = saved_plan(&self.plan, saved)?;
        let bad = |why: &str| crate::Error::Session(format!("the private session's releases do not fit: {why}"));
        let k = self.plan.releases_in(iteration);
        if saved.releases.len() != k {
            return Err(bad(&format!("{} saved after {iteration} iterations, where {k} were drawn", saved.releases.len())));
        }
        let cols = e.dims(size) + 1;
        let mut restored = Vec::with_capacity(k);
        if k > 0 {
            let r = releases.ok_or_else(|| bad("the file has none"))?;
            if r.shape != [k, classes, cols] || r.values.len() != k * classes * cols {
                return Err(bad(&format!("their shape is {:?}, not [{k}, {classes}, {cols}]", r.shape)));
            }
            for (j, pos) in saved.releases.iter().enumerate() {
                let pos: u128 = pos.parse().map_err(|_| bad("a bad random-stream position"))?;
                let mut at = stream.clone();
                at.set_word_pos(pos);
                let values = r.values[j * classes * cols..(j + 1) * classes * cols].to_vec();
                let params = e.init::<B>(&mut at, device);
                let aug = release_transform(config, &mut at);
                restored.push(Release { params, stream: pos, aug, noisy: Tensor::from_data(TensorData::new(values, [classes, cols]), device) });
            }
        }
        self.releases = restored;
        // Validated above when there are any.
        *self.host.lock().expect("the host cache") = match releases {
            Some(r) if k > 0 => r.values.clone(),
            _ => Vec::new(),
        };
        self.resumed_from = Some(saved.id.clone());
        if self.drawn() {
            self.patients = Vec::new();
        }
        Ok(())
    }

    /// Whether every release is drawn.
    pub(super) fn drawn(&self) -> bool {
        self.releases.len() >= self.plan.iterations
    }

    /// Replaces the plan and the secret randomness (tests: σ = 0, C = ∞, known noise).
    pub(super) fn override_plan(&mut self, plan: PrivacyPlan, rng: SecretRng) {
        self.plan = plan;
        self.rng = rng;
    }

    /// Draws the next release under `params` from the training images `train_x` with labels
    /// `labels`; forgets the patients after the last one.
    /// `stream` is where the public stream stood when `params` were drawn (a session file keeps
    /// it).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn draw(&mut self, e: &Embedder, params: EmbedderParams<B>, aug: Option<Transform>, stream: u128, train_x: &Tensor<B, 4>, labels: &[usize], classes: usize) {
        let cols = classes * (e.dims(train_x.dims()[2]) + 1);
        let chunk = (CHUNK_VALUES / cols).clamp(1, 1024);
        let chunks = sample_chunks(&self.patients, self.plan.sample_rate, &mut self.rng, chunk);
        let device = train_x.device();
        let mut sum = Tensor::<B, 1>::zeros([cols], &device);
        for c in &chunks {
            sum = sum + clipped_sum(e, &params, aug, train_x, labels, classes, c, self.plan.clip);
        }
        let grid = Grid::of(self.plan.noise_multiplier, self.plan.clip, cols);
        let noise = grid.map_or_else(|| vec![0.0; cols], |g| self.rng.grid_noise(cols, &g));
        let noisy = grid_release(sum, Tensor::from_data(TensorData::new(noise, [cols]), &device), grid.map_or(0.0, |g| g.step));
        self.releases.push(Release { params, stream, aug, noisy: noisy.reshape([classes, cols / classes]) });
        if self.drawn() {
            self.patients = Vec::new();
        }
    }
}

/// With DSA, a release's one transform, for every image of it: drawn from the public stream
/// right after the release's network (a run and its resume draw both in that order).
pub(super) fn release_transform(config: &Config, stream: &mut rand_chacha::ChaCha8Rng) -> Option<Transform> {
    config.dsa.then(|| augment::draw(stream, 1, config.image_size)[0])
}

/// The sum over a chunk's patients of each patient's vector clipped to `clip` (a patient whose
/// vector is not finite counts for nothing), `[classes · (d + 1)]`.
#[allow(clippy::too_many_arguments)]
pub(super) fn clipped_sum<B: Backend>(e: &Embedder, params: &EmbedderParams<B>, aug: Option<Transform>, train_x: &Tensor<B, 4>, labels: &[usize], classes: usize, chunk: &Chunk, clip: f64) -> Tensor<B, 1> {
    let vectors = patient_vectors(e, params, aug, train_x, labels, classes, chunk);
    let dims = vectors.dims();
    let norms = vectors.clone().powi_scalar(2).sum_dim(1).sqrt();
    let bad = norms.clone().is_finite().bool_not();
    let w = norms.recip().mul_scalar(clip).clamp_max(1.0).mask_fill(bad.clone(), 0.0);
    let vectors = vectors.mask_fill(bad.expand(dims), 0.0);
    (vectors * w).sum_dim(0).reshape([dims[1]])
}

/// Each patient's vector, unclipped: `[patients, classes · (d + 1)]`, per class the sum of its
/// images' unit embeddings (each image transformed by `aug` first, with DSA) and its image
/// count, each image's part scaled by 1/√2.
pub(super) fn patient_vectors<B: Backend>(e: &Embedder, params: &EmbedderParams<B>, aug: Option<Transform>, train_x: &Tensor<B, 4>, labels: &[usize], classes: usize, chunk: &Chunk) -> Tensor<B, 2> {
    let device = train_x.device();
    let n = chunk.batch.len();
    let mut x = train_x.clone().select(0, indices::<B>(&chunk.batch, &device));
    if let Some(t) = aug {
        x = augment::apply(x, &[t]);
    }
    let emb = e.embed_unit(params, x);
    let d = emb.dims()[1];
    let part = Tensor::cat(vec![emb, Tensor::ones([n, 1], &device)], 1).mul_scalar(IMAGE_PART);
    let of_image: Vec<usize> = chunk.batch.iter().map(|&i| labels[i]).collect();
    let y = one_hot::<B>(&of_image, classes, &device);
    let rows = (y.reshape([n, classes, 1]) * part.reshape([n, 1, d + 1])).reshape([n, classes * (d + 1)]);
    let p = chunk.patients();
    let mut member = vec![0.0f32; p * n];
    for (q, b) in chunk.bounds.windows(2).enumerate() {
        member[q * n + b[0]..q * n + b[1]].iter_mut().for_each(|v| *v = 1.0);
    }
    Tensor::<B, 2>::from_data(TensorData::new(member, [p, n]), &device).matmul(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Objective, PrivacyConfig};
    use crate::distill::Distiller;
    use crate::privacy::PUBLIC_NORMALIZATION;
    use crate::rng::normal;
    use burn_ndarray::NdArray;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    type F = NdArray<f32>;

    /// 24 patients of 12 × 12 images: class 0 bright on the left, class 1 on the right, plus
    /// noise; patients 0–3 hold three images each (of both classes), the others one.
    fn data(seed: u64) -> Dataset {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = 32;
        let noise = normal(&mut rng, n * 144, 0.1);
        let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
        let pixels = (0..n * 144).map(|k| if (k % 12 < 6) == (labels[k / 144] == 0) { 0.8 } else { 0.2 } + noise[k]).collect();
        let mut d = Dataset::new(12, pixels, labels, vec!["left".into(), "right".into()]);
        for i in 0..12 {
            d.patients[i] = (i / 3) as u64;
        }
        for i in 12..n {
            d.patients[i] = (i - 8) as u64;
        }
        d
    }

    fn plan(sigma: f64, clip: f64, q: f64, patients: usize) -> PrivacyPlan {
        PrivacyPlan { target_epsilon: f64::INFINITY, delta: 1e-5, clip, sample_rate: q, noise_multiplier: sigma, iterations: 1, patients, unit: "patient", objective: Objective::Matching }
    }

    const E: Embedder = Embedder { width: 4, depth: 2 };

    /// The first release of `d` under the embedder of `seed`, with `plan` and the secret stream
    /// of `secret`: its raw vector and its targets.
    fn release(d: &Dataset, plan: PrivacyPlan, secret: u64) -> (Vec<f32>, Vec<Vec<f32>>) {
        let device = Default::default();
        let private = Config { objective: Objective::Matching, privacy: Some(PrivacyConfig::default()), ..Config::default() };
        let mut m = PrivateMatching::<F>::new(&private, d, PUBLIC_NORMALIZATION).unwrap();
        m.override_plan(plan, SecretRng::known(secret));
        let params = E.init::<F>(&mut ChaCha8Rng::seed_from_u64(7), &device);
        let all: Vec<usize> = (0..d.len()).collect();
        let x = d.tensors::<F>(&all, PUBLIC_NORMALIZATION, &device).0;
        m.draw(&E, params, None, 0, &x, &d.labels, 2);
        assert!(m.drawn() && m.patients.is_empty(), "the patients are forgotten after the last release");
        let r = &m.releases[0];
        let targets = r.targets().into_iter().map(|t| t.into_data().to_vec().unwrap()).collect();
        (r.noisy.clone().into_data().to_vec().unwrap(), targets)
    }

    fn norm(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn without_noise_or_clipping_every_patient_sampled_the_targets_are_the_class_means() {
        let d = data(1);
        let (_, targets) = release(&d, plan(0.0, f64::INFINITY, 1.0, 12), 3);
        let device = Default::default();
        let params = E.init::<F>(&mut ChaCha8Rng::seed_from_u64(7), &device);
        for (c, idx) in d.indices_by_class().iter().enumerate() {
            let x = d.tensors::<F>(idx, PUBLIC_NORMALIZATION, &device).0;
            let want: Vec<f32> = E.embed_unit(&params, x).mean_dim(0).reshape([E.dims(12)]).into_data().to_vec().unwrap();
            let err = norm(&targets[c], &want);
            assert!(err < 1e-5, "class {c}: the target is {err} from the class's mean unit embedding");
        }
    }

    #[test]
    fn an_enormous_patient_moves_the_release_by_at_most_c_jointly_over_the_classes() {
        let clip = 1.0;
        let d = data(2);
        // Patient 0 (images 0–2, both classes) with 400 times its pixels, and its vector unclipped.
        let mut big = d.clone();
        big.pixels[..3 * 144].iter_mut().for_each(|p| *p *= 400.0);
        let device = Default::default();
        let params = E.init::<F>(&mut ChaCha8Rng::seed_from_u64(7), &device);
        let all: Vec<usize> = (0..d.len()).collect();
        let x = big.tensors::<F>(&all, PUBLIC_NORMALIZATION, &device).0;
        let alone = Chunk { batch: vec![0, 1, 2], bounds: vec![0, 3] };
        let v: Vec<f32> = patient_vectors(&E, &params, None, &x, &big.labels, 2, &alone).into_data().to_vec().unwrap();
        let unclipped = norm(&v, &vec![0.0; v.len()]);
        assert!(unclipped > 2.0 * clip, "the patient's vector is {unclipped}: clipping must act");
        // Without noise, every patient sampled: with and without the patient differ by C.
        let mut without = d.clone();
        without.pixels.drain(..3 * 144);
        without.labels.drain(..3);
        without.patients.drain(..3);
        let (with_big, _) = release(&big, plan(0.0, clip, 1.0, 21), 3);
        let (without_it, _) = release(&without, plan(0.0, clip, 1.0, 21), 3);
        let moved = norm(&with_big, &without_it);
        assert!((moved - clip).abs() < 1e-4, "adding the patient moved the release by {moved}, not C = {clip}");
    }

    #[test]
    fn the_noise_and_the_divisor_do_not_depend_on_the_members() {
        // Two folders of the same patients, one patient's pixels replaced, the same secret
        // stream, half the patients sampled: the same patients are sampled and the same noise is
        // drawn, so the releases differ by the clipped sums' difference alone; the targets read
        // the release only (its noisy counts divide).
        let d = data(3);
        let mut other = d.clone();
        other.pixels[13 * 144..14 * 144].iter_mut().for_each(|p| *p = 1.0 - *p);
        let noisy = plan(0.8, 1.0, 0.5, 24);
        let quiet = plan(0.0, 1.0, 0.5, 24);
        let (a, ta) = release(&d, noisy.clone(), 9);
        let (b, _) = release(&other, noisy, 9);
        let (a0, _) = release(&d, quiet.clone(), 9);
        let (b0, _) = release(&other, quiet, 9);
        let grid = Grid::of(0.8, 1.0, a.len()).unwrap();
        assert!(norm(&a, &a0) > 100.0 * grid.step, "noise was added");
        for k in 0..a.len() {
            let (noisy_diff, clean_diff) = (f64::from(a[k] - b[k]), f64::from(a0[k] - b0[k]));
            assert!((noisy_diff - clean_diff).abs() <= 2.0 * grid.step + 1e-6, "coordinate {k}: {noisy_diff} against {clean_diff}");
        }
        let d1 = ta[0].len();
        let count = f64::from(a[d1]).max(IMAGE_PART);
        assert!((f64::from(ta[0][0]) - f64::from(a[0]) / count).abs() < 1e-5, "the divisor is the released count");
    }

    #[test]
    fn a_private_matching_run_draws_its_releases_then_forgets_the_members() {
        let d = data(4);
        let privacy = PrivacyConfig { epsilon: 8.0, draws: 5, ..Default::default() };
        let config = Config { objective: Objective::Matching, image_size: 12, embed_width: 4, embed_depth: 2, steps: 2, max_iterations: Some(10), holdout_fraction: 0.0, privacy: Some(privacy), ..Config::default() };
        let device = Default::default();
        let mut dist = Distiller::<F>::new(config, &d, PUBLIC_NORMALIZATION, &device).unwrap();
        let plan = dist.privacy().unwrap().clone();
        assert_eq!((plan.iterations, plan.clip, plan.patients, dist.total_iterations()), (5, 1.0, 24, 15), "5 releases at C = 1 (one image) over 24 patients, then 10 iterations");
        let start: Vec<f32> = dist.state().images.clone().into_data().to_vec().unwrap();
        for i in 1..=15 {
            let r = pollster::block_on(dist.step()).unwrap();
            assert_eq!(r.loss.is_some(), i > 5, "iteration {i}: no loss while the members are read");
            assert_eq!(dist.members_dropped(), i >= 5, "iteration {i}");
            let now: Vec<f32> = dist.state().images.clone().into_data().to_vec().unwrap();
            assert_eq!(now == start, i <= 5, "iteration {i}: the images move only once the releases are drawn");
        }
        let record = plan.record(15);
        assert_eq!((record.iterations, record.planned_iterations), (5, 5));
        assert!((record.epsilon - plan.spent(5)).abs() < 1e-12 && record.epsilon <= 8.0 + 1e-9);
    }

    fn images(d: &Distiller<F>) -> Vec<f32> {
        d.state().images.clone().into_data().to_vec().unwrap()
    }

    fn steps(d: &mut Distiller<F>, n: usize) {
        (0..n).for_each(|_| drop(pollster::block_on(d.step()).unwrap()));
    }

    fn saved(d: &Distiller<F>) -> crate::checkpoint::Checkpoint {
        let bytes = pollster::block_on(d.checkpoint()).unwrap().to_bytes().unwrap();
        crate::checkpoint::Checkpoint::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn a_private_matching_session_carries_its_releases_and_resumes_without_the_members() {
        session_resumes(false);
    }

    #[test]
    fn a_private_matching_session_with_dsa_resumes_each_release_under_its_transform() {
        session_resumes(true);
    }

    fn session_resumes(dsa: bool) {
        let d = data(5);
        let privacy = PrivacyConfig { epsilon: 8.0, draws: 5, ..Default::default() };
        let config = Config { objective: Objective::Matching, image_size: 12, embed_width: 4, embed_depth: 2, steps: 2, max_iterations: Some(10), holdout_fraction: 0.0, privacy: Some(privacy), dsa, ..Config::default() };
        let device = Default::default();
        let new = || Distiller::<F>::new(config.clone(), &d, PUBLIC_NORMALIZATION, &device).unwrap();
        let mut a = new();
        let plan = a.privacy().unwrap().clone();
        steps(&mut a, 3);
        let mid = saved(&a);
        steps(&mut a, 4);
        let after = saved(&a);
        steps(&mut a, 8);
        let (p, r) = (after.meta.privacy.as_ref().unwrap(), after.tensors.releases.as_ref().unwrap());
        assert_eq!((p.releases.len(), r.shape.clone()), (5, vec![5, 2, E.dims(12) + 1]));
        assert!((p.epsilon_spent - plan.spent(5)).abs() < 1e-12, "7 iterations spend the 5 releases' ε only");
        assert_eq!(mid.meta.privacy.as_ref().unwrap().releases.len(), 3);
        // Saved twice: the second save read only releases 4 and 5 from the device, and its
        // tensor holds all five as they are there.
        let on_device = |d: &Distiller<F>, n: usize| (0..n).flat_map(|k| d.matching_release(k).unwrap()).collect::<Vec<f32>>();
        assert_eq!(r.values, on_device(&a, 5), "the saved releases are the run's");

        // Resumed after the draws: no member is held, and the run goes on exactly (each release
        // under its own network again).
        let mut b = new();
        b.restore(&after).unwrap();
        assert!(b.members_dropped(), "a resume after the last release drops the members at once");
        assert_eq!(b.resumed_session(), Some(p.id.as_str()));
        steps(&mut b, 8);
        assert_eq!(images(&b), images(&a), "the resumed run continues the saved one exactly");
        for k in 0..5 {
            assert_eq!(b.matching_release(k), a.matching_release(k), "release {k}");
        }

        // Resumed during the draws: the saved three are kept, the other two drawn afresh.
        let mut c = new();
        c.restore(&mid).unwrap();
        assert!(!c.members_dropped());
        for k in 0..3 {
            assert_eq!(c.matching_release(k), a.matching_release(k), "release {k}");
        }
        steps(&mut c, 2);
        assert!(c.members_dropped() && c.matching_release(4).is_some());
        let again = saved(&c);
        assert_eq!(again.tensors.releases.unwrap().values, on_device(&c, 5), "a resumed run saves the restored releases and its own");

        // Releases that do not fit the saved progress are refused, naming the cause.
        let mut bent = after.clone();
        bent.meta.privacy.as_mut().unwrap().releases.pop();
        let msg = new().restore(&bent).unwrap_err().to_string();
        assert!(msg.contains("releases do not fit"), "{msg}");
        let mut plain = after.clone();
        plain.meta.privacy = None;
        let msg = new().restore(&plain).unwrap_err().to_string();
        assert!(msg.contains("without privacy"), "{msg}");
    }
}
