//! The privacy audit: how much the distilled set reveals about the images it came from.
//!
//! Before distilling, each class of the training data is split into members (distilled from)
//! and a holdout (never used). The audit then compares the distilled images with both: the
//! nearest member and holdout image of each (L2 in normalised space and SSIM), the share of
//! distilled images nearer a member than a holdout image (one half when nothing leaks), a
//! near-copy flag calibrated on how close members are to each other, and a loss-based
//! membership attack on networks trained by the distilled program, next to the same attack on
//! networks trained on a random real subset of the same size. It also looks at the learned
//! labels. The report ([`Audit`]) holds distances and statistics only, never an image; the
//! indices of the nearest real images stay in memory for the page's local gallery.

pub mod mechanism;
mod render;
mod similarity;
mod stats;

pub use render::render_png;
pub use similarity::{l2, Gallery, Nearest, SsimImage};
pub use stats::{clopper_pearson, quantile, Interval, Roc};

use burn_tensor::{activation::log_softmax, backend::Backend, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{Config, LabelMode};
use crate::data::{Dataset, Normalization};
use crate::distill::Distilled;
use crate::error::{Error, Result};
use crate::eval::{distilled_program, random_subset_program};
use crate::net::{Network, Params};
use crate::rng::{permutation, rng, Stream};

/// Identifies the layout of `audit.json`.
pub const FORMAT: &str = "anondistill-audit/1";
/// The verdict when no test finds anything.
pub const NO_EVIDENCE: &str = "no evidence of leakage at this sample size";
/// The verdict when a test finds something.
pub const LEAKAGE: &str = "leakage detected";
/// The verdict when no test finds anything but some class has fewer than
/// [`MIN_HOLDOUT_PER_CLASS`] holdout images: the tests could not have found much.
pub const TOO_FEW: &str = "too few images to judge";
/// Holdout images each class needs before "no evidence" may be said.
pub const MIN_HOLDOUT_PER_CLASS: usize = 20;

/// The audit's own settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditConfig {
    /// Members whose nearest other member (exact copies of it left out) calibrates the
    /// near-copy flag.
    pub calibration_images: usize,
    /// A distilled image is a near copy when it is closer to a member than this quantile of the
    /// member-to-member nearest-neighbour distances (and likewise for SSIM, from above).
    pub copy_quantile: f64,
    /// Members and holdout images scored by the membership attack, each side at most.
    pub max_scored: usize,
    /// Bootstrap resamples of the attack's intervals.
    pub resamples: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { calibration_images: 200, copy_quantile: 0.01, max_scored: 1000, resamples: 500 }
    }
}

/// What the audit found about one distilled image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageAudit {
    /// Index of the distilled image.
    pub image: usize,
    /// The class it was initialised for.
    pub class: String,
    /// L2 distance (normalised space) to the nearest member.
    pub member_l2: f64,
    /// L2 distance to the nearest holdout image.
    pub holdout_l2: f64,
    /// SSIM with the most similar member.
    pub member_ssim: f64,
    /// SSIM with the most similar holdout image.
    pub holdout_ssim: f64,
    /// Nearer (L2) a member than any holdout image, among equally many of each.
    pub closer_to_member: bool,
    /// Flagged as a near copy of a member.
    pub near_copy: bool,
    /// Entropy of the learned label, in bits (none when it has no positive entry).
    pub label_entropy_bits: Option<f64>,
    /// The class with the largest label entry.
    pub label_top_class: String,
    /// The largest label entry is not the image's own class.
    pub label_not_own_class: bool,
}

/// Where the nearest real images of one distilled image are, for the local gallery only.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    /// The nearest member, by L2 and by SSIM.
    pub member: Nearest,
    /// The nearest holdout image, by L2 and by SSIM.
    pub holdout: Nearest,
}

/// The share of distilled images nearer a member than a holdout image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShareTest {
    /// Distilled images compared.
    pub images: usize,
    /// Members and holdout images compared with (equally many, class by class).
    pub per_side: usize,
    /// Distilled images nearer a member.
    pub closer_to_member: usize,
    /// Their share with its exact 95% interval (0.5 expected when nothing leaks).
    pub share: Interval,
    /// One-sided binomial p-value of a share this high or higher when it is 0.5 (it treats the
    /// distilled images as independent, which they are not when several share a nearest image).
    pub p_value: f64,
    /// The real images that are the nearest of at least one distilled image, each counted once.
    pub distinct_nearest: usize,
    /// How many of those are members.
    pub distinct_nearest_members: usize,
    /// Their share with its exact 95% interval (0.5 expected when nothing leaks): the test the
    /// verdict uses, since distilled images that share a nearest image are one observation.
    pub distinct_share: Interval,
}

/// The near-copy threshold and what it was calibrated on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NearCopy {
    /// The quantile used.
    pub quantile: f64,
    /// Flag when the nearest member is at most this far (L2).
    pub l2_threshold: f64,
    /// Flag when the most similar member has at least this SSIM.
    pub ssim_threshold: f64,
    /// Distance of each calibration member to its nearest other member (L2).
    pub member_nn_l2: Vec<f64>,
    /// SSIM of each calibration member with its most similar other member.
    pub member_nn_ssim: Vec<f64>,
    /// The distilled images flagged.
    pub flagged: Vec<usize>,
}

/// A loss-based membership attack on one family of networks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attack {
    /// Area under the ROC curve (0.5: no better than chance).
    pub auc: Interval,
    /// True-positive rate at 1% false positives.
    pub tpr_at_1pct_fpr: Interval,
    /// True-positive rate at 0.1% false positives.
    pub tpr_at_0_1pct_fpr: Interval,
    /// The ROC curve, (false-positive rate, true-positive rate) points.
    pub roc: Vec<[f64; 2]>,
}

/// The membership attack on the distilled program's networks and on a random subset's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    /// Networks trained per family; an image's score is minus its mean loss over them.
    pub nets: usize,
    /// Members scored.
    pub members: usize,
    /// Holdout images scored.
    pub holdout: usize,
    /// Networks trained on the distilled set (its replay, or a matching set's ordinary loop).
    pub distilled: Attack,
    /// Networks trained on one random real subset of members of the same size.
    pub random_subset: Attack,
    /// The random subset's fixed learning rate.
    pub random_subset_lr: f64,
    /// What may be said comparing the two.
    pub comparison: String,
}

/// The whole audit, as `audit.json` holds it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`NO_EVIDENCE`] or [`LEAKAGE`].
    pub verdict: String,
    /// What led to a [`LEAKAGE`] verdict, one line each.
    pub reasons: Vec<String>,
    /// Members per class.
    pub members: Vec<usize>,
    /// Holdout images per class.
    pub holdout: Vec<usize>,
    /// One entry per distilled image.
    pub images: Vec<ImageAudit>,
    /// Nearer a member or a holdout image.
    pub share: ShareTest,
    /// The near-copy flag.
    pub near_copy: NearCopy,
    /// The membership attack.
    pub membership: Membership,
    /// Distilled images whose label's largest entry is another class.
    pub labels_not_own_class: Vec<usize>,
    /// How to read the report.
    pub notes: Vec<String>,
    /// Indices of the nearest real images (kept in memory, never written).
    #[serde(skip)]
    pub neighbours: Vec<Neighbours>,
}

fn images_of(ds: &Dataset) -> Vec<&[f32]> {
    (0..ds.len()).map(|i| ds.image(i)).collect()
}

/// Class by class, equally many members and holdout images (as many as the smaller side has,
/// scaled down so that each side has at most `max` in all).
fn paired_samples(members: &Dataset, holdout: &Dataset, max: usize, r: &mut ChaCha8Rng) -> (Vec<usize>, Vec<usize>) {
    let (mb, hb) = (members.indices_by_class(), holdout.indices_by_class());
    let total: usize = mb.iter().zip(&hb).map(|(m, h)| m.len().min(h.len())).sum();
    let scale = if total > max { max as f64 / total as f64 } else { 1.0 };
    let (mut ms, mut hs) = (Vec::new(), Vec::new());
    for (m, h) in mb.iter().zip(&hb) {
        let k = ((m.len().min(h.len()) as f64 * scale).floor() as usize).max(usize::from(!m.is_empty() && !h.is_empty()));
        let (pm, ph) = (permutation(r, m.len()), permutation(r, h.len()));
        ms.extend(pm[..k].iter().map(|&p| m[p]));
        hs.extend(ph[..k].iter().map(|&p| h[p]));
    }
    (ms, hs)
}

/// The distribution a learned label stands for: its softmax in softmax mode; in raw mode its
/// positive part, normalised (none when nothing is positive).
fn label_distribution(label: &[f32], mode: LabelMode) -> Option<Vec<f64>> {
    let v: Vec<f64> = match mode {
        LabelMode::Softmax => {
            let top = label.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
            label.iter().map(|&x| (x as f64 - top).exp()).collect()
        }
        LabelMode::Raw => label.iter().map(|&x| (x as f64).max(0.0)).collect(),
    };
    let sum: f64 = v.iter().sum();
    (sum > 0.0 && sum.is_finite()).then(|| v.iter().map(|x| x / sum).collect())
}

fn entropy_bits(p: &[f64]) -> f64 {
    0.0 - p.iter().filter(|&&x| x > 0.0).map(|&x| x * x.log2()).sum::<f64>()
}

/// Cross-entropy of each image of `x` (hard labels `labels`) under `params`, in chunks.
async fn example_losses<B: Backend>(net: &Network, params: &Params<B>, x: &Tensor<B, 4>, labels: &[usize]) -> Result<Vec<f64>> {
    let n = x.dims()[0];
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(512) {
        let len = 512.min(n - start);
        let logp = log_softmax(net.forward(params, x.clone().narrow(0, start, len)), 1);
        let data = logp.into_data_async().await.map_err(|e| Error::Backend(format!("{e:?}")))?;
        let values = data.to_vec::<f32>().map_err(|e| Error::Backend(format!("{e:?}")))?;
        let c = net.classes();
        out.extend((0..len).map(|i| -(values[i * c + labels[start + i]] as f64)));
    }
    Ok(out)
}

/// The attack statistics of one family of networks' mean losses; `family` names the networks
/// in the error when a loss is not finite (networks that the replay made diverge).
fn attack(family: &str, member_loss: &[f64], holdout_loss: &[f64], resamples: usize, r: &mut ChaCha8Rng) -> Result<Attack> {
    let roc = Roc::new(member_loss.iter().map(|l| -l).collect(), holdout_loss.iter().map(|l| -l).collect()).map_err(|e| {
        Error::Data(format!(
            "the membership attack cannot be computed on the networks trained by {family}: {e} (the replay diverged; the audit has no result)"
        ))
    })?;
    let (auc, tpr) = roc.with_intervals(&[0.01, 0.001], resamples, r);
    Ok(Attack { auc, tpr_at_1pct_fpr: tpr[0], tpr_at_0_1pct_fpr: tpr[1], roc: roc.curve(200) })
}

/// Everything the audit needs besides the distilled data.
pub struct AuditInputs<'a, B: Backend> {
    /// The run's configuration.
    pub config: &'a Config,
    /// The images distilled from.
    pub members: &'a Dataset,
    /// The images never used.
    pub holdout: &'a Dataset,
    /// The normalisation of the run.
    pub norm: Normalization,
    /// The fixed initial network, when the data were distilled for one.
    pub fixed_init: Option<&'a Params<B>>,
    /// The random subset's learning rate (the evaluation's choice).
    pub subset_lr: f64,
    /// Where the networks run.
    pub device: &'a B::Device,
}

/// The loss-based membership attack on networks trained by the distilled program and on
/// networks trained on one random real subset of members: an image's score is minus its mean
/// loss over the networks of a family.
async fn membership_attack<B: Backend>(
    d: &Distilled,
    inputs: &AuditInputs<'_, B>,
    member_sample: &[usize],
    holdout_sample: &[usize],
    settings: &AuditConfig,
    r: &mut ChaCha8Rng,
) -> Result<Membership> {
    let AuditInputs { config, members, holdout, norm, fixed_init, subset_lr, device } = *inputs;
    let net = Network::new(config, d.classes)?;
    let (mx, _) = members.tensors::<B>(member_sample, norm, device);
    let (hx, _) = holdout.tensors::<B>(holdout_sample, norm, device);
    let ml: Vec<usize> = member_sample.iter().map(|&i| members.labels[i]).collect();
    let hl: Vec<usize> = holdout_sample.iter().map(|&i| holdout.labels[i]).collect();
    let nets = if fixed_init.is_some() { 1 } else { config.eval_nets };
    let program = distilled_program::<B>(d, config, device);
    let subset = random_subset_program::<B>(members, config, norm, subset_lr, r, device);
    let mut losses = [vec![0.0; ml.len()], vec![0.0; hl.len()], vec![0.0; ml.len()], vec![0.0; hl.len()]];
    for _ in 0..nets {
        let init = fixed_init.cloned().unwrap_or_else(|| net.init(r, device));
        let trained = program.train(&net, init, r);
        let subset_init = net.init(r, device);
        let subset_trained = subset.train(&net, subset_init, r);
        let parts = [
            example_losses(&net, &trained, &mx, &ml).await?,
            example_losses(&net, &trained, &hx, &hl).await?,
            example_losses(&net, &subset_trained, &mx, &ml).await?,
            example_losses(&net, &subset_trained, &hx, &hl).await?,
        ];
        for (sum, part) in losses.iter_mut().zip(parts) {
            sum.iter_mut().zip(part).for_each(|(s, v)| *s += v / nets as f64);
        }
    }
    let distilled_attack = attack("the distilled program", &losses[0], &losses[1], settings.resamples, r)?;
    let subset_attack = attack("the random real subset", &losses[2], &losses[3], settings.resamples, r)?;
    let comparison = if distilled_attack.auc.below(&subset_attack.auc) {
        format!(
            "the distilled set protects membership better than a random real subset of the same size: attack AUC {:.3} [{:.3}, {:.3}] vs {:.3} [{:.3}, {:.3}], 95% intervals do not overlap",
            distilled_attack.auc.value, distilled_attack.auc.lo, distilled_attack.auc.hi, subset_attack.auc.value, subset_attack.auc.lo, subset_attack.auc.hi
        )
    } else {
        format!(
            "no claim: the attack's AUC intervals overlap (distilled {:.3} [{:.3}, {:.3}], random subset {:.3} [{:.3}, {:.3}])",
            distilled_attack.auc.value, distilled_attack.auc.lo, distilled_attack.auc.hi, subset_attack.auc.value, subset_attack.auc.lo, subset_attack.auc.hi
        )
    };

    Ok(Membership {
        nets,
        members: ml.len(),
        holdout: hl.len(),
        distilled: distilled_attack,
        random_subset: subset_attack,
        random_subset_lr: subset_lr,
        comparison,
    })
}

/// Audits `d` against the members and the holdout.
pub async fn audit<B: Backend>(d: &Distilled, inputs: AuditInputs<'_, B>, settings: &AuditConfig) -> Result<Audit> {
    let AuditInputs { config, members, holdout, norm, .. } = inputs;
    if holdout.is_empty() {
        return Err(Error::Config("the privacy audit needs a holdout: set holdout_fraction above 0".into()));
    }
    if members.len() < 2 {
        return Err(Error::Data("the privacy audit needs at least two member images".into()));
    }
    let mut r = rng(config.seed, Stream::Audit);
    let galleries = [members, holdout].map(|ds| Gallery::new(images_of(ds), d.size, |v| norm.normalise(v)));
    let samples = paired_samples(members, holdout, settings.max_scored, &mut r);
    let mut near_copy = calibrate(&galleries[0], settings, &mut r);
    let (images, neighbours, share) = compare_images(d, config.label_mode, norm, &members.classes, &galleries, &samples, &near_copy);
    near_copy.flagged = images.iter().filter(|a| a.near_copy).map(|a| a.image).collect();
    let membership = membership_attack(d, &inputs, &samples.0, &samples.1, settings, &mut r).await?;
    let reasons = reasons(&images, &near_copy, &share, &membership.distilled);
    let fewest_holdout = holdout.class_counts().into_iter().min().unwrap_or(0);
    let verdict = match (reasons.is_empty(), fewest_holdout < MIN_HOLDOUT_PER_CLASS) {
        (false, _) => LEAKAGE,
        (true, true) => TOO_FEW,
        (true, false) => NO_EVIDENCE,
    };
    Ok(Audit {
        format: FORMAT.into(),
        verdict: verdict.into(),
        reasons,
        members: members.class_counts(),
        holdout: holdout.class_counts(),
        labels_not_own_class: images.iter().filter(|a| a.label_not_own_class).map(|a| a.image).collect(),
        images,
        share,
        near_copy,
        membership,
        notes: notes(),
        neighbours,
    })
}

/// The near-copy thresholds, from how close members come to their nearest other member (exact
/// copies left out); `flagged` is filled in by the caller.
fn calibrate(members: &Gallery, settings: &AuditConfig, r: &mut ChaCha8Rng) -> NearCopy {
    let calib = permutation(r, members.len());
    let calib = &calib[..settings.calibration_images.min(members.len())];
    let nn: Vec<Nearest> = calib.iter().filter_map(|&k| members.nearest_other(k)).collect();
    let member_nn_l2: Vec<f64> = nn.iter().map(|n| n.l2).collect();
    let member_nn_ssim: Vec<f64> = nn.iter().map(|n| n.ssim).collect();
    // With no two distinct members to calibrate on, only exact copies are flagged.
    let (l2_threshold, ssim_threshold) = if nn.is_empty() {
        (0.0, 1.0)
    } else {
        (quantile(&member_nn_l2, settings.copy_quantile), quantile(&member_nn_ssim, 1.0 - settings.copy_quantile))
    };
    NearCopy { quantile: settings.copy_quantile, l2_threshold, ssim_threshold, member_nn_l2, member_nn_ssim, flagged: Vec::new() }
}

/// Each distilled image against the members and the holdout (`galleries`, in that order): its
/// nearest images, the near-copy flag, its label; and the share nearer a member among the
/// paired `samples`.
fn compare_images(
    d: &Distilled,
    mode: LabelMode,
    norm: Normalization,
    class_names: &[String],
    galleries: &[Gallery; 2],
    samples: &(Vec<usize>, Vec<usize>),
    near_copy: &NearCopy,
) -> (Vec<ImageAudit>, Vec<Neighbours>, ShareTest) {
    let size = d.size;
    let mut images = Vec::with_capacity(d.len());
    let mut neighbours = Vec::with_capacity(d.len());
    let mut nearest_real = std::collections::BTreeSet::new();
    for i in 0..d.len() {
        let values = &d.images[i * size * size..(i + 1) * size * size];
        let pixels = SsimImage::new(&values.iter().map(|&v| norm.pixel(v)).collect::<Vec<_>>(), size);
        let m = galleries[0].nearest(values, &pixels, None).expect("members exist");
        let h = galleries[1].nearest(values, &pixels, None).expect("a holdout exists");
        let nearest_in = |g: &Gallery, sample: &[usize]| {
            sample.iter().map(|&k| (g.l2_to(values, k), k)).fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a })
        };
        let (to_member, member_k) = nearest_in(&galleries[0], &samples.0);
        let (to_holdout, holdout_k) = nearest_in(&galleries[1], &samples.1);
        let closer_to_member = to_member < to_holdout;
        nearest_real.insert(if closer_to_member { (true, member_k) } else { (false, holdout_k) });
        let label = &d.labels[i * d.classes..(i + 1) * d.classes];
        let top = (0..d.classes).max_by(|&a, &b| label[a].total_cmp(&label[b])).unwrap_or(0);
        images.push(ImageAudit {
            image: i,
            class: class_names[d.classes_of[i]].clone(),
            member_l2: m.l2,
            holdout_l2: h.l2,
            member_ssim: m.ssim,
            holdout_ssim: h.ssim,
            closer_to_member,
            near_copy: m.l2 <= near_copy.l2_threshold || m.ssim >= near_copy.ssim_threshold,
            label_entropy_bits: label_distribution(label, mode).map(|p| entropy_bits(&p)),
            label_top_class: class_names[top].clone(),
            label_not_own_class: top != d.classes_of[i],
        });
        neighbours.push(Neighbours { member: m, holdout: h });
    }
    let closer = images.iter().filter(|a| a.closer_to_member).count();
    let distinct_members = nearest_real.iter().filter(|n| n.0).count();
    let share = ShareTest {
        images: images.len(),
        per_side: samples.0.len(),
        closer_to_member: closer,
        share: clopper_pearson(closer, images.len()),
        p_value: stats::binomial_upper_tail(closer, images.len(), 0.5),
        distinct_nearest: nearest_real.len(),
        distinct_nearest_members: distinct_members,
        distinct_share: clopper_pearson(distinct_members, nearest_real.len()),
    };
    (images, neighbours, share)
}

/// What the tests found, one line each (empty when nothing).
fn reasons(images: &[ImageAudit], near_copy: &NearCopy, share: &ShareTest, attack: &Attack) -> Vec<String> {
    let mut reasons = Vec::new();
    for a in images.iter().filter(|a| a.near_copy) {
        reasons.push(format!(
            "distilled image {} is a near copy of a member (L2 {:.3} vs threshold {:.3}; SSIM {:.3} vs threshold {:.3})",
            a.image, a.member_l2, near_copy.l2_threshold, a.member_ssim, near_copy.ssim_threshold
        ));
    }
    if share.distinct_share.lo > 0.5 {
        reasons.push(format!(
            "{} of the {} real images nearest to a distilled image are members (95% interval {:.2}–{:.2}, above one half)",
            share.distinct_nearest_members, share.distinct_nearest, share.distinct_share.lo, share.distinct_share.hi
        ));
    }
    if attack.auc.lo > 0.5 {
        reasons.push(format!(
            "a loss-based attack on networks trained by the distilled program tells members from holdout images: AUC {:.3} (95% interval {:.3}–{:.3})",
            attack.auc.value, attack.auc.lo, attack.auc.hi
        ));
    }
    reasons
}

/// How to read the report.
fn notes() -> Vec<String> {
    vec![
        "The verdict speaks of these tests at this sample size; it is not a guarantee of anonymity.".into(),
        format!(
            "With fewer than {MIN_HOLDOUT_PER_CLASS} holdout images in a class, a run in which no test finds anything reads \"{TOO_FEW}\", not \"{NO_EVIDENCE}\"."
        ),
        "Distances: L2 between normalised images; SSIM on pixel values in [0, 1] (7×7 window).".into(),
        "Distilled images far from all real images tend to share one nearest image (a hub), so the nearer-a-member test counts each nearest real image once.".into(),
        "With fewer than 100 (1000) holdout images scored, the true-positive rate at 1% (0.1%) false positives is measured at zero false positives.".into(),
        "No real image, file name or index is stored in this report.".into(),
    ]
}

impl Audit {
    /// The report for people, as the command line prints it.
    pub fn summary(&self) -> String {
        let m = &self.membership;
        let line = |name: &str, a: &Attack| {
            format!(
                "  {name:<15} AUC {:.3} [{:.3}, {:.3}]  TPR@1%FPR {:.3} [{:.3}, {:.3}]  TPR@0.1%FPR {:.3} [{:.3}, {:.3}]\n",
                a.auc.value, a.auc.lo, a.auc.hi, a.tpr_at_1pct_fpr.value, a.tpr_at_1pct_fpr.lo, a.tpr_at_1pct_fpr.hi,
                a.tpr_at_0_1pct_fpr.value, a.tpr_at_0_1pct_fpr.lo, a.tpr_at_0_1pct_fpr.hi
            )
        };
        let mut s = format!("privacy audit: {}\n", self.verdict);
        for r in &self.reasons {
            s += &format!("  - {r}\n");
        }
        s += &format!(
            "members {} | holdout {} (never used)\n",
            self.members.iter().sum::<usize>(),
            self.holdout.iter().sum::<usize>()
        );
        s += "image  class          member L2  holdout L2  member SSIM  holdout SSIM  label H(bits)  flags\n";
        for a in &self.images {
            let mut flags = Vec::new();
            if a.near_copy {
                flags.push("NEAR COPY".to_string());
            }
            if a.label_not_own_class {
                flags.push(format!("label says {}", a.label_top_class));
            }
            s += &format!(
                "{:>5}  {:<13} {:>10.3} {:>11.3} {:>12.3} {:>13.3} {:>14} {}\n",
                a.image,
                a.class,
                a.member_l2,
                a.holdout_l2,
                a.member_ssim,
                a.holdout_ssim,
                a.label_entropy_bits.map_or("-".into(), |h| format!("{h:.3}")),
                flags.join(", ")
            );
        }
        let sh = &self.share;
        s += &format!(
            "nearer a member than a holdout image: {} of {} distilled images ({:.2}, 95% interval {:.2}–{:.2}; p = {:.3}; {} of each compared)\n",
            sh.closer_to_member, sh.images, sh.share.value, sh.share.lo, sh.share.hi, sh.p_value, sh.per_side
        );
        s += &format!(
            "  counting each nearest real image once: {} of {} are members ({:.2}, 95% interval {:.2}–{:.2})\n",
            sh.distinct_nearest_members, sh.distinct_nearest, sh.distinct_share.value, sh.distinct_share.lo, sh.distinct_share.hi
        );
        s += &format!(
            "near-copy thresholds (from {} members' nearest other member, {}% quantile): L2 ≤ {:.3} or SSIM ≥ {:.3}\n",
            self.near_copy.member_nn_l2.len(),
            100.0 * self.near_copy.quantile,
            self.near_copy.l2_threshold,
            self.near_copy.ssim_threshold
        );
        s += &format!("membership attack (mean loss over {} networks; {} members vs {} holdout images):\n", m.nets, m.members, m.holdout);
        s += &line("distilled", &m.distilled);
        s += &line("random subset", &m.random_subset);
        s += &format!("  {}\n", m.comparison);
        s
    }
}
