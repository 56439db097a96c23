//! The comparison of one column's reference and current values, thresholds
//! (defaults, then the monitor's, then the request's; a feature's own
//! threshold before the general one), and performance from feedback.

use std::collections::{BTreeSet, HashSet};

use pulse_proto::drift::v1::{DriftMetric, MetricValue, PerformanceDrift, Threshold};
use pulse_proto::trainer::v1::{Contract, EvaluationMetrics, FeatureType, Task};

use crate::columns::{Feedback, Kind, PREDICTION, Values};
use crate::error::DriftError;
use crate::stats::{self, StatsError};

/// Statistics settings of a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub bins: usize,
    pub psi_epsilon: f64,
}

/// The metrics of one column: numeric — PSI, KS statistic and p-value,
/// Jensen–Shannon (over reference-quantile bins) and Wasserstein;
/// categorical — PSI over the categories and the chi-square test of
/// homogeneity of the two samples' category counts
/// ([`stats::chi_square_homogeneity`], SciPy's `chi2_contingency`; a single
/// category gives statistic 0, p-value 1). Nothing when a side has no
/// values; a metric that is not a finite number is left out.
pub fn statistics(reference: Values, current: Values, o: Options) -> Result<Vec<(DriftMetric, f64)>, StatsError> {
    let out = match (reference, current) {
        (Values::Numeric(mut r), Values::Numeric(mut c)) => {
            if r.is_empty() || c.is_empty() {
                return Ok(Vec::new());
            }
            stats::sort_f64(&mut r);
            stats::sort_f64(&mut c);
            let (ks, wasserstein) = stats::ks_and_wasserstein(&r, &c)?;
            let edges = stats::quantile_edges(&r, o.bins)?;
            let (hr, hc) = (stats::histogram(&r, &edges)?, stats::histogram(&c, &edges)?);
            vec![
                (DriftMetric::Psi, stats::psi(&hr, &hc, o.psi_epsilon)?),
                (DriftMetric::KsStatistic, ks.statistic),
                (DriftMetric::KsPValue, ks.p_value),
                (DriftMetric::JensenShannon, stats::jensen_shannon(&hr, &hc)?),
                (DriftMetric::Wasserstein, wasserstein),
            ]
        }
        (Values::Categorical(r), Values::Categorical(c)) => {
            if r.is_empty() || c.is_empty() {
                return Ok(Vec::new());
            }
            let categories: BTreeSet<&String> = r.keys().chain(c.keys()).collect();
            let hr: Vec<u64> = categories.iter().map(|k| r.get(*k).copied().unwrap_or(0)).collect();
            let hc: Vec<u64> = categories.iter().map(|k| c.get(*k).copied().unwrap_or(0)).collect();
            let chi = stats::chi_square_homogeneity(&hr, &hc)?;
            vec![
                (DriftMetric::Psi, stats::psi(&hr, &hc, o.psi_epsilon)?),
                (DriftMetric::ChiSquareStatistic, chi.statistic),
                (DriftMetric::ChiSquarePValue, chi.p_value),
            ]
        }
        _ => Vec::new(),
    };
    Ok(out.into_iter().filter(|(_, v)| v.is_finite()).collect())
}

/// The gauge label of a distribution metric.
pub fn gauge_name(m: DriftMetric) -> Option<&'static str> {
    Some(match m {
        DriftMetric::Psi => "psi",
        DriftMetric::KsStatistic => "ks",
        DriftMetric::KsPValue => "ks_p_value",
        DriftMetric::JensenShannon => "js",
        DriftMetric::Wasserstein => "wasserstein",
        DriftMetric::ChiSquareStatistic => "chi2",
        DriftMetric::ChiSquarePValue => "chi2_p_value",
        _ => return None,
    })
}

pub fn metric_name(m: DriftMetric) -> &'static str {
    m.as_str_name().trim_start_matches("DRIFT_METRIC_")
}

/// Breach below the threshold (p-values), not above.
fn breaches_below(m: DriftMetric) -> bool {
    matches!(m, DriftMetric::KsPValue | DriftMetric::ChiSquarePValue)
}

/// Performance metrics whose drop (not rise) is a breach.
fn higher_is_better(m: DriftMetric) -> bool {
    matches!(m, DriftMetric::Accuracy | DriftMetric::F1 | DriftMetric::RocAuc)
}

fn is_performance(m: DriftMetric) -> bool {
    matches!(m, DriftMetric::Accuracy | DriftMetric::F1 | DriftMetric::RocAuc | DriftMetric::Rmse | DriftMetric::Mae)
}

/// The kind of column a distribution metric applies to (`None`: both, or a
/// performance metric).
fn applies_to(m: DriftMetric) -> Option<Kind> {
    match m {
        DriftMetric::KsStatistic | DriftMetric::KsPValue | DriftMetric::JensenShannon | DriftMetric::Wasserstein => {
            Some(Kind::Numeric)
        }
        DriftMetric::ChiSquareStatistic | DriftMetric::ChiSquarePValue => Some(Kind::Categorical),
        _ => None,
    }
}

/// How a contract feature is compared: bool and category are categorical.
pub fn feature_kind(t: i32) -> Kind {
    match FeatureType::try_from(t).unwrap_or_default() {
        FeatureType::Bool | FeatureType::Category => Kind::Categorical,
        FeatureType::Float | FeatureType::Int | FeatureType::Unspecified => Kind::Numeric,
    }
}

/// How the outputs are compared: the label of a classifier, the value of a
/// regression.
pub fn output_kind(contract: &Contract) -> Kind {
    if Task::try_from(contract.task).unwrap_or_default() == Task::Regression {
        Kind::Numeric
    } else {
        Kind::Categorical
    }
}

/// The defaults given with `DriftMetric`.
fn defaults() -> Vec<Threshold> {
    [
        (DriftMetric::Psi, 0.2),
        (DriftMetric::KsPValue, 0.05),
        (DriftMetric::JensenShannon, 0.1),
        (DriftMetric::ChiSquarePValue, 0.05),
        (DriftMetric::Accuracy, 0.05),
        (DriftMetric::F1, 0.05),
        (DriftMetric::RocAuc, 0.05),
    ]
    .into_iter()
    .map(|(m, value)| Threshold { metric: m as i32, feature: String::new(), value })
    .collect()
}

/// The thresholds of a check, layer by layer: the request's, the
/// monitor's, the defaults. Within a layer a feature's own threshold wins
/// over the general one.
#[derive(Debug, Clone)]
pub struct Thresholds {
    layers: Vec<Vec<Threshold>>,
}

impl Thresholds {
    pub fn new(request: &[Threshold], monitor: &[Threshold]) -> Self {
        Self { layers: vec![request.to_vec(), monitor.to_vec(), defaults()] }
    }

    pub fn get(&self, metric: DriftMetric, feature: &str) -> Option<f64> {
        let find = |layer: &[Threshold], f: &str| {
            layer.iter().find(|t| t.metric == metric as i32 && t.feature == f).map(|t| t.value)
        };
        self.layers.iter().find_map(|l| find(l, feature).or_else(|| find(l, "")))
    }

    /// A distribution metric's value, judged when `judge` (enough rows).
    pub fn judge(&self, metric: DriftMetric, feature: &str, value: f64, judge: bool) -> MetricValue {
        let threshold = if judge { self.get(metric, feature) } else { None };
        let breached = threshold.is_some_and(|t| if breaches_below(metric) { value < t } else { value > t });
        MetricValue { metric: metric as i32, value, threshold, breached, reference_value: None }
    }

    /// A performance metric against its reference: a drop (accuracy, F1,
    /// ROC AUC) or a rise (RMSE, MAE) beyond the threshold is a breach.
    pub fn judge_performance(&self, metric: DriftMetric, value: f64, reference: Option<f64>) -> MetricValue {
        let threshold = self.get(metric, "");
        let breached = match (threshold, reference) {
            (Some(t), Some(r)) => {
                let change = if higher_is_better(metric) { r - value } else { value - r };
                change > t
            }
            _ => false,
        };
        MetricValue { metric: metric as i32, value, threshold, breached, reference_value: reference }
    }
}

fn features_list(contract: &Contract) -> String {
    contract.features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// Checks thresholds against the model's contract; errors name the field,
/// e.g. `thresholds[1].value`.
pub fn check_thresholds(field: &str, thresholds: &[Threshold], contract: &Contract) -> Result<(), DriftError> {
    let task = Task::try_from(contract.task).unwrap_or_default();
    let mut seen = HashSet::new();
    for (i, t) in thresholds.iter().enumerate() {
        let at = |f: &str| format!("{field}[{i}].{f}");
        let metric = match DriftMetric::try_from(t.metric) {
            Ok(DriftMetric::Unspecified) => {
                return Err(DriftError::invalid(
                    at("metric"),
                    "is required: PSI, KS_STATISTIC, KS_P_VALUE, JENSEN_SHANNON, WASSERSTEIN, CHI_SQUARE_STATISTIC, \
                     CHI_SQUARE_P_VALUE, ACCURACY, F1, ROC_AUC, RMSE or MAE",
                ));
            }
            Ok(m) => m,
            Err(_) => return Err(DriftError::invalid(at("metric"), format!("{} is not a DriftMetric", t.metric))),
        };
        let name = metric_name(metric);
        let kind = if t.feature.is_empty() {
            None
        } else if t.feature == PREDICTION {
            Some(output_kind(contract))
        } else {
            match contract.features.iter().find(|f| f.name == t.feature) {
                Some(f) => Some(feature_kind(f.r#type)),
                None => {
                    return Err(DriftError::invalid(
                        at("feature"),
                        format!(
                            "'{}' is not a feature of model '{}' (features: {}; \"_prediction\" for the outputs)",
                            pulse_common::ids::truncate(&t.feature, 64),
                            contract.model,
                            features_list(contract)
                        ),
                    ));
                }
            }
        };
        if is_performance(metric) {
            if !t.feature.is_empty() {
                return Err(DriftError::invalid(
                    at("feature"),
                    format!("{name} is a performance metric of the model; leave feature empty"),
                ));
            }
            let regression = task == Task::Regression;
            if regression == higher_is_better(metric) {
                return Err(DriftError::invalid(
                    at("metric"),
                    format!(
                        "{name} does not apply to a {} model; use {}",
                        if regression { "regression" } else { "classification" },
                        if regression { "RMSE or MAE" } else { "ACCURACY, F1 or ROC_AUC" }
                    ),
                ));
            }
        }
        if let (Some(needs), Some(k)) = (applies_to(metric), kind)
            && needs != k
        {
            return Err(DriftError::invalid(
                at("metric"),
                format!(
                    "{name} applies to {} features; '{}' is {}",
                    if needs == Kind::Numeric { "numeric" } else { "categorical" },
                    t.feature,
                    if k == Kind::Numeric { "numeric" } else { "categorical" }
                ),
            ));
        }
        let v = t.value;
        if !v.is_finite() {
            return Err(DriftError::invalid(at("value"), format!("{v} is not a finite number")));
        }
        let bad = match metric {
            DriftMetric::KsPValue | DriftMetric::ChiSquarePValue => {
                (v <= 0.0 || v >= 1.0).then(|| format!("{v} is outside (0, 1): a {name} threshold is a p-value"))
            }
            DriftMetric::KsStatistic | DriftMetric::Accuracy | DriftMetric::F1 | DriftMetric::RocAuc => {
                (!(0.0..1.0).contains(&v)).then(|| format!("{v} is outside [0, 1)"))
            }
            DriftMetric::JensenShannon => (!(0.0..std::f64::consts::LN_2.sqrt()).contains(&v)).then(|| {
                format!(
                    "{v} is outside [0, {:.4}): the Jensen–Shannon distance is at most √ln 2",
                    std::f64::consts::LN_2.sqrt()
                )
            }),
            _ => (v < 0.0).then(|| format!("{v} is negative; {name} is never below 0")),
        };
        if let Some(reason) = bad {
            return Err(DriftError::invalid(at("value"), reason));
        }
        if !seen.insert((t.metric, t.feature.clone())) {
            return Err(DriftError::invalid(
                format!("{field}[{i}]"),
                format!(
                    "repeats the {name} threshold for {}",
                    if t.feature.is_empty() { "every feature".to_string() } else { format!("'{}'", t.feature) }
                ),
            ));
        }
    }
    Ok(())
}

/// Performance from feedback against the version's test metrics: accuracy,
/// F1 and (binary) ROC AUC, or RMSE and MAE. Below `min_feedback` records
/// only the count is given.
pub fn performance(
    feedback: &Feedback,
    reference: &EvaluationMetrics,
    min_feedback: u64,
    thresholds: &Thresholds,
) -> PerformanceDrift {
    let count = feedback.count();
    let mut out = PerformanceDrift { feedback_count: count, metrics: Vec::new(), drifted: false };
    if count == 0 || count < min_feedback {
        return out;
    }
    let current = match feedback {
        Feedback::Labels { predicted, probability, truth } => classification(reference, predicted, probability, truth),
        Feedback::Values { predicted, truth } => pulse_trainer::metrics::regression(truth, predicted),
    };
    let pairs = [
        (DriftMetric::Accuracy, current.accuracy, reference.accuracy),
        (DriftMetric::F1, current.f1, reference.f1),
        (DriftMetric::RocAuc, current.roc_auc, reference.roc_auc),
        (DriftMetric::Rmse, current.rmse, reference.rmse),
        (DriftMetric::Mae, current.mae, reference.mae),
    ];
    for (metric, value, reference) in pairs {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            out.metrics.push(thresholds.judge_performance(metric, v, reference));
        }
    }
    out.drifted = out.metrics.iter().any(|m| m.breached);
    out
}

/// Classification metrics of served labels against the truth. The log holds
/// the probability of the served label only: for a binary model the
/// positive class's probability is that or its complement (ROC AUC); for
/// more classes only the label counts (accuracy, macro F1).
fn classification(
    reference: &EvaluationMetrics,
    predicted: &[String],
    probability: &[f64],
    truth: &[String],
) -> EvaluationMetrics {
    // The model's classes in its order (the positive class second), from
    // its evaluation; else what the feedback shows.
    let mut classes: Vec<String> = reference.confusion_matrix.as_ref().map(|c| c.labels.clone()).unwrap_or_default();
    if classes.is_empty() {
        let seen: BTreeSet<&String> = predicted.iter().chain(truth).collect();
        classes = seen.into_iter().cloned().collect();
    }
    let k = classes.len();
    if k < 2 {
        return EvaluationMetrics::default();
    }
    let index = |l: &str| classes.iter().position(|c| c == l);
    let mut actual = Vec::with_capacity(truth.len());
    let mut probs = Vec::with_capacity(truth.len() * k);
    let mut binary_auc = k == 2;
    for ((p, q), t) in predicted.iter().zip(probability).zip(truth) {
        let (Some(pi), Some(ti)) = (index(p), index(t)) else { continue };
        actual.push(ti);
        let mut row = vec![0.0; k];
        if k == 2 && q.is_finite() {
            let positive = if pi == 1 { *q } else { 1.0 - *q };
            row[1] = positive;
            row[0] = 1.0 - positive;
            // The served label decides the class (ties included).
            if (pi == 1) != (row[1] > row[0]) {
                row[pi] = f64::from_bits(row[pi].to_bits() + 1);
            }
        } else {
            binary_auc = false;
            row[pi] = 1.0;
        }
        probs.extend(row);
    }
    let mut m = pulse_trainer::metrics::classification(&classes, &actual, &probs);
    if !binary_auc {
        m.roc_auc = None;
    }
    m
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use pulse_proto::trainer::v1::{ConfusionMatrix, Feature};

    use super::*;

    fn contract() -> Contract {
        Contract {
            model: "churn".into(),
            task: Task::BinaryClassification as i32,
            features: vec![
                Feature { name: "tenure".into(), r#type: FeatureType::Int as i32, ..Default::default() },
                Feature { name: "plan".into(), r#type: FeatureType::Category as i32, ..Default::default() },
            ],
            ..Default::default()
        }
    }

    fn t(metric: DriftMetric, feature: &str, value: f64) -> Threshold {
        Threshold { metric: metric as i32, feature: feature.into(), value }
    }

    #[test]
    fn thresholds_layer_and_specific_wins() {
        let monitor = [t(DriftMetric::Psi, "tenure", 0.3), t(DriftMetric::Wasserstein, "", 2.0)];
        let th = Thresholds::new(&[], &monitor);
        assert_eq!(th.get(DriftMetric::Psi, "tenure"), Some(0.3));
        assert_eq!(th.get(DriftMetric::Psi, "plan"), Some(0.2));
        assert_eq!(th.get(DriftMetric::Wasserstein, "tenure"), Some(2.0));
        assert_eq!(th.get(DriftMetric::KsStatistic, "tenure"), None);
        let th = Thresholds::new(&[t(DriftMetric::Psi, "", 0.5)], &monitor);
        assert_eq!(th.get(DriftMetric::Psi, "tenure"), Some(0.5), "the request overrides the monitor");
        let p = th.judge(DriftMetric::KsPValue, "tenure", 0.01, true);
        assert!(p.breached && p.threshold == Some(0.05));
        assert!(!th.judge(DriftMetric::KsPValue, "tenure", 0.01, false).breached);
        let acc = th.judge_performance(DriftMetric::Accuracy, 0.70, Some(0.80));
        assert!(acc.breached);
        assert!(!th.judge_performance(DriftMetric::Accuracy, 0.78, Some(0.80)).breached);
    }

    #[test]
    fn malformed_thresholds_are_named() {
        let c = contract();
        let err = |ts: &[Threshold]| match check_thresholds("thresholds", ts, &c) {
            Err(DriftError::Invalid { field, reason }) => format!("{field}: {reason}"),
            other => panic!("{other:?}"),
        };
        check_thresholds("thresholds", &[t(DriftMetric::Psi, "tenure", 0.1), t(DriftMetric::Psi, "", 0.3)], &c)
            .unwrap();
        assert!(err(&[t(DriftMetric::Unspecified, "", 0.1)]).starts_with("thresholds[0].metric"));
        assert!(
            err(&[t(DriftMetric::Psi, "", 0.1), t(DriftMetric::KsPValue, "", 1.5)]).starts_with("thresholds[1].value")
        );
        assert!(err(&[t(DriftMetric::Psi, "", f64::NAN)]).starts_with("thresholds[0].value"));
        assert!(err(&[t(DriftMetric::Psi, "", -0.1)]).starts_with("thresholds[0].value"));
        assert!(err(&[t(DriftMetric::Psi, "colour", 0.1)]).starts_with("thresholds[0].feature"));
        assert!(err(&[t(DriftMetric::KsStatistic, "plan", 0.1)]).starts_with("thresholds[0].metric"));
        assert!(err(&[t(DriftMetric::Rmse, "", 0.1)]).starts_with("thresholds[0].metric"));
        assert!(err(&[t(DriftMetric::Accuracy, "tenure", 0.1)]).starts_with("thresholds[0].feature"));
        assert!(err(&[t(DriftMetric::Psi, "", 0.1), t(DriftMetric::Psi, "", 0.2)]).starts_with("thresholds[1]:"));
        check_thresholds("t", &[t(DriftMetric::ChiSquarePValue, PREDICTION, 0.01)], &c).unwrap();
    }

    #[test]
    fn columns_compare() {
        let o = Options { bins: 10, psi_epsilon: 1e-4 };
        let r: Vec<f64> = (0..1000).map(|i| (i % 100) as f64).collect();
        let same = statistics(Values::Numeric(r.clone()), Values::Numeric(r.clone()), o).unwrap();
        let get = |v: &[(DriftMetric, f64)], m| v.iter().find(|(k, _)| *k == m).unwrap().1;
        assert_eq!(get(&same, DriftMetric::Psi), 0.0);
        assert_eq!(get(&same, DriftMetric::KsPValue), 1.0);
        let shifted: Vec<f64> = r.iter().map(|x| x + 30.0).collect();
        let moved = statistics(Values::Numeric(r), Values::Numeric(shifted), o).unwrap();
        assert!((get(&moved, DriftMetric::Wasserstein) - 30.0).abs() < 1e-9);
        assert!(get(&moved, DriftMetric::Psi) > 0.2);
        assert!(statistics(Values::Numeric(vec![]), Values::Numeric(vec![1.0]), o).unwrap().is_empty());
        let a = BTreeMap::from([("basic".to_string(), 50u64), ("pro".to_string(), 50)]);
        let b = BTreeMap::from([("basic".to_string(), 90u64), ("gold".to_string(), 10)]);
        let cat = statistics(Values::Categorical(a), Values::Categorical(b), o).unwrap();
        assert!(get(&cat, DriftMetric::ChiSquarePValue) < 0.05);
        assert_eq!(cat.len(), 3);
    }

    #[test]
    fn binary_performance_from_served_labels() {
        let reference = EvaluationMetrics {
            accuracy: Some(0.9),
            f1: Some(0.9),
            roc_auc: Some(0.95),
            confusion_matrix: Some(ConfusionMatrix { labels: vec!["false".into(), "true".into()], counts: vec![] }),
            ..Default::default()
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let feedback = Feedback::Labels {
            predicted: s(&["true", "false", "true", "false"]),
            probability: vec![0.9, 0.8, 0.6, 0.7],
            truth: s(&["true", "false", "false", "true"]),
        };
        let p = performance(&feedback, &reference, 2, &Thresholds::new(&[], &[]));
        let get = |m: DriftMetric| *p.metrics.iter().find(|x| x.metric == m as i32).unwrap();
        assert_eq!(get(DriftMetric::Accuracy).value, 0.5);
        // P(true): 0.9, 0.2, 0.6, 0.3 for truths t, f, f, t: 3 of 4 pairs ordered.
        assert_eq!(get(DriftMetric::RocAuc).value, 0.75);
        assert!(p.drifted && get(DriftMetric::Accuracy).reference_value == Some(0.9));
        assert!(performance(&feedback, &reference, 5, &Thresholds::new(&[], &[])).metrics.is_empty());
    }
}
