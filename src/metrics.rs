//! The numbers clinicians read, from the evaluation networks' outputs on the test images:
//! accuracy, balanced accuracy (the mean of the recalls of the classes that have test images, as
//! scikit-learn computes it), each class's recall (sensitivity) and precision, specificity for two classes, the confusion matrix, and the macro
//! one-vs-rest ROC AUC of the networks' mean softmax output. A spread is the sample standard
//! deviation over the networks (divided by n − 1; 0 for one network).

use serde::{Deserialize, Serialize};

/// A mean over the evaluation networks with its sample standard deviation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation (n − 1); 0 for one value.
    pub std: f64,
}

impl Stat {
    /// Mean and sample standard deviation of `values` (an empty slice gives NaN).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let std = if values.len() > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
        Self { mean, std }
    }
}

/// What one network did on the test images.
#[derive(Clone, Debug, PartialEq)]
pub struct NetOutput {
    /// The predicted class of each image (the largest output).
    pub predicted: Vec<usize>,
    /// The softmax output, `images × classes`, image after image.
    pub probs: Vec<f64>,
}

/// A program's metrics over its evaluation networks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Networks evaluated.
    pub nets: usize,
    /// Share of test images classified right.
    pub accuracy: Stat,
    /// The mean of the recalls of the classes with test images: what accuracy would be with
    /// equally many images a class. A class without test images is left out (see
    /// [`Metrics::warnings`]), as scikit-learn's `balanced_accuracy_score` does.
    pub balanced_accuracy: Stat,
    /// Of each class's images, the share predicted as that class (sensitivity); `None` for a
    /// class with no test image.
    pub per_class_recall: Vec<Option<Stat>>,
    /// Of the images predicted as each class, the share that are of it, over the networks that
    /// predicted the class at least once (`None` when none did).
    pub per_class_precision: Vec<Option<Stat>>,
    /// With two classes, the first class's recall: the specificity when the second class (in
    /// label order) is the positive finding.
    pub specificity: Option<Stat>,
    /// Macro one-vs-rest ROC AUC of the networks' mean softmax output (`None` when a class has no
    /// test image, or the output is not finite).
    pub auc: Option<f64>,
    /// Rows the true class, columns the predicted one: the share of the row's images, pooled over
    /// every network.
    pub confusion: Vec<Vec<f64>>,
}

/// Largest over smallest class count from which the classes count as imbalanced and balanced
/// accuracy is the headline.
pub const IMBALANCE_RATIO: f64 = 1.5;

/// Whether `counts` are imbalanced (largest / smallest above [`IMBALANCE_RATIO`]).
pub fn imbalanced(counts: &[usize]) -> bool {
    let (lo, hi) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
    lo == 0 || hi as f64 > IMBALANCE_RATIO * lo as f64
}

/// The confusion counts of one network: `[true][predicted]`.
fn confusion(predicted: &[usize], labels: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; classes]; classes];
    for (&p, &y) in predicted.iter().zip(labels) {
        m[y][p] += 1;
    }
    m
}

/// Area under the ROC curve of `scores` for telling `positive` (true) from the rest: the
/// probability that a random positive scores above a random negative, ties counting one half
/// (the Mann–Whitney statistic, from mid-ranks). `None` without both kinds or with a non-finite
/// score.
pub fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    if scores.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let pos = positive.iter().filter(|&&p| p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0; // ranks from 1
        rank_sum += (i..=j).filter(|&k| positive[order[k]]).count() as f64 * mid;
        i = j + 1;
    }
    Some((rank_sum - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

impl Metrics {
    /// The metrics of `outputs` (one per network, at least one) on images labelled `labels`.
    pub fn of(outputs: &[NetOutput], labels: &[usize], classes: usize) -> Self {
        let per_net: Vec<Vec<Vec<usize>>> = outputs.iter().map(|o| confusion(&o.predicted, labels, classes)).collect();
        let over_nets = |f: &dyn Fn(&Vec<Vec<usize>>) -> f64| Stat::of(&per_net.iter().map(f).collect::<Vec<_>>());
        let mut present = vec![false; classes];
        labels.iter().for_each(|&y| present[y] = true);
        let present: Vec<usize> = (0..classes).filter(|&c| present[c]).collect();
        let recall = |m: &Vec<Vec<usize>>, c: usize| m[c][c] as f64 / m[c].iter().sum::<usize>().max(1) as f64;
        let accuracy = over_nets(&|m| (0..classes).map(|c| m[c][c]).sum::<usize>() as f64 / labels.len().max(1) as f64);
        let balanced_accuracy = over_nets(&|m| present.iter().map(|&c| recall(m, c)).sum::<f64>() / present.len().max(1) as f64);
        let per_class_recall = (0..classes).map(|c| present.contains(&c).then(|| over_nets(&|m| recall(m, c)))).collect();
        let per_class_precision = (0..classes)
            .map(|c| {
                let defined: Vec<f64> = per_net
                    .iter()
                    .filter_map(|m| {
                        let predicted: usize = (0..classes).map(|y| m[y][c]).sum();
                        (predicted > 0).then(|| m[c][c] as f64 / predicted as f64)
                    })
                    .collect();
                (!defined.is_empty()).then(|| Stat::of(&defined))
            })
            .collect();
        let specificity = (classes == 2 && present.contains(&0)).then(|| over_nets(&|m| recall(m, 0)));
        let confusion = (0..classes)
            .map(|y| {
                let row: Vec<usize> = (0..classes).map(|p| per_net.iter().map(|m| m[y][p]).sum()).collect();
                let total = row.iter().sum::<usize>().max(1) as f64;
                row.into_iter().map(|v| v as f64 / total).collect()
            })
            .collect();
        let n = labels.len();
        let mean_probs: Vec<f64> = (0..n * classes).map(|k| outputs.iter().map(|o| o.probs[k]).sum::<f64>() / outputs.len() as f64).collect();
        let aucs: Option<Vec<f64>> = (0..classes)
            .map(|c| {
                let scores: Vec<f64> = (0..n).map(|i| mean_probs[i * classes + c]).collect();
                let positive: Vec<bool> = labels.iter().map(|&y| y == c).collect();
                auc(&scores, &positive)
            })
            .collect();
        // With two classes both one-vs-rest curves are the same curve.
        let auc = aucs.map(|a| a.iter().sum::<f64>() / a.len() as f64);
        Self { nets: outputs.len(), accuracy, balanced_accuracy, per_class_recall, per_class_precision, specificity, auc, confusion }
    }

    /// The per-class lines for people: recall (sensitivity) and precision of each class, and
    /// the confusion matrix as percentages of each true class's images.
    pub fn per_class_text(&self, classes: &[String]) -> String {
        let pct = |s: &Stat| format!("{:.1}% ± {:.1}", 100.0 * s.mean, 100.0 * s.std);
        let mut out = String::new();
        for (c, name) in classes.iter().enumerate() {
            let precision = self.per_class_precision.get(c).copied().flatten().map_or("never predicted".into(), |s| pct(&s));
            let recall = self.per_class_recall.get(c).copied().flatten().map_or("- (no test image)".into(), |s| pct(&s));
            out += &format!("  {name}: recall {recall}, precision {precision}\n");
        }
        if let Some(s) = &self.specificity {
            out += &format!("  specificity ({} taken as the positive finding): {}\n", classes.get(1).map_or("", |s| s), pct(s));
        }
        out += "  confusion (rows: true class, columns: predicted, % of the row over all networks):\n";
        for (c, row) in self.confusion.iter().enumerate() {
            out += &format!("    {:<16} {}\n", classes.get(c).map_or("", |s| s), row.iter().map(|v| format!("{:6.1}", 100.0 * v)).collect::<Vec<_>>().join(" "));
        }
        out
    }

    /// Sentences a reader should not miss: a class without test images (left out of balanced
    /// accuracy), one class's recall far below the others', or a program that predicts nearly
    /// one class only.
    pub fn warnings(&self, classes: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        let absent: Vec<String> = self.per_class_recall.iter().enumerate().filter(|(_, r)| r.is_none()).map(|(c, _)| format!("\"{}\"", classes[c])).collect();
        if !absent.is_empty() {
            out.push(format!("the test images include no image of {}: balanced accuracy is the mean recall of the other classes only", absent.join(", ")));
        }
        let recalls: Vec<f64> = self.per_class_recall.iter().map(|s| s.map_or(f64::NAN, |s| s.mean)).collect();
        // The share of all predictions that go to each class (rows of classes with test images
        // weigh the same).
        let rows = (self.per_class_recall.iter().filter(|r| r.is_some()).count() as f64).max(1.0);
        let predicted: Vec<f64> = (0..recalls.len()).map(|p| self.confusion.iter().map(|row| row[p]).sum::<f64>() / rows).collect();
        if let Some((c, share)) = predicted.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
            if *share >= 0.9 {
                out.push(format!("it predicts \"{}\" for {:.0}% of the images, whatever their class: close to a constant answer", classes[c], 100.0 * share));
            }
        }
        let best = recalls.iter().cloned().filter(|r| !r.is_nan()).fold(f64::NEG_INFINITY, f64::max);
        for (c, &r) in recalls.iter().enumerate() {
            if best - r >= 0.25 {
                out.push(format!("its recall of \"{}\" ({:.1}%) is far below that of the best class ({:.1}%)", classes[c], 100.0 * r, 100.0 * best));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(predicted: &[usize], classes: usize) -> NetOutput {
        let probs = predicted.iter().flat_map(|&p| (0..classes).map(move |c| if c == p { 0.9 } else { 0.1 / (classes - 1) as f64 })).collect();
        NetOutput { predicted: predicted.to_vec(), probs }
    }

    #[test]
    fn sample_std_divides_by_n_minus_one() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.mean, 2.5);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-12, "{}", s.std);
        assert_eq!(Stat::of(&[0.7]).std, 0.0);
    }

    #[test]
    fn auc_counts_ties_as_one_half_and_is_symmetric() {
        // Worked by hand: pairs (pos, neg) = (0.8, 0.1) win, (0.8, 0.4) win, (0.4, 0.1) win,
        // (0.4, 0.4) tie: 3.5 of 4.
        assert_eq!(auc(&[0.8, 0.4, 0.4, 0.1], &[true, true, false, false]), Some(0.875));
        assert_eq!(auc(&[0.8, 0.4, 0.4, 0.1], &[false, false, true, true]), Some(0.125));
        assert_eq!(auc(&[0.5, 0.5, 0.5], &[true, false, false]), Some(0.5));
        assert_eq!(auc(&[0.5, 0.2], &[true, true]), None);
        assert_eq!(auc(&[f64::NAN, 0.2], &[true, false]), None);
    }

    #[test]
    fn an_imbalanced_constant_answer_has_high_accuracy_and_balanced_accuracy_one_half() {
        // 8 benign (0), 2 malignant (1); the network answers "benign" always.
        let labels = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        let m = Metrics::of(&[output(&[0; 10], 2)], &labels, 2);
        assert_eq!(m.accuracy.mean, 0.8);
        assert_eq!(m.balanced_accuracy.mean, 0.5);
        assert_eq!(m.per_class_recall.iter().map(|s| s.unwrap().mean).collect::<Vec<_>>(), vec![1.0, 0.0]);
        assert_eq!(m.per_class_precision[0].map(|s| s.mean), Some(0.8));
        assert_eq!(m.per_class_precision[1], None, "never predicted: undefined, not 0");
        assert_eq!(m.specificity.map(|s| s.mean), Some(1.0));
        assert_eq!(m.confusion, vec![vec![1.0, 0.0], vec![1.0, 0.0]]);
        assert_eq!(m.auc, Some(0.5), "a constant score tells nothing");
        let w = m.warnings(&["benign".into(), "malignant".into()]);
        assert!(w.iter().any(|s| s.contains("\"benign\" for 100%")), "{w:?}");
        assert!(w.iter().any(|s| s.contains("recall of \"malignant\" (0.0%)")), "{w:?}");
        assert!(imbalanced(&[8, 2]) && !imbalanced(&[10, 8]));
    }

    #[test]
    fn metrics_pool_the_networks_as_documented() {
        // Two networks on 2 + 2 images of 2 classes.
        let labels = [0, 0, 1, 1];
        let a = output(&[0, 0, 1, 1], 2); // all right
        let b = output(&[0, 1, 1, 0], 2); // half right
        let m = Metrics::of(&[a, b], &labels, 2);
        assert_eq!(m.nets, 2);
        assert_eq!(m.accuracy.mean, 0.75);
        assert!((m.accuracy.std - (0.125f64).sqrt()).abs() < 1e-12, "sample std of 1.0 and 0.5");
        assert_eq!(m.confusion, vec![vec![0.75, 0.25], vec![0.25, 0.75]]);
        assert_eq!(m.per_class_precision[1].map(|s| s.mean), Some(0.75));
        // Mean softmax: image 0: 0.9 for class 0 (both), image 1: (0.9 + 0.1) / 2, …: class 1's
        // scores are 0.1, 0.5 for the negatives and 0.9, 0.5 for the positives: (1 + 1 + 1 + 0.5) / 4.
        assert_eq!(m.auc, Some(0.875));
        assert!(m.warnings(&["a".into(), "b".into()]).is_empty());
    }

    #[test]
    fn a_class_without_test_images_is_left_out_of_balanced_accuracy() {
        // 3 classes, test labels of the first two only, every prediction right: scikit-learn's
        // balanced_accuracy_score gives 1.0 (counting the absent class as recall 0 gave 0.667).
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let m = Metrics::of(&[output(&[0, 0, 1, 1], 3)], &[0, 0, 1, 1], 3);
        assert_eq!(m.balanced_accuracy.mean, 1.0);
        assert_eq!(m.per_class_recall[2], None);
        assert_eq!(m.per_class_recall[0].map(|s| s.mean), Some(1.0));
        let w = m.warnings(&names);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("no image of \"c\"") && w[0].contains("other classes only"), "{w:?}");
        assert!(m.per_class_text(&names).contains("c: recall - (no test image)"));
        // Half right on the two present classes: their mean, not a third of their sum.
        let m = Metrics::of(&[output(&[0, 1, 1, 1], 3)], &[0, 0, 1, 1], 3);
        assert_eq!(m.balanced_accuracy.mean, 0.75);
    }
}
