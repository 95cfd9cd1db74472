//! A whole run, the way both shells (command line and browser) drive it: prepare the splits,
//! iterate, evaluate, export.

use burn_tensor::backend::Backend;

use crate::audit::{audit, Audit, AuditConfig, AuditInputs};
use crate::config::{Config, ImageInit};
use crate::data::{Dataset, Loaded, Normalization, NpzSplits, Skipped, SplitPatients, NAMED};
use crate::distill::{Distilled, Distiller, StepReport};
use crate::error::{Error, Result};
use crate::eval::{pick_subset_lr, Evaluation};
use crate::privacy::{Privacy, PUBLIC_NORMALIZATION};
use crate::net::Params;
use crate::export::{write_archive, Export, Manifest, FORMAT};

/// Training (members), holdout and test splits, the training normalisation, and the files that
/// were skipped.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Images the set is distilled from: the audit's members.
    pub train: Dataset,
    /// Training images kept back for the privacy audit, never distilled from.
    pub holdout: Dataset,
    /// Held-out images for evaluation only.
    pub test: Dataset,
    /// Statistics of the training pixels (fixed public constants with differential privacy).
    pub norm: Normalization,
    /// Files left out while loading.
    pub skipped: Vec<Skipped>,
}

impl Prepared {
    /// What a user should know before distilling `config`'s set from these training images:
    /// a distilled set as large as the training set (a random subset would be all of it), and
    /// each class with fewer training images than distilled images of it. Said by the CLI and
    /// the page before the run; never in the archive.
    pub fn cautions(&self, config: &Config) -> Vec<String> {
        let classes = self.train.num_classes();
        let per_step = config.images_per_step(classes);
        let distilled = per_step * config.steps;
        let counts = self.train.class_counts();
        let mut of_class = vec![0usize; classes];
        for c in crate::distill::initial_classes(per_step, classes) {
            of_class[c] += config.steps;
        }
        let mut out = Vec::new();
        let train: usize = counts.iter().sum();
        if distilled >= train {
            out.push(format!("the distilled set will have {distilled} images, as many as the {train} training images or more: it cannot be a summary of them (fewer steps or images per step, or more data)"));
        }
        for (c, (&n, &d)) in counts.iter().zip(&of_class).enumerate() {
            if n < d {
                out.push(format!("class \"{}\" has {n} training image(s), fewer than its {d} distilled images", self.train.classes[c]));
            }
        }
        out
    }

    /// Splits loaded files by patient (stratified, seeded by `config`).
    pub fn from_loaded(loaded: Loaded, config: &Config) -> Result<Self> {
        let (train, test) = loaded.dataset.split(config.test_fraction, config.seed, config.privacy.is_some())?;
        Self::with_holdout(train, test, loaded.skipped, config)
    }

    /// Training data and a separate test set: only the holdout is split off the training data.
    /// The test set must have the same classes and share no named patient with the training
    /// data (the error gives their number, not their ids); its skipped files are listed with
    /// `test: `.
    pub fn with_test(loaded: Loaded, test: Loaded, config: &Config) -> Result<Self> {
        loaded.dataset.check_classes(1)?;
        check_same_classes(&test.dataset, &loaded.dataset.classes).map_err(|_| {
            Error::Data(format!(
                "the test data has classes [{}] but the training data has [{}]; give both the same class folders",
                test.dataset.classes.join(", "),
                loaded.dataset.classes.join(", ")
            ))
        })?;
        let named = |d: &Dataset| d.patients.iter().copied().filter(|p| p & NAMED != 0).collect::<std::collections::HashSet<u64>>();
        let shared = named(&loaded.dataset).intersection(&named(&test.dataset)).count();
        if shared > 0 {
            return Err(Error::Data(format!(
                "the test data and the training data share {shared} patient(s) (the same patient id from a folder, the patient pattern or the archive's groups): a test set must hold other patients than the training data, or the evaluation flatters the result"
            )));
        }
        let mut skipped = loaded.skipped;
        skipped.extend(test.skipped.into_iter().map(|s| Skipped { file: format!("test: {}", s.file), ..s }));
        Self::with_holdout(loaded.dataset, test.dataset, skipped, config)
    }

    /// The patients of each split.
    pub fn patients(&self) -> SplitPatients {
        SplitPatients { train: self.train.patient_counts(), holdout: self.holdout.patient_counts(), test: self.test.patient_counts() }
    }

    fn with_holdout(train: Dataset, test: Dataset, skipped: Vec<Skipped>, config: &Config) -> Result<Self> {
        let (train, holdout) = train.split_holdout(config.holdout_fraction, config.seed, config.privacy.is_some())?;
        // A private run may not learn anything from its training images outside the mechanism.
        let norm = if config.privacy.is_some() { PUBLIC_NORMALIZATION } else { Normalization::of(&train) };
        Ok(Self { norm, train, holdout, test, skipped })
    }

    /// Uses an archive's own train and test splits (a split of train by patient when it has no
    /// test).
    pub fn from_npz(splits: NpzSplits, config: &Config) -> Result<Self> {
        let train = Loaded { dataset: splits.train, skipped: Vec::new() };
        match splits.test {
            Some(dataset) => Self::with_test(train, Loaded { dataset, skipped: Vec::new() }, config),
            None => Self::from_loaded(train, config),
        }
    }
}

/// How a run of outer iterations ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Iterations done.
    pub iterations: usize,
    /// Why it stopped before the end (divergence, cancellation), if it did.
    pub stopped_early: Option<String>,
}

/// Runs outer iterations up to iteration `end` (at most the run's total), calling `on_step` after
/// each; returns the error that stopped it early, if one did (a divergence keeps the last good
/// state).
pub async fn run_until<B: Backend>(d: &mut Distiller<B>, end: usize, mut on_step: impl FnMut(&StepReport)) -> Option<Error> {
    let end = end.min(d.total_iterations());
    while d.iteration() < end {
        match d.step().await {
            Ok(report) => on_step(&report),
            Err(e) => return Some(e),
        }
    }
    None
}

/// Runs the remaining outer iterations, calling `on_step` after each; a divergence stops the run
/// with the last good state kept.
pub async fn run_to_end<B: Backend>(d: &mut Distiller<B>, on_step: impl FnMut(&StepReport)) -> Outcome {
    let total = d.total_iterations();
    let stopped_early = run_until(d, total, on_step).await.map(|e| e.to_string());
    Outcome { iterations: d.iteration(), stopped_early }
}

/// The evaluation and the privacy audit of a distilled state, each kept with the iteration of
/// the state it describes: asked for at another iteration, they are not there, so an export
/// never carries figures of an earlier state next to a later one's images.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    metrics: Option<(usize, Evaluation)>,
    audit: Option<(usize, Audit)>,
}

impl Findings {
    /// Keeps the evaluation of the state at `iteration`.
    pub fn set_metrics(&mut self, iteration: usize, metrics: Evaluation) {
        self.metrics = Some((iteration, metrics));
    }

    /// Keeps the audit of the state at `iteration`.
    pub fn set_audit(&mut self, iteration: usize, audit: Audit) {
        self.audit = Some((iteration, audit));
    }

    /// The evaluation of the state at `iteration`, if one was made of that state.
    pub fn metrics(&self, iteration: usize) -> Option<&Evaluation> {
        self.metrics.as_ref().filter(|(i, _)| *i == iteration).map(|(_, m)| m)
    }

    /// The audit of the state at `iteration`, if one was made of that state.
    pub fn audit(&self, iteration: usize) -> Option<&Audit> {
        self.audit.as_ref().filter(|(i, _)| *i == iteration).map(|(_, a)| a)
    }
}

/// The privacy audit of `distilled` against the run's members and holdout. The random subset
/// takes the evaluation's learning rate when there is one, else the same choice made afresh.
pub async fn run_audit<B: Backend>(
    distilled: &Distilled,
    config: &Config,
    prepared: &Prepared,
    fixed_init: Option<&Params<B>>,
    metrics: Option<&Evaluation>,
    device: &B::Device,
) -> Result<Audit> {
    let subset_lr = match metrics {
        Some(m) => m.random_subset_lr,
        None => pick_subset_lr::<B>(config, &prepared.train, prepared.norm, device).await?,
    };
    let inputs = AuditInputs {
        config,
        members: &prepared.train,
        holdout: &prepared.holdout,
        norm: prepared.norm,
        fixed_init,
        subset_lr,
        device,
    };
    audit(distilled, inputs, &AuditConfig::default()).await
}

/// The result archive of a distiller's current state.
pub async fn export<B: Backend>(
    d: &Distiller<B>,
    prepared: &Prepared,
    outcome: &Outcome,
    metrics: Option<Evaluation>,
    audit: Option<&Audit>,
) -> Result<Vec<u8>> {
    let distilled = d.distilled().await?;
    let fixed_init = d.fixed_init_values().await?;
    let privacy = d.privacy().map(|p| p.record(outcome.iterations));
    export_distilled(&distilled, d.config(), prepared, outcome, metrics, audit, fixed_init, privacy)
}

/// The result archive of distilled data already read back to the host. With `privacy` (a
/// private run's record) it holds only what the guarantee covers, the test patients' evaluation
/// and the settings: no count of training or holdout images or patients, no baseline trained on
/// the members, nothing from the audit (`audit` is ignored, in every field).
#[allow(clippy::too_many_arguments)]
pub fn export_distilled(
    distilled: &Distilled,
    config: &Config,
    prepared: &Prepared,
    outcome: &Outcome,
    metrics: Option<Evaluation>,
    audit: Option<&Audit>,
    fixed_init: Option<Vec<Vec<f32>>>,
    privacy: Option<Privacy>,
) -> Result<Vec<u8>> {
    let private = privacy.is_some();
    // The audit compares the result with member images without noise: in a private archive no
    // field depends on it, not even on whether it ran or what it found.
    let audit = if private { None } else { audit };
    let mut warnings = warnings(config, audit);
    // The evaluation's own caveat: a test set too small to judge by.
    warnings.extend(metrics.as_ref().and_then(Evaluation::too_few));
    let manifest = Manifest {
        format: FORMAT.into(),
        crate_version: env!("CARGO_PKG_VERSION").into(),
        config: config.clone(),
        classes: prepared.train.classes.clone(),
        normalization: prepared.norm,
        train_counts: if private { Vec::new() } else { prepared.train.class_counts() },
        holdout_counts: if private { Vec::new() } else { prepared.holdout.class_counts() },
        patients: (!private).then(|| prepared.patients()),
        iterations_run: outcome.iterations,
        stopped_early: outcome.stopped_early.clone(),
        test_metrics: if private { metrics.as_ref().map(|m| m.distilled.clone()) } else { None },
        metrics: if private { None } else { metrics },
        images_per_step: distilled.per_step,
        preview_scaling: String::new(),
        files: Vec::new(),
        warnings,
        privacy,
        recipe: (config.objective == crate::config::Objective::Matching).then(|| config.recipe()),
    };
    write_archive(Export { distilled, manifest, fixed_init, audit })
}

/// The manifest's warnings: what the archive's images may reveal, as far as this run knows.
fn warnings(config: &Config, audit: Option<&Audit>) -> Vec<String> {
    let mut w = Vec::new();
    if config.init == ImageInit::Real {
        w.push("the distilled images started from real training images (init real, acknowledged by the user): they can stay close to the patients' images they started from".to_string());
        if audit.is_none() {
            w.push("no privacy audit ran on this state: nothing checked these images against the training images".to_string());
        }
    }
    if let Some(a) = audit.filter(|a| !a.near_copy.flagged.is_empty()) {
        w.push(format!("the privacy audit flagged distilled image(s) {:?} as near copies of training images", a.near_copy.flagged));
    }
    w
}

/// Checks that `data` has the classes an archive was distilled for.
pub fn check_same_classes(data: &Dataset, classes: &[String]) -> Result<()> {
    if data.classes != classes {
        return Err(Error::Data(format!(
            "the data has classes [{}] but the archive was distilled for [{}]",
            data.classes.join(", "),
            classes.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Accuracy;

    #[test]
    fn findings_of_an_earlier_state_are_not_given_for_a_later_one() {
        // pause at 40 → evaluate → resume → finish at 200 → download: the export asks at 200.
        let acc = Accuracy { nets: 1, accuracy: crate::metrics::Stat { mean: 0.8, std: 0.0 }, ..Accuracy::default() };
        let e = Evaluation { test_images: 4, test_counts: vec![2, 2], distilled: acc.clone(), random_subset: acc, random_subset_lr: 0.1, full_data: None };
        let mut f = Findings::default();
        f.set_metrics(40, e.clone());
        assert_eq!(f.metrics(40), Some(&e));
        assert_eq!(f.metrics(200), None);
        assert!(f.audit(40).is_none());
        f.set_metrics(200, e.clone());
        assert_eq!(f.metrics(200), Some(&e));
        assert_eq!(f.metrics(40), None);
    }

    #[test]
    fn a_distilled_set_as_large_as_its_data_is_said_before_the_run() {
        use crate::data::tests::toy;
        let mut train = toy(2, 6, 8);
        train.labels[..1].iter_mut().for_each(|l| *l = 1); // 5 of c0, 7 of c1
        let empty = toy(2, 0, 8);
        let prepared = Prepared { train, holdout: empty.clone(), test: empty, norm: Normalization { mean: 0.0, std: 1.0 }, skipped: Vec::new() };
        // 10 steps of one image a class: 20 distilled images from 12, 10 of c0 from 5.
        let said = prepared.cautions(&Config::default());
        assert_eq!(said.len(), 3, "{said:?}");
        assert!(said[0].starts_with("the distilled set will have 20 images, as many as the 12 training images or more"), "{said:?}");
        assert_eq!(said[1], "class \"c0\" has 5 training image(s), fewer than its 10 distilled images");
        assert_eq!(said[2], "class \"c1\" has 7 training image(s), fewer than its 10 distilled images");
        // Three steps: 6 images, 3 a class: nothing to say.
        assert!(prepared.cautions(&Config { steps: 3, ..Config::default() }).is_empty());
    }
}
