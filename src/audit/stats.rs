//! The statistics of the audit: an exact binomial interval, the ROC of a score that separates
//! members from holdout images (AUC, true-positive rate at a fixed false-positive rate), and
//! bootstrap intervals for both.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A value with a two-sided 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The estimate.
    pub value: f64,
    /// Lower end of the 95% interval.
    pub lo: f64,
    /// Upper end of the 95% interval.
    pub hi: f64,
}

impl Interval {
    /// Whether the whole interval lies below `other`'s.
    pub fn below(&self, other: &Interval) -> bool {
        self.hi < other.lo
    }
}

/// P(X ≥ k) for X ~ Binomial(n, p).
pub fn binomial_upper_tail(k: usize, n: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // ln m! for m = 0..=n, once per call (not once per term).
    let ln_fact: Vec<f64> = std::iter::once(0.0).chain((1..=n).scan(0.0, |acc, i| {
        *acc += (i as f64).ln();
        Some(*acc)
    })).collect();
    let ln_choose = |i: usize| ln_fact[n] - ln_fact[i] - ln_fact[n - i];
    (k..=n).map(|i| (ln_choose(i) + i as f64 * p.ln() + (n - i) as f64 * (1.0 - p).ln()).exp()).sum::<f64>().min(1.0)
}

/// The exact (Clopper–Pearson) 95% interval of a proportion `k / n`.
pub fn clopper_pearson(k: usize, n: usize) -> Interval {
    assert!(n > 0 && k <= n, "clopper_pearson({k}, {n})");
    // The p where the rising function `f` reaches `target`, by bisection.
    let solve = |f: &dyn Fn(f64) -> f64, target: f64| {
        let (mut a, mut b) = (0.0f64, 1.0f64);
        for _ in 0..60 {
            let m = 0.5 * (a + b);
            if f(m) < target {
                a = m
            } else {
                b = m
            }
        }
        0.5 * (a + b)
    };
    // Lower end: P(X ≥ k) = 0.025; upper end: P(X ≤ k) = 0.025, i.e. P(X ≥ k + 1) = 0.975.
    let lo = if k == 0 { 0.0 } else { solve(&|p| binomial_upper_tail(k, n, p), 0.025) };
    let hi = if k == n { 1.0 } else { solve(&|p| binomial_upper_tail(k + 1, n, p), 0.975) };
    Interval { value: k as f64 / n as f64, lo, hi }
}

/// Separation of members from holdout images by a score (higher = "member"): the area under the
/// ROC curve (ties count one half) and the true-positive rate at false-positive rates.
#[derive(Clone, Debug, PartialEq)]
pub struct Roc {
    members: Vec<f64>,
    holdout: Vec<f64>,
}

impl Roc {
    /// Scores of the members and of the holdout images. Both sides must be non-empty and every
    /// score finite (a NaN compares false with everything, and the curve's walk would never end):
    /// the error says which condition failed and how many scores break it.
    pub fn new(members: Vec<f64>, holdout: Vec<f64>) -> Result<Self, String> {
        if members.is_empty() || holdout.is_empty() {
            return Err(format!("a ROC needs scores on both sides ({} members, {} holdout images)", members.len(), holdout.len()));
        }
        let bad = members.iter().chain(&holdout).filter(|s| !s.is_finite()).count();
        if bad > 0 {
            return Err(format!("{bad} of {} scores are not finite (NaN or infinite)", members.len() + holdout.len()));
        }
        Ok(Self::sorted(members, holdout))
    }

    /// `new` for scores already checked.
    fn sorted(mut members: Vec<f64>, mut holdout: Vec<f64>) -> Self {
        members.sort_by(|a, b| b.total_cmp(a));
        holdout.sort_by(|a, b| b.total_cmp(a));
        Self { members, holdout }
    }

    /// P(member score > holdout score) + ½ P(equal).
    pub fn auc(&self) -> f64 {
        // Both sorted descending: as the holdout score falls, the members above it and the
        // members at or above it only grow, so two pointers walk the member list once.
        let (mut above, mut at_or_above, mut total) = (0usize, 0usize, 0.0f64);
        let m = &self.members;
        for &h in &self.holdout {
            while above < m.len() && m[above] > h {
                above += 1;
            }
            while at_or_above < m.len() && m[at_or_above] >= h {
                at_or_above += 1;
            }
            total += above as f64 + 0.5 * (at_or_above - above) as f64;
        }
        total / (m.len() as f64 * self.holdout.len() as f64)
    }

    /// The true-positive rate when the threshold lets through at most a share `fpr` of the
    /// holdout images (with fewer than 1 / `fpr` holdout images: none of them).
    pub fn tpr_at(&self, fpr: f64) -> f64 {
        let allowed = (fpr * self.holdout.len() as f64 + 1e-9).floor() as usize;
        let threshold = self.holdout[allowed.min(self.holdout.len() - 1)];
        let above = if allowed >= self.holdout.len() { self.members.len() } else { self.members.iter().take_while(|&&s| s > threshold).count() };
        above as f64 / self.members.len() as f64
    }

    /// Points (false-positive rate, true-positive rate) of the curve, at most `max_points`.
    pub fn curve(&self, max_points: usize) -> Vec<[f64; 2]> {
        let (m, h) = (self.members.len() as f64, self.holdout.len() as f64);
        let mut points = vec![[0.0, 0.0]];
        let (mut i, mut j) = (0, 0);
        while i < self.members.len() || j < self.holdout.len() {
            let next = match (self.members.get(i), self.holdout.get(j)) {
                (Some(&a), Some(&b)) => a.max(b),
                (Some(&a), None) => a,
                (None, Some(&b)) => b,
                (None, None) => unreachable!(),
            };
            while i < self.members.len() && self.members[i] >= next {
                i += 1;
            }
            while j < self.holdout.len() && self.holdout[j] >= next {
                j += 1;
            }
            points.push([j as f64 / h, i as f64 / m]);
        }
        if points.len() > max_points {
            let step = points.len() as f64 / max_points as f64;
            let last = *points.last().expect("non-empty");
            points = (0..max_points - 1).map(|k| points[(k as f64 * step) as usize]).chain([last]).collect();
        }
        points
    }

    /// AUC and TPR at each of `fprs`, with 95% percentile-bootstrap intervals (members and
    /// holdout resampled separately, `resamples` times).
    pub fn with_intervals(&self, fprs: &[f64], resamples: usize, r: &mut ChaCha8Rng) -> (Interval, Vec<Interval>) {
        let mut aucs = Vec::with_capacity(resamples);
        let mut tprs = vec![Vec::with_capacity(resamples); fprs.len()];
        let draw = |r: &mut ChaCha8Rng, v: &[f64]| (0..v.len()).map(|_| v[r.random_range(0..v.len())]).collect::<Vec<_>>();
        for _ in 0..resamples {
            let b = Roc::sorted(draw(r, &self.members), draw(r, &self.holdout));
            aucs.push(b.auc());
            for (t, &f) in tprs.iter_mut().zip(fprs) {
                t.push(b.tpr_at(f));
            }
        }
        let interval = |value: f64, mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            let q = |p: f64| v[((p * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
            Interval { value, lo: q(0.025), hi: q(0.975) }
        };
        let auc = interval(self.auc(), aucs);
        let tpr = fprs.iter().zip(tprs).map(|(&f, v)| interval(self.tpr_at(f), v)).collect();
        (auc, tpr)
    }
}

/// The `q`-quantile of `values` (linear interpolation; `values` non-empty).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos.fract());
    if i + 1 < v.len() {
        v[i] * (1.0 - frac) + v[i + 1] * frac
    } else {
        v[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{rng, Stream};

    #[test]
    fn clopper_pearson_matches_known_values() {
        // scipy.stats.binomtest(k, n).proportion_ci(method="exact")
        let i = clopper_pearson(5, 10);
        assert!((i.lo - 0.187086).abs() < 1e-5 && (i.hi - 0.812914).abs() < 1e-5, "{i:?}");
        let i = clopper_pearson(0, 20);
        assert!(i.lo == 0.0 && (i.hi - 0.168433).abs() < 1e-5, "{i:?}");
        let i = clopper_pearson(10, 10);
        assert!((i.lo - 0.691503).abs() < 1e-5 && i.hi == 1.0, "{i:?}");
        assert!((binomial_upper_tail(8, 10, 0.5) - 0.0546875).abs() < 1e-12);
    }

    #[test]
    fn auc_and_tpr_of_simple_scores() {
        let roc = Roc::new(vec![3.0, 2.0, 1.0], vec![2.0, 0.0]).unwrap();
        // pairs: (3>2,3>0),(2=2,2>0),(1<2,1>0): 1+1+0.5+1+0+1 = 4.5 of 6
        assert!((roc.auc() - 0.75).abs() < 1e-12);
        assert_eq!(Roc::new(vec![5.0, 6.0], vec![1.0, 2.0]).unwrap().auc(), 1.0);
        assert_eq!(Roc::new(vec![1.0, 1.0], vec![1.0]).unwrap().auc(), 0.5);
        // No false positive allowed with two holdout images at 1%: threshold = the top holdout score.
        assert!((roc.tpr_at(0.01) - 1.0 / 3.0).abs() < 1e-12);
        assert!((roc.tpr_at(0.5) - 1.0).abs() < 1e-12);
        let c = roc.curve(100);
        assert_eq!(c.first(), Some(&[0.0, 0.0]));
        assert_eq!(c.last(), Some(&[1.0, 1.0]));
    }

    #[test]
    fn auc_equals_the_pair_count_and_bootstrap_brackets_it() {
        let mut r = rng(3, Stream::Eval);
        let m: Vec<f64> = (0..300).map(|_| r.random::<f64>() + 0.2).collect();
        let h: Vec<f64> = (0..200).map(|_| (r.random::<f64>() * 10.0).round() / 10.0).collect();
        let brute = m.iter().flat_map(|&a| h.iter().map(move |&b| if a > b { 1.0 } else if a == b { 0.5 } else { 0.0 })).sum::<f64>()
            / (m.len() * h.len()) as f64;
        let roc = Roc::new(m, h).unwrap();
        assert!((roc.auc() - brute).abs() < 1e-12, "{} vs {brute}", roc.auc());
        let (auc, tpr) = roc.with_intervals(&[0.01], 200, &mut r);
        assert!(auc.lo < auc.value && auc.value < auc.hi && auc.lo > 0.5, "{auc:?}");
        assert!(tpr[0].lo <= tpr[0].value && tpr[0].value <= tpr[0].hi);
    }

    #[test]
    fn scores_that_are_not_finite_are_refused_not_walked_for_ever() {
        // Before the check, `curve` looped for ever on a NaN (found with a class of three images).
        let msg = Roc::new(vec![1.0, f64::NAN, 0.5], vec![0.2]).unwrap_err();
        assert!(msg.contains("1 of 4 scores are not finite"), "{msg}");
        assert!(Roc::new(vec![1.0], vec![f64::NEG_INFINITY, 0.0]).unwrap_err().contains("1 of 3"));
        assert!(Roc::new(vec![], vec![1.0]).unwrap_err().contains("both sides"));
        // Ties everywhere still end: one step from (0, 0) to (1, 1).
        assert_eq!(Roc::new(vec![0.0; 5], vec![0.0; 3]).unwrap().curve(10), vec![[0.0, 0.0], [1.0, 1.0]]);
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[0.0, 10.0], 0.25), 2.5);
        assert_eq!(quantile(&[4.0], 0.99), 4.0);
    }
}
