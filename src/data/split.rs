//! Seeded splits by patient: all images of one patient go to the same side, whatever their
//! classes, and each patient's side depends on its own key and the seed alone. A patient goes to
//! the second part when a keyed hash of its key ([`side`], keyed by the seed and the split's
//! purpose) falls below the fraction. So adding or removing one patient in the data moves no
//! other patient across any split, which is what makes the private guarantee one about the
//! user's folder (`crate::privacy`). The price: the split is stratified only on average. Each
//! class's patients go to the second part independently with probability `fraction`, so its
//! share there varies around `fraction` (binomially). A class whose patients all land on one
//! side is refused with its name in a private run (`strict`); otherwise, so that small folders
//! still split, its patient nearest the threshold is moved across (the one move that can
//! depend on other patients, and only in that case).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::patients::mix;
use super::Dataset;
use crate::error::{Error, Result};
use crate::rng::Stream;

/// How many patients a split holds: per class (a patient with images of two classes counts in
/// both) and in all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatientCounts {
    /// Patients with at least one image of each class.
    pub per_class: Vec<usize>,
    /// Distinct patients.
    pub total: usize,
}

/// Patients of each split (counts only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitPatients {
    /// The training split (the audit's members).
    pub train: PatientCounts,
    /// The audit's holdout.
    pub holdout: PatientCounts,
    /// The test split.
    pub test: PatientCounts,
}

impl Dataset {
    /// The patients of the dataset, per class and in all.
    pub fn patient_counts(&self) -> PatientCounts {
        let mut classes_of: HashMap<u64, Vec<bool>> = HashMap::new();
        for (&p, &l) in self.patients.iter().zip(&self.labels) {
            classes_of.entry(p).or_insert_with(|| vec![false; self.classes.len()])[l] = true;
        }
        let mut per_class = vec![0; self.classes.len()];
        for has in classes_of.values() {
            for (c, _) in has.iter().enumerate().filter(|(_, &h)| h) {
                per_class[c] += 1;
            }
        }
        PatientCounts { per_class, total: classes_of.len() }
    }

    /// A seeded split by patient: each patient goes to the second part with probability
    /// `fraction`, by its keyed hash alone. Needs two patients per class. A class left on one
    /// side gets its patient nearest the threshold moved across, unless `strict`; it fails,
    /// naming the class, when a class still ends up on one side only.
    pub fn split(&self, fraction: f64, seed: u64, strict: bool) -> Result<(Dataset, Dataset)> {
        self.check_classes(2)?;
        let counts = self.patient_counts();
        let short: Vec<String> = (self.classes.iter().zip(&counts.per_class))
            .filter(|(_, &n)| n < 2)
            .map(|(c, n)| format!("'{c}' has images of {n} patient"))
            .collect();
        if !short.is_empty() {
            return Err(Error::Data(format!(
                "the test split is made by patient and needs at least 2 patients per class: {}",
                short.join(", ")
            )));
        }
        let (first, second) = self.split_by(fraction, seed, Stream::Split, (!strict).then_some(Fill::Both));
        for (part, which) in [(&first, "training"), (&second, "test")] {
            if let Some(c) = part.class_counts().iter().position(|&n| n == 0) {
                return Err(Error::Data(format!(
                    "class '{}' has no image in the {which} part of the split by patient: each patient goes to the test part with probability test_fraction = {fraction}, decided by its id and the seed alone, and none of this class's {} patient(s) went to the {which} part (a private run moves no patient across); give more patients, another seed or a separate test set",
                    self.classes[c], counts.per_class[c]
                )));
            }
        }
        Ok((first, second))
    }

    /// The members/holdout split of training data, by patient: each patient goes to the
    /// holdout with probability `fraction`, by its keyed hash alone (another key than the test
    /// split's). `fraction` 0 gives an empty holdout. A class left without members gets its
    /// holdout patient nearest the threshold back, unless `strict`; it fails, naming the class,
    /// when a class keeps no member.
    pub fn split_holdout(&self, fraction: f64, seed: u64, strict: bool) -> Result<(Dataset, Dataset)> {
        let (members, holdout) = self.split_by(fraction, seed, Stream::Holdout, (!strict).then_some(Fill::First));
        let (counts, all) = (members.class_counts(), self.class_counts());
        if let Some(c) = (0..counts.len()).find(|&c| counts[c] == 0 && all[c] > 0) {
            return Err(Error::Data(format!(
                "class '{}' has no image left to distil from: each of its {} training patient(s) went to the privacy audit's holdout (holdout_fraction = {fraction}, decided by each patient's id and the seed); give more patients, another seed, or holdout_fraction 0",
                self.classes[c],
                self.patient_counts().per_class[c]
            )));
        }
        Ok((members, holdout))
    }

    /// The images of the patients whose [`side`] is at least `fraction`, and the others; with
    /// `fill`, a class left without patients on a side it needs gets the patient nearest the
    /// threshold moved there (a class of one patient only into the first part).
    fn split_by(&self, fraction: f64, seed: u64, stream: Stream, fill: Option<Fill>) -> (Dataset, Dataset) {
        let mut u: HashMap<u64, f64> = HashMap::new();
        for &p in &self.patients {
            u.entry(p).or_insert_with(|| side(p, seed, stream));
        }
        let mut second: HashSet<u64> = u.iter().filter(|(_, &v)| v < fraction).map(|(&p, _)| p).collect();
        if let Some(fill) = fill {
            let mut of_class: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); self.num_classes()];
            for (&p, &l) in self.patients.iter().zip(&self.labels) {
                of_class[l].insert(p);
            }
            for patients in &of_class {
                let by_u = |a: &&u64, b: &&u64| u[*a].total_cmp(&u[*b]);
                if fill == Fill::Both && patients.len() >= 2 && patients.iter().all(|p| !second.contains(p)) {
                    second.insert(*patients.iter().min_by(by_u).expect("patients"));
                }
                if !patients.is_empty() && patients.iter().all(|p| second.contains(p)) && (fill == Fill::First || patients.len() >= 2) {
                    second.remove(patients.iter().max_by(by_u).expect("patients"));
                }
            }
        }
        let (second, first): (Vec<usize>, Vec<usize>) = (0..self.len()).partition(|&i| second.contains(&self.patients[i]));
        (self.subset(&first), self.subset(&second))
    }
}

/// Which sides of a split a class must keep when it is not strict.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fill {
    /// Both (the test split).
    Both,
    /// The first (members; the holdout may lose a class).
    First,
}

/// Where patient `key` falls in [0, 1) for the split `stream` of `seed`: a keyed hash (murmur3's
/// finaliser over the key mixed with the seed's and the purpose's), uniform and independent
/// across patients, seeds and purposes for any practical purpose. It is not secret (the seed is
/// in the archive) and need not be: it only has to depend on nothing but the patient.
pub fn side(key: u64, seed: u64, stream: Stream) -> f64 {
    let k = mix(mix(seed ^ 0x9e37_79b9_7f4a_7c15).wrapping_add(stream as u64));
    let h = mix(mix(key ^ k).wrapping_add(k.rotate_left(17)));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tests::toy;

    /// `toy` data whose images belong to patients of `per_patient` consecutive images of one
    /// class, except that patient 0 also has the first image of the last class.
    fn grouped(classes: usize, per_class: usize, per_patient: usize) -> Dataset {
        let mut d = toy(classes, per_class, 2);
        d.patients = (0..d.len()).map(|i| (i / per_patient) as u64).collect();
        d.patients[(classes - 1) * per_class] = 0;
        d
    }

    fn patients_of(d: &Dataset) -> std::collections::BTreeSet<u64> {
        d.patients.iter().copied().collect()
    }

    #[test]
    fn split_is_seeded_disjoint_and_near_the_fraction() {
        let d = toy(3, 200, 2);
        let (a, b) = d.split(0.2, 5, true).unwrap();
        assert_eq!(a.len() + b.len(), 600);
        // Binomial(200, 0.2) per class: 40 ± 5.7; every class within 4 standard deviations.
        for n in b.class_counts() {
            assert!((17..=63).contains(&n), "{:?}", b.class_counts());
        }
        let total = b.len() as f64 / 600.0;
        assert!((total - 0.2).abs() < 0.05, "{total}");
        assert_eq!(d.split(0.2, 5, true).unwrap().0, a);
        assert_ne!(d.split(0.2, 6, true).unwrap().0.pixels, a.pixels);
        assert!(patients_of(&a).is_disjoint(&patients_of(&b)));
        // The holdout uses another key: a different set from the test split of the same seed.
        let (_, holdout) = d.split_holdout(0.2, 5, true).unwrap();
        assert_ne!(patients_of(&holdout), patients_of(&b));
    }

    #[test]
    fn the_side_is_uniform_and_independent_across_purposes() {
        let n = 100_000u64;
        let u: Vec<f64> = (0..n).map(|k| side(k, 1, Stream::Split)).collect();
        let v: Vec<f64> = (0..n).map(|k| side(k, 1, Stream::Holdout)).collect();
        // Ten bins: chi-square with 9 degrees of freedom, 27.9 at p = 0.001.
        let mut bins = [0f64; 10];
        u.iter().for_each(|x| bins[(x * 10.0) as usize] += 1.0);
        let chi2: f64 = bins.iter().map(|b| (b - n as f64 / 10.0).powi(2) / (n as f64 / 10.0)).sum();
        assert!(chi2 < 27.9, "chi2 {chi2}: {bins:?}");
        let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        let cov = u.iter().zip(&v).map(|(a, b)| (a - 0.5) * (b - 0.5)).sum::<f64>() / n as f64;
        assert!((mean(&u) - 0.5).abs() < 0.005 && (cov * 12.0).abs() < 0.015, "{} {cov}", mean(&u));
    }

    #[test]
    fn adding_or_removing_a_patient_moves_no_other_patient() {
        // 2 classes × 100 patients of 2 images; then one more patient (3 images), and one fewer.
        let base = grouped(2, 200, 2);
        let mut added = base.clone();
        added.pixels.extend(std::iter::repeat_n(0.3, 3 * 4));
        added.labels.extend([0, 1, 1]);
        added.patients.extend([1_000_000, 1_000_000, 1_000_000]);
        let keep: Vec<usize> = (0..base.len()).filter(|&i| base.patients[i] != 57).collect();
        let removed = base.subset(&keep);
        for seed in 0..20 {
            let sides = |d: &Dataset| {
                let (train, test) = d.split(0.2, seed, true).unwrap();
                let (members, holdout) = train.split_holdout(0.2, seed, true).unwrap();
                (patients_of(&members), patients_of(&holdout), patients_of(&test))
            };
            let (m, h, t) = sides(&base);
            for (other, changed) in [(&added, 1_000_000), (&removed, 57)] {
                let (m2, h2, t2) = sides(other);
                let without = |s: &std::collections::BTreeSet<u64>| s.iter().copied().filter(|&p| p != changed).collect::<Vec<_>>();
                assert_eq!((without(&m), without(&h), without(&t)), (without(&m2), without(&h2), without(&t2)), "seed {seed}: patient {changed} moved others");
            }
        }
    }

    #[test]
    fn the_old_shuffle_moved_other_patients_and_the_test_above_sees_it() {
        // The split before patient keys: a seeded shuffle of each class's patients. Adding one
        // patient changes the shuffle and moves others: the check of the test above fails on it.
        use crate::rng::{permutation, rng};
        let shuffle = |d: &Dataset| {
            let mut by_class: Vec<Vec<u64>> = vec![Vec::new(); d.num_classes()];
            for (&p, &l) in d.patients.iter().zip(&d.labels) {
                if !by_class[l].contains(&p) && !by_class.iter().any(|c| c.contains(&p)) {
                    by_class[l].push(p);
                }
            }
            let mut r = rng(3, Stream::Split);
            let mut test = std::collections::BTreeSet::new();
            for ps in by_class {
                let perm = permutation(&mut r, ps.len());
                let k = (ps.len() as f64 * 0.2).round() as usize;
                test.extend(perm[..k].iter().map(|&i| ps[i]));
            }
            test
        };
        let base = grouped(2, 200, 2);
        let mut added = base.clone();
        added.pixels.extend(std::iter::repeat_n(0.3, 4));
        added.labels.push(0);
        added.patients.push(1_000_000);
        let (a, b) = (shuffle(&base), shuffle(&added));
        let moved = a.symmetric_difference(&b).filter(|&&p| p != 1_000_000).count();
        assert!(moved > 0, "the shuffle moved no other patient");
    }

    #[test]
    fn no_patient_crosses_a_split() {
        let d = grouped(3, 30, 3);
        assert_eq!(d.patient_counts(), PatientCounts { per_class: vec![10, 10, 11], total: 30 });
        let mut ok = 0;
        for seed in 0..20 {
            let Ok((train, test)) = d.split(0.3, seed, true) else { continue };
            let Ok((members, holdout)) = train.split_holdout(0.25, seed, true) else { continue };
            ok += 1;
            let parts = [&members, &holdout, &test];
            for (i, a) in parts.iter().enumerate() {
                for b in &parts[i + 1..] {
                    assert!(patients_of(a).is_disjoint(&patients_of(b)), "seed {seed}: a patient on two sides");
                }
            }
            assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), d.len());
        }
        assert!(ok >= 15, "{ok} of 20 seeds split");
    }

    #[test]
    fn too_few_patients_are_named() {
        let mut d = toy(2, 4, 2);
        d.patients = vec![0, 1, 2, 3, 4, 4, 4, 4];
        let msg = d.split(0.2, 0, false).unwrap_err().to_string();
        assert!(msg.contains("'c1' has images of 1 patient"), "{msg}");
        // Two patients a class at fraction 0.5: some seed sends both of a class to one side.
        let d = toy(3, 2, 2);
        let msg = (0..50).find_map(|s| d.split(0.5, s, true).err()).expect("some seed puts a class on one side").to_string();
        assert!(msg.contains("has no image in the") && msg.contains("part of the split by patient"), "{msg}");
        let msg = (0..50).find_map(|s| toy(2, 1, 2).split_holdout(0.5, s, true).err()).expect("some seed holds a class's only patient out").to_string();
        assert!(msg.contains("has no image left to distil from") && msg.contains("holdout_fraction"), "{msg}");
        // Not strict, the same seeds split: one patient moved across where a class needed it.
        for s in 0..50 {
            let (a, b) = d.split(0.5, s, false).unwrap();
            assert!(a.class_counts().iter().chain(&b.class_counts()).all(|&n| n == 1), "seed {s}");
            let (members, _) = toy(2, 1, 2).split_holdout(0.5, s, false).unwrap();
            assert_eq!(members.class_counts(), vec![1, 1], "seed {s}");
        }
    }

    #[test]
    fn an_empty_holdout_for_fraction_zero() {
        let d = toy(2, 10, 4);
        let (all, none) = d.split_holdout(0.0, 5, false).unwrap();
        assert_eq!((all.len(), none.len()), (20, 0));
    }
}
