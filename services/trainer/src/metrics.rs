//! Evaluation metrics on a held-out split, and the metric names contracts
//! and promotion gates refer to.
//!
//! Conventions follow scikit-learn where it has one: precision, recall and
//! F1 are 0 when undefined (`zero_division=0`); multiclass precision, recall
//! and F1 are macro averages over every label; multiclass ROC AUC is the
//! one-vs-rest macro average; R² of a constant target is 1 for a perfect fit
//! and 0 otherwise.

use pulse_proto::trainer::v1 as pb;
use pulse_proto::trainer::v1::Task;

/// Every metric a contract may name, as in [`pb::EvaluationMetrics`].
pub const METRIC_NAMES: [&str; 9] =
    ["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2"];

/// Probabilities are clipped to this before the logarithm, so a confident
/// wrong answer costs ln(1e15) ≈ 34.5 rather than infinity.
const LOG_LOSS_EPS: f64 = 1e-15;

/// Error metrics: smaller is better (the gates flip their comparison).
pub fn lower_is_better(name: &str) -> bool {
    matches!(name, "log_loss" | "rmse" | "mae")
}

/// Whether the metric is computed for the task.
pub fn metric_fits_task(name: &str, task: Task) -> bool {
    match task {
        Task::BinaryClassification | Task::MulticlassClassification => {
            matches!(name, "accuracy" | "precision" | "recall" | "f1" | "roc_auc" | "log_loss")
        }
        Task::Regression => matches!(name, "rmse" | "mae" | "r2"),
        Task::Unspecified => false,
    }
}

/// The metric by name; `None` for an unknown name or a metric not set.
pub fn value(m: &pb::EvaluationMetrics, name: &str) -> Option<f64> {
    match name {
        "accuracy" => m.accuracy,
        "precision" => m.precision,
        "recall" => m.recall,
        "f1" => m.f1,
        "roc_auc" => m.roc_auc,
        "log_loss" => m.log_loss,
        "rmse" => m.rmse,
        "mae" => m.mae,
        "r2" => m.r2,
        _ => None,
    }
}

/// Classification metrics. `probs` is row-major n×k with k = `labels.len()`
/// (at least 2) and `actual[i] < k`. The predicted class is the argmax, ties
/// going to the lowest index. Binary precision, recall and F1 are those of
/// the positive class (index 1).
///
/// Malformed input never panics: rows beyond the shorter of `actual` and
/// `probs` and rows with an out-of-range class are left out.
pub fn classification(labels: &[String], actual: &[usize], probs: &[f64]) -> pb::EvaluationMetrics {
    let k = labels.len();
    let rows: Vec<(usize, &[f64])> = if k == 0 {
        Vec::new()
    } else {
        actual.iter().copied().zip(probs.chunks_exact(k)).filter(|(a, _)| *a < k).collect()
    };
    let n = rows.len();

    let mut counts = vec![0u64; k * k];
    for (a, p) in &rows {
        counts[a * k + argmax(p)] += 1;
    }
    let per_class: Vec<pb::ClassMetrics> = (0..k)
        .map(|c| {
            let tp = counts[c * k + c];
            let support: u64 = counts[c * k..(c + 1) * k].iter().sum();
            let predicted: u64 = (0..k).map(|r| counts[r * k + c]).sum();
            pb::ClassMetrics {
                label: labels[c].clone(),
                precision: ratio(tp, predicted),
                recall: ratio(tp, support),
                // 2tp / (2tp + fp + fn), which is 0 rather than undefined
                // when the class is never predicted.
                f1: ratio(2 * tp, predicted + support),
                support,
            }
        })
        .collect();

    let mut m = pb::EvaluationMetrics {
        samples: n as u64,
        confusion_matrix: Some(pb::ConfusionMatrix { labels: labels.to_vec(), counts: counts.clone() }),
        per_class,
        ..Default::default()
    };
    if n == 0 || k < 2 {
        return m;
    }

    let correct: u64 = (0..k).map(|c| counts[c * k + c]).sum();
    m.accuracy = Some(correct as f64 / n as f64);
    if k == 2 {
        let positive = &m.per_class[1];
        m.precision = Some(positive.precision);
        m.recall = Some(positive.recall);
        m.f1 = Some(positive.f1);
    } else {
        let mean = |f: fn(&pb::ClassMetrics) -> f64| m.per_class.iter().map(f).sum::<f64>() / k as f64;
        m.precision = Some(mean(|c| c.precision));
        m.recall = Some(mean(|c| c.recall));
        m.f1 = Some(mean(|c| c.f1));
    }

    let auc_for = |c: usize| {
        let scores: Vec<f64> = rows.iter().map(|(_, p)| p[c]).collect();
        let positive: Vec<bool> = rows.iter().map(|(a, _)| *a == c).collect();
        auc(&scores, &positive)
    };
    m.roc_auc = if k == 2 {
        auc_for(1)
    } else {
        (0..k).map(auc_for).collect::<Option<Vec<f64>>>().map(|v| v.iter().sum::<f64>() / k as f64)
    };

    let loss: f64 = rows.iter().map(|(a, p)| -p[*a].max(LOG_LOSS_EPS).ln()).sum();
    m.log_loss = Some(loss / n as f64);
    m
}

/// Regression metrics over the pairs of `actual` and `predicted` (the
/// longer slice's extra values are left out).
pub fn regression(actual: &[f64], predicted: &[f64]) -> pb::EvaluationMetrics {
    let n = actual.len().min(predicted.len());
    let mut m = pb::EvaluationMetrics { samples: n as u64, ..Default::default() };
    if n == 0 {
        return m;
    }
    let (actual, predicted) = (&actual[..n], &predicted[..n]);
    let mean = actual.iter().sum::<f64>() / n as f64;
    let ss_res: f64 = actual.iter().zip(predicted).map(|(a, p)| (a - p) * (a - p)).sum();
    let ss_tot: f64 = actual.iter().map(|a| (a - mean) * (a - mean)).sum();
    let abs: f64 = actual.iter().zip(predicted).map(|(a, p)| (a - p).abs()).sum();
    m.rmse = Some((ss_res / n as f64).sqrt());
    m.mae = Some(abs / n as f64);
    m.r2 = Some(if ss_tot == 0.0 { if ss_res == 0.0 { 1.0 } else { 0.0 } } else { 1.0 - ss_res / ss_tot });
    m
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

/// Index of the largest probability; ties go to the lowest index and NaN
/// never wins over a number.
fn argmax(p: &[f64]) -> usize {
    let key = |x: f64| if x.is_nan() { f64::NEG_INFINITY } else { x };
    p.iter().enumerate().fold(0, |best, (j, x)| if key(*x) > key(p[best]) { j } else { best })
}

/// Area under the ROC curve by the Mann–Whitney statistic, tied scores
/// sharing their average rank (so a tie between a positive and a negative
/// counts one half). `None` without both positives and negatives.
fn auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let pos = positive.iter().filter(|p| **p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]].total_cmp(&scores[order[i]]).is_eq() {
            j += 1;
        }
        // Ranks i+1 ..= j+1 (1-based), averaged over the tie group.
        let rank = (i + j + 2) as f64 / 2.0;
        rank_sum += rank * order[i..=j].iter().filter(|r| positive[**r]).count() as f64;
        i = j + 1;
    }
    let (pos, neg) = (pos as f64, neg as f64);
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// Binary probabilities from scores of the positive class.
    fn binary_probs(scores: &[f64]) -> Vec<f64> {
        scores.iter().flat_map(|s| [1.0 - s, *s]).collect()
    }

    /// AUC by counting pairs, for cross-checking the rank formula.
    fn pairwise_auc(scores: &[f64], positive: &[bool]) -> f64 {
        let (mut sum, mut pairs) = (0.0, 0.0);
        for (i, si) in scores.iter().enumerate() {
            for (j, sj) in scores.iter().enumerate() {
                if positive[i] && !positive[j] {
                    pairs += 1.0;
                    sum += if si > sj {
                        1.0
                    } else if si == sj {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        sum / pairs
    }

    #[test]
    fn binary_auc_with_a_tie() {
        // Positives score 0.5 and 0.5, negatives 0.5 and 0.1: each positive
        // beats 0.1 and ties 0.5, so AUC = (1.5 + 1.5) / 4 = 0.75.
        let m = classification(&labels(&["no", "yes"]), &[1, 1, 0, 0], &binary_probs(&[0.5, 0.5, 0.5, 0.1]));
        assert!(close(m.roc_auc.unwrap(), 0.75), "{:?}", m.roc_auc);
    }

    #[test]
    fn binary_auc_matches_the_classic_example() {
        // scikit-learn's roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75.
        let m = classification(&labels(&["0", "1"]), &[0, 0, 1, 1], &binary_probs(&[0.1, 0.4, 0.35, 0.8]));
        assert!(close(m.roc_auc.unwrap(), 0.75));
    }

    #[test]
    fn rank_auc_agrees_with_pair_counting() {
        let scores = [0.3, 0.3, 0.9, 0.1, 0.5, 0.5, 0.5, 0.7, 0.2, 0.9, 0.0, 0.3];
        let positive = [true, false, true, false, true, false, false, true, false, false, false, true];
        let expected = pairwise_auc(&scores, &positive);
        assert!(close(auc(&scores, &positive).unwrap(), expected));
        assert!(expected != 0.5 && expected != 1.0);
    }

    #[test]
    fn auc_is_none_without_both_classes() {
        let m = classification(&labels(&["no", "yes"]), &[1, 1, 1], &binary_probs(&[0.2, 0.9, 0.6]));
        assert_eq!(m.roc_auc, None);
        // The other metrics are still there.
        assert!(close(m.accuracy.unwrap(), 2.0 / 3.0));
    }

    #[test]
    fn binary_precision_recall_f1_of_the_positive_class() {
        // actual:    1 1 1 0 0 0 0
        // predicted: 1 1 0 1 0 0 0  → tp 2, fp 1, fn 1, tn 3
        let actual = [1, 1, 1, 0, 0, 0, 0];
        let scores = [0.9, 0.8, 0.2, 0.7, 0.1, 0.3, 0.4];
        let m = classification(&labels(&["neg", "pos"]), &actual, &binary_probs(&scores));
        assert_eq!(m.samples, 7);
        assert!(close(m.accuracy.unwrap(), 5.0 / 7.0));
        assert!(close(m.precision.unwrap(), 2.0 / 3.0));
        assert!(close(m.recall.unwrap(), 2.0 / 3.0));
        assert!(close(m.f1.unwrap(), 2.0 / 3.0));
        let cm = m.confusion_matrix.unwrap();
        assert_eq!(cm.labels, labels(&["neg", "pos"]));
        assert_eq!(cm.counts, vec![3, 1, 1, 2]);
        assert_eq!(m.per_class[0].support, 4);
        assert!(close(m.per_class[0].precision, 3.0 / 4.0));
        assert!(close(m.per_class[0].recall, 3.0 / 4.0));
    }

    #[test]
    fn three_class_confusion_matrix_and_macro_averages() {
        let names = labels(&["a", "b", "c"]);
        // actual → predicted: a→a, a→b, b→b, b→b, c→a, c→c
        let actual = [0, 0, 1, 1, 2, 2];
        #[rustfmt::skip]
        let probs = [
            0.7, 0.2, 0.1,
            0.3, 0.6, 0.1,
            0.1, 0.8, 0.1,
            0.2, 0.5, 0.3,
            0.5, 0.1, 0.4,
            0.1, 0.2, 0.7,
        ];
        let m = classification(&names, &actual, &probs);
        let cm = m.confusion_matrix.as_ref().unwrap();
        assert_eq!(cm.counts, vec![1, 1, 0, 0, 2, 0, 1, 0, 1]);
        assert!(close(m.accuracy.unwrap(), 4.0 / 6.0));
        // precision a 1/2, b 2/3, c 1/1; recall a 1/2, b 1, c 1/2
        let p = [0.5, 2.0 / 3.0, 1.0];
        let r = [0.5, 1.0, 0.5];
        let f: Vec<f64> = (0..3).map(|i| 2.0 * p[i] * r[i] / (p[i] + r[i])).collect();
        for i in 0..3 {
            assert!(close(m.per_class[i].precision, p[i]), "precision {i}");
            assert!(close(m.per_class[i].recall, r[i]), "recall {i}");
            assert!(close(m.per_class[i].f1, f[i]), "f1 {i}");
            assert_eq!(m.per_class[i].support, 2);
        }
        assert!(close(m.precision.unwrap(), p.iter().sum::<f64>() / 3.0));
        assert!(close(m.recall.unwrap(), r.iter().sum::<f64>() / 3.0));
        assert!(close(m.f1.unwrap(), f.iter().sum::<f64>() / 3.0));

        // One-vs-rest AUCs, checked by pair counting.
        let expected: f64 = (0..3)
            .map(|c| {
                let s: Vec<f64> = (0..6).map(|i| probs[i * 3 + c]).collect();
                let pos: Vec<bool> = actual.iter().map(|a| *a == c).collect();
                pairwise_auc(&s, &pos)
            })
            .sum::<f64>()
            / 3.0;
        assert!(close(m.roc_auc.unwrap(), expected));

        let loss = -(0.7f64.ln() + 0.3f64.ln() + 0.8f64.ln() + 0.5f64.ln() + 0.4f64.ln() + 0.7f64.ln()) / 6.0;
        assert!(close(m.log_loss.unwrap(), loss));
    }

    #[test]
    fn multiclass_auc_is_none_when_a_class_is_absent() {
        let probs = [0.6, 0.3, 0.1, 0.2, 0.7, 0.1];
        let m = classification(&labels(&["a", "b", "c"]), &[0, 1], &probs);
        assert_eq!(m.roc_auc, None);
    }

    #[test]
    fn undefined_precision_is_zero() {
        // Class "c" is never predicted and never occurs.
        let probs = [0.6, 0.3, 0.1, 0.2, 0.7, 0.1];
        let m = classification(&labels(&["a", "b", "c"]), &[0, 1], &probs);
        let c = &m.per_class[2];
        assert_eq!((c.precision, c.recall, c.f1, c.support), (0.0, 0.0, 0.0, 0));
        // Macro averages include it.
        assert!(close(m.precision.unwrap(), 2.0 / 3.0));

        // Binary: the positive class never predicted.
        let m = classification(&labels(&["n", "y"]), &[0, 1], &binary_probs(&[0.1, 0.2]));
        assert_eq!((m.precision, m.recall, m.f1), (Some(0.0), Some(0.0), Some(0.0)));
    }

    #[test]
    fn argmax_ties_go_to_the_lowest_index() {
        assert_eq!(argmax(&[0.5, 0.5]), 0);
        assert_eq!(argmax(&[0.2, 0.4, 0.4]), 1);
        assert_eq!(argmax(&[f64::NAN, 0.1]), 1);
        let m = classification(&labels(&["n", "y"]), &[1], &[0.5, 0.5]);
        assert_eq!(m.confusion_matrix.unwrap().counts, vec![0, 0, 1, 0]);
    }

    #[test]
    fn log_loss_clips_zero_probabilities() {
        let m = classification(&labels(&["n", "y"]), &[1, 0], &[1.0, 0.0, 1.0, 0.0]);
        let expected = (-(1e-15f64).ln() + 0.0) / 2.0;
        assert!(close(m.log_loss.unwrap(), expected));
        assert!(m.log_loss.unwrap().is_finite());
    }

    #[test]
    fn empty_and_malformed_input_do_not_panic() {
        let m = classification(&labels(&["n", "y"]), &[], &[]);
        assert_eq!(m.samples, 0);
        assert_eq!((m.accuracy, m.roc_auc, m.log_loss), (None, None, None));
        assert_eq!(m.confusion_matrix.unwrap().counts, vec![0; 4]);

        // A class out of range and a missing probability row are left out.
        let m = classification(&labels(&["n", "y"]), &[5, 1, 0], &[0.2, 0.8, 0.1, 0.9]);
        assert_eq!(m.samples, 1);
        assert_eq!(m.accuracy, Some(1.0));

        let m = classification(&[], &[0], &[1.0]);
        assert_eq!(m.samples, 0);
    }

    #[test]
    fn regression_on_a_known_fit() {
        let actual = [3.0, -0.5, 2.0, 7.0];
        let predicted = [2.5, 0.0, 2.0, 8.0];
        let m = regression(&actual, &predicted);
        assert_eq!(m.samples, 4);
        // scikit-learn: mean_absolute_error 0.5, mean_squared_error 0.375,
        // r2_score 0.9486081370449679.
        assert!(close(m.mae.unwrap(), 0.5));
        assert!(close(m.rmse.unwrap(), 0.375f64.sqrt()));
        assert!(close(m.r2.unwrap(), 0.948_608_137_044_967_9));
        assert_eq!(m.accuracy, None);
    }

    #[test]
    fn r2_of_a_constant_target() {
        assert_eq!(regression(&[2.0, 2.0], &[2.0, 2.0]).r2, Some(1.0));
        assert_eq!(regression(&[2.0, 2.0], &[2.0, 3.0]).r2, Some(0.0));
        let m = regression(&[], &[]);
        assert_eq!((m.samples, m.rmse, m.r2), (0, None, None));
    }

    #[test]
    fn r2_can_be_negative() {
        // Predicting far off: SS_res 16 + 16 = 32 against SS_tot 2.
        let m = regression(&[1.0, 3.0], &[5.0, -1.0]);
        assert!(close(m.r2.unwrap(), 1.0 - 32.0 / 2.0));
    }

    #[test]
    fn value_by_name_and_directions() {
        let m = pb::EvaluationMetrics {
            accuracy: Some(0.1),
            precision: Some(0.2),
            recall: Some(0.3),
            f1: Some(0.4),
            roc_auc: Some(0.5),
            log_loss: Some(0.6),
            rmse: Some(0.7),
            mae: Some(0.8),
            r2: Some(0.9),
            ..Default::default()
        };
        let got: Vec<f64> = METRIC_NAMES.iter().map(|n| value(&m, n).unwrap()).collect();
        assert_eq!(got, vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
        assert_eq!(value(&m, "auc"), None);
        assert_eq!(value(&pb::EvaluationMetrics::default(), "rmse"), None);

        let lower: Vec<&str> = METRIC_NAMES.iter().copied().filter(|n| lower_is_better(n)).collect();
        assert_eq!(lower, vec!["log_loss", "rmse", "mae"]);
    }

    #[test]
    fn metrics_fit_their_task() {
        for name in METRIC_NAMES {
            let regression = matches!(name, "rmse" | "mae" | "r2");
            assert_eq!(metric_fits_task(name, Task::Regression), regression, "{name}");
            assert_eq!(metric_fits_task(name, Task::BinaryClassification), !regression, "{name}");
            assert_eq!(metric_fits_task(name, Task::MulticlassClassification), !regression, "{name}");
            assert!(!metric_fits_task(name, Task::Unspecified));
        }
        assert!(!metric_fits_task("auc", Task::BinaryClassification));
    }
}
