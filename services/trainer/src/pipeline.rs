//! The feature pipeline: fitted on the training split only (imputation
//! values, standardisation, category vocabularies), stored in the model
//! artifact, and applied identically at evaluation and inference. Also the
//! target's encoding and the deterministic train / validation / test split.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType as ArrowType, Float64Type};
use arrow::record_batch::RecordBatch;
use pulse_proto::trainer::v1 as pb;
use pulse_proto::trainer::v1::{FeatureType, Imputation, NonFinitePolicy, Task};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::contract::label_text;
use crate::error::TrainerError;

/// The bucket of a category value seen in no training row.
pub const UNKNOWN: &str = "__unknown__";
/// The bucket of null categories under `impute: missing_category`.
pub const MISSING: &str = "__missing__";

#[derive(Clone, PartialEq, prost::Message)]
pub struct FeatureTransform {
    #[prost(string, tag = "1")]
    pub name: String,
    /// `FeatureType`.
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// Numeric: the fill for nulls, then `(x - mean) / std`.
    #[prost(double, tag = "3")]
    pub fill: f64,
    #[prost(double, tag = "4")]
    pub mean: f64,
    #[prost(double, tag = "5")]
    pub std: f64,
    #[prost(bool, tag = "6")]
    pub non_finite_as_null: bool,
    /// Category: the one-hot columns, in order (vocabulary, then unknown,
    /// then missing when used); the fill for nulls when not the missing
    /// bucket. Bool: fill is "true" or "false".
    #[prost(string, repeated, tag = "7")]
    pub categories: Vec<String>,
    #[prost(string, tag = "8")]
    pub fill_category: String,
}

impl FeatureTransform {
    fn width(&self) -> usize {
        match FeatureType::try_from(self.kind) {
            Ok(FeatureType::Category) => self.categories.len(),
            _ => 1,
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FeaturePipeline {
    #[prost(message, repeated, tag = "1")]
    pub features: Vec<FeatureTransform>,
    /// Classification: the class labels in output order.
    #[prost(string, repeated, tag = "2")]
    pub classes: Vec<String>,
    /// Regression: the target's standardisation.
    #[prost(double, tag = "3")]
    pub target_mean: f64,
    #[prost(double, tag = "4")]
    pub target_std: f64,
    #[prost(string, tag = "5")]
    pub target: String,
}

impl FeaturePipeline {
    /// Input width of the model.
    pub fn width(&self) -> usize {
        self.features.iter().map(FeatureTransform::width).sum()
    }

    /// The model's input columns' names (`plan=pro`, `tenure`).
    pub fn column_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for f in &self.features {
            if f.kind == FeatureType::Category as i32 {
                out.extend(f.categories.iter().map(|c| format!("{}={c}", f.name)));
            } else {
                out.push(f.name.clone());
            }
        }
        out
    }
}

/// One column of the rows, read once: numbers as f64 (None for null), or
/// text labels.
#[derive(Debug, Clone)]
pub enum ColumnValues {
    Numbers(Vec<Option<f64>>),
    Labels(Vec<Option<String>>),
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array, TrainerError> {
    batch.column_by_name(name).map(|a| a.as_ref()).ok_or_else(|| {
        TrainerError::Precondition(format!("column '{name}' is missing from the data; check the contract's features"))
    })
}

/// Reads a column of every batch as numbers.
pub fn numbers(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<f64>>, TrainerError> {
    let mut out = Vec::new();
    for b in batches {
        let a = column(b, name)?;
        if a.data_type() == &ArrowType::Boolean {
            let bools = a.as_boolean();
            out.extend((0..a.len()).map(|i| bools.is_valid(i).then(|| f64::from(u8::from(bools.value(i))))));
            continue;
        }
        let f = cast(a, &ArrowType::Float64)?;
        let f = f.as_primitive::<Float64Type>();
        out.extend((0..f.len()).map(|i| f.is_valid(i).then(|| f.value(i))));
    }
    Ok(out)
}

/// Reads a column of every batch as labels.
pub fn labels(batches: &[RecordBatch], name: &str) -> Result<Vec<Option<String>>, TrainerError> {
    let mut out = Vec::new();
    for b in batches {
        let a = column(b, name)?;
        out.extend((0..a.len()).map(|i| label_text(a, i)));
    }
    Ok(out)
}

fn mean_std(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (mut n, mut sum) = (0usize, 0.0f64);
    for v in values.clone() {
        n += 1;
        sum += v;
    }
    if n == 0 {
        return (0.0, 1.0);
    }
    let mean = sum / n as f64;
    let var = values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    let std = var.sqrt();
    (mean, if std > 1e-12 { std } else { 1.0 })
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn mode<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    // Ties go to the smallest label: deterministic.
    counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(k, _)| k.to_string())
}

fn clean(v: Option<f64>, as_null: bool) -> Option<f64> {
    match v {
        Some(x) if !x.is_finite() && as_null => None,
        other => other,
    }
}

/// Fits the pipeline on the rows of `train` (indices into the columns).
pub fn fit(contract: &pb::Contract, data: &[RecordBatch], train: &[usize]) -> Result<FeaturePipeline, TrainerError> {
    let mut features = Vec::new();
    for f in &contract.features {
        let kind = FeatureType::try_from(f.r#type).unwrap_or(FeatureType::Unspecified);
        let impute = Imputation::try_from(f.impute).unwrap_or(Imputation::Unspecified);
        let mut t = FeatureTransform { name: f.name.clone(), kind: kind as i32, std: 1.0, ..Default::default() };
        match kind {
            FeatureType::Float | FeatureType::Int => {
                t.non_finite_as_null = f.non_finite == NonFinitePolicy::AsNull as i32;
                let col = numbers(data, &f.name)?;
                let present: Vec<f64> = train
                    .iter()
                    .filter_map(|&i| clean(col[i], t.non_finite_as_null))
                    .filter(|x| x.is_finite())
                    .collect();
                t.fill = match impute {
                    Imputation::Median => median(present.clone()),
                    Imputation::Constant => f.fill_value.trim().parse().map_err(|_| {
                        TrainerError::Precondition(format!(
                            "feature '{}': fill_value '{}' is not a number",
                            f.name, f.fill_value
                        ))
                    })?,
                    Imputation::Mode => {
                        let texts: Vec<String> = present.iter().map(|x| x.to_string()).collect();
                        mode(texts.iter().map(String::as_str)).and_then(|m| m.parse().ok()).unwrap_or(0.0)
                    }
                    _ => mean_std(present.iter().copied()).0,
                };
                let filled = train.iter().map(|&i| clean(col[i], t.non_finite_as_null).unwrap_or(t.fill));
                let (mean, std) = mean_std(filled);
                (t.mean, t.std) = (mean, std);
            }
            FeatureType::Bool => {
                let col = labels(data, &f.name)?;
                t.fill_category = match impute {
                    Imputation::Constant => f.fill_value.trim().to_ascii_lowercase(),
                    _ => mode(train.iter().filter_map(|&i| col[i].as_deref())).unwrap_or_else(|| "false".into()),
                };
            }
            FeatureType::Category => {
                let col = labels(data, &f.name)?;
                let vocab: Vec<String> = if f.categories.is_empty() {
                    train.iter().filter_map(|&i| col[i].clone()).collect::<BTreeSet<_>>().into_iter().collect()
                } else {
                    f.categories.clone()
                };
                t.categories = vocab;
                t.categories.push(UNKNOWN.into());
                match impute {
                    Imputation::MissingCategory => {
                        t.categories.push(MISSING.into());
                        t.fill_category = MISSING.into();
                    }
                    Imputation::Constant => t.fill_category = f.fill_value.trim().to_string(),
                    _ => {
                        t.fill_category =
                            mode(train.iter().filter_map(|&i| col[i].as_deref())).unwrap_or_else(|| UNKNOWN.into())
                    }
                }
            }
            FeatureType::Unspecified => {
                return Err(TrainerError::Precondition(format!("feature '{}' has no type", f.name)));
            }
        }
        features.push(t);
    }
    let target = contract.target.clone().unwrap_or_default();
    let task = Task::try_from(contract.task).unwrap_or(Task::Unspecified);
    let mut p = FeaturePipeline { features, target: target.name.clone(), target_std: 1.0, ..Default::default() };
    if task == Task::Regression {
        let y = numbers(data, &target.name)?;
        let (m, s) = mean_std(train.iter().filter_map(|&i| y[i]));
        (p.target_mean, p.target_std) = (m, s);
    } else {
        p.classes = if target.classes.is_empty() {
            sorted_classes(&labels(data, &target.name)?, train)
        } else {
            target.classes.clone()
        };
    }
    Ok(p)
}

/// The distinct labels of the training rows: numerically when they are all
/// numbers, else lexically.
fn sorted_classes(labels: &[Option<String>], rows: &[usize]) -> Vec<String> {
    let set: BTreeSet<String> = rows.iter().filter_map(|&i| labels[i].clone()).collect();
    let mut v: Vec<String> = set.into_iter().collect();
    if v.iter().all(|s| s.parse::<f64>().is_ok()) {
        v.sort_by(|a, b| a.parse::<f64>().unwrap_or(0.0).total_cmp(&b.parse::<f64>().unwrap_or(0.0)));
    }
    v
}

/// Applies the pipeline to every row of `data` (all of them, in order).
/// Nulls in columns the pipeline cannot fill are refused naming the row.
pub fn transform(p: &FeaturePipeline, data: &[RecordBatch]) -> Result<(Vec<f32>, usize), TrainerError> {
    let rows: usize = data.iter().map(RecordBatch::num_rows).sum();
    let width = p.width();
    let mut x = vec![0.0f32; rows * width];
    let mut offset = 0;
    for t in &p.features {
        match FeatureType::try_from(t.kind).unwrap_or(FeatureType::Unspecified) {
            FeatureType::Float | FeatureType::Int => {
                for (r, v) in numbers(data, &t.name)?.into_iter().enumerate() {
                    let v = clean(v, t.non_finite_as_null).unwrap_or(t.fill);
                    if !v.is_finite() {
                        return Err(TrainerError::invalid(
                            t.name.clone(),
                            format!("row {r} is {v}; the contract refuses non-finite values"),
                        ));
                    }
                    x[r * width + offset] = ((v - t.mean) / t.std) as f32;
                }
            }
            FeatureType::Bool => {
                for (r, v) in labels(data, &t.name)?.into_iter().enumerate() {
                    let v = v.unwrap_or_else(|| t.fill_category.clone());
                    x[r * width + offset] = if v == "true" || v == "1" { 1.0 } else { 0.0 };
                }
            }
            FeatureType::Category => {
                let index: BTreeMap<&str, usize> =
                    t.categories.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
                let unknown = index.get(UNKNOWN).copied().unwrap_or(0);
                for (r, v) in labels(data, &t.name)?.into_iter().enumerate() {
                    let v = v.unwrap_or_else(|| t.fill_category.clone());
                    let k = index.get(v.as_str()).copied().unwrap_or(unknown);
                    x[r * width + offset + k] = 1.0;
                }
            }
            FeatureType::Unspecified => {}
        }
        offset += t.width();
    }
    Ok((x, rows))
}

/// The target of every row: class indices (classification) or standardised
/// values (regression). A label outside the classes is refused.
pub fn encode_target(p: &FeaturePipeline, task: Task, data: &[RecordBatch]) -> Result<Vec<f32>, TrainerError> {
    if task == Task::Regression {
        return numbers(data, &p.target)?
            .into_iter()
            .enumerate()
            .map(|(r, v)| match v {
                Some(v) if v.is_finite() => Ok(((v - p.target_mean) / p.target_std) as f32),
                _ => Err(TrainerError::Precondition(format!("target '{}' is null or not finite at row {r}", p.target))),
            })
            .collect();
    }
    let index: BTreeMap<&str, usize> = p.classes.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
    labels(data, &p.target)?
        .into_iter()
        .enumerate()
        .map(|(r, v)| match v.as_deref().and_then(|l| index.get(l)) {
            Some(i) => Ok(*i as f32),
            None => Err(TrainerError::Precondition(format!(
                "target '{}' at row {r} is {}, not one of the classes {}",
                p.target,
                v.as_deref().unwrap_or("null"),
                p.classes.join(", ")
            ))),
        })
        .collect()
}

/// Row indices of the train, validation and test splits: shuffled by seed,
/// per class when stratified, so each split keeps the class proportions.
pub fn split(
    rows: usize,
    strata: Option<&[Option<String>]>,
    fractions: (f64, f64, f64),
    seed: u64,
) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for r in 0..rows {
        let key = strata.and_then(|s| s[r].clone()).unwrap_or_default();
        groups.entry(key).or_default().push(r);
    }
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (_, mut idx)) in groups.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(seed ^ (i as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f));
        idx.shuffle(&mut rng);
        let n = idx.len();
        let n_train = ((n as f64) * fractions.0).round() as usize;
        let n_val = (((n as f64) * fractions.1).round() as usize).min(n - n_train.min(n));
        let n_train = n_train.min(n);
        train.extend_from_slice(&idx[..n_train]);
        val.extend_from_slice(&idx[n_train..n_train + n_val]);
        test.extend_from_slice(&idx[n_train + n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    test.sort_unstable();
    (train, val, test)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("age", ArrowType::Int64, true),
            Field::new("plan", ArrowType::Utf8, true),
            Field::new("vip", ArrowType::Boolean, true),
            Field::new("churned", ArrowType::Boolean, false),
        ]));
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(10), Some(20), None, Some(30)])),
            Arc::new(StringArray::from(vec![Some("pro"), Some("basic"), Some("pro"), None])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false), Some(true)])),
            Arc::new(BooleanArray::from(vec![true, false, true, false])),
        ];
        RecordBatch::try_new(schema, cols).unwrap()
    }

    fn contract() -> pb::Contract {
        pb::Contract {
            task: Task::BinaryClassification as i32,
            target: Some(pb::Target { name: "churned".into(), r#type: FeatureType::Bool as i32, classes: vec![] }),
            features: vec![
                pb::Feature {
                    name: "age".into(),
                    r#type: FeatureType::Int as i32,
                    nullable: true,
                    ..Default::default()
                },
                pb::Feature {
                    name: "plan".into(),
                    r#type: FeatureType::Category as i32,
                    nullable: true,
                    impute: Imputation::MissingCategory as i32,
                    ..Default::default()
                },
                pb::Feature {
                    name: "vip".into(),
                    r#type: FeatureType::Bool as i32,
                    nullable: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn fits_on_the_training_rows_only_and_transforms_every_row() {
        let data = vec![batch()];
        // Train on rows 0 and 1 only: the mean age is 15, not 20.
        let p = fit(&contract(), &data, &[0, 1]).unwrap();
        assert_eq!(p.features[0].fill, 15.0);
        assert_eq!(p.features[0].mean, 15.0);
        assert_eq!(p.features[1].categories, vec!["basic", "pro", UNKNOWN, MISSING]);
        assert_eq!(p.classes, vec!["false", "true"]);
        assert_eq!(p.width(), 1 + 4 + 1);
        let (x, rows) = transform(&p, &data).unwrap();
        assert_eq!(rows, 4);
        let row = |r: usize| &x[r * 6..(r + 1) * 6];
        assert_eq!(row(0), &[-1.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
        // Null age imputed with the training mean (standardised to 0); null
        // plan into the missing bucket.
        assert_eq!(row(2)[0], 0.0);
        assert_eq!(row(3), &[3.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
        assert_eq!(encode_target(&p, Task::BinaryClassification, &data).unwrap(), vec![1.0, 0.0, 1.0, 0.0]);
        // Unseen categories go to the unknown bucket.
        let mut other = contract();
        other.features[1].categories = vec!["basic".into()];
        let p = fit(&other, &data, &[0, 1, 2, 3]).unwrap();
        let (x, _) = transform(&p, &data).unwrap();
        // plan = [basic, unknown, missing], then vip.
        assert_eq!(&x[1..5], &[0.0, 1.0, 0.0, 1.0], "pro is unknown to a contract that lists only basic");
    }

    #[test]
    fn splits_are_deterministic_disjoint_and_stratified() {
        let labels: Vec<Option<String>> =
            (0..1000).map(|i| Some(if i % 10 == 0 { "a" } else { "b" }.to_string())).collect();
        let (tr, va, te) = split(1000, Some(&labels), (0.7, 0.15, 0.15), 42);
        assert_eq!(tr.len() + va.len() + te.len(), 1000);
        let mut all: Vec<usize> = tr.iter().chain(&va).chain(&te).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 1000, "splits overlap");
        assert_eq!(te.iter().filter(|&&i| i % 10 == 0).count(), 15, "test keeps 10% of class a");
        assert_eq!(split(1000, Some(&labels), (0.7, 0.15, 0.15), 42), (tr.clone(), va, te));
        assert_ne!(split(1000, Some(&labels), (0.7, 0.15, 0.15), 43).0, tr);
        let f = Float64Array::from(vec![1.0]);
        assert_eq!(f.len(), 1);
    }
}
