//! One side of a comparison (the reference or the current data) gathered
//! from Arrow record batches as they stream in: each monitored feature kept
//! as one compact column (finite numbers, or category counts), the model's
//! outputs, and the joined ground truth. Batches are dropped once folded in,
//! so memory holds the monitored columns, never the rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, StringArray, TimestampMillisecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use pulse_proto::snapshot::v1::ColumnStatistics;
use pulse_snapshot::stats::StatsAccumulator;
use pulse_trainer::artifact::Predictions;

/// The name the output distribution goes by, among the features.
pub const PREDICTION: &str = "_prediction";

/// How a column is compared: numeric (KS, Wasserstein, PSI and
/// Jensen–Shannon over quantile bins) or categorical (PSI over the
/// categories, chi-square).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Numeric,
    Categorical,
}

/// A column's non-null values.
#[derive(Debug, Clone)]
pub enum Values {
    /// Finite values in arrival order.
    Numeric(Vec<f64>),
    /// Count per category.
    Categorical(BTreeMap<String, u64>),
}

impl Values {
    pub fn new(kind: Kind) -> Self {
        match kind {
            Kind::Numeric => Self::Numeric(Vec::new()),
            Kind::Categorical => Self::Categorical(BTreeMap::new()),
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            Self::Numeric(v) => v.len() as u64,
            Self::Categorical(m) => m.values().sum(),
        }
    }
}

/// One monitored column of one side.
pub struct Column {
    pub name: String,
    pub kind: Kind,
    pub values: Values,
    /// Nulls and non-finite numbers: counted, not compared.
    pub nulls: u64,
    /// Statistics of the values as they arrived (current data, baselines).
    stats: Option<(SchemaRef, StatsAccumulator)>,
    with_stats: bool,
}

impl std::fmt::Debug for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Column").field("name", &self.name).field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl Column {
    pub fn new(name: &str, kind: Kind, with_stats: bool) -> Self {
        Self { name: name.to_string(), kind, values: Values::new(kind), nulls: 0, stats: None, with_stats }
    }

    pub fn count(&self) -> u64 {
        self.values.count()
    }

    /// Takes the values out (for a statistics task), leaving the counts.
    pub fn take_values(&mut self) -> Values {
        std::mem::replace(&mut self.values, Values::new(self.kind))
    }

    /// Folds in one array of the column.
    pub fn push(&mut self, array: &ArrayRef) -> Result<(), ArrowError> {
        if self.with_stats {
            let (schema, acc) = self.stats.get_or_insert_with(|| {
                let schema = Arc::new(Schema::new(vec![Field::new(&self.name, array.data_type().clone(), true)]));
                let acc = StatsAccumulator::new(&schema);
                (schema, acc)
            });
            acc.add(&RecordBatch::try_new(schema.clone(), vec![array.clone()])?);
        }
        match &mut self.values {
            Values::Numeric(v) => {
                let f = cast(array, &DataType::Float64)?;
                let f = f
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .ok_or_else(|| ArrowError::CastError(format!("{} did not cast to Float64", self.name)))?;
                v.reserve(f.len() - f.null_count());
                for x in f.iter() {
                    match x {
                        Some(x) if x.is_finite() => v.push(x),
                        _ => self.nulls += 1,
                    }
                }
            }
            Values::Categorical(m) => {
                let s = cast(array, &DataType::Utf8)?;
                let s = s
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| ArrowError::CastError(format!("{} did not cast to Utf8", self.name)))?;
                for x in s.iter() {
                    match x {
                        Some(x) => match m.get_mut(x) {
                            Some(c) => *c += 1,
                            None => {
                                m.insert(x.to_string(), 1);
                            }
                        },
                        None => self.nulls += 1,
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows with no value (a column absent from the data).
    pub fn push_missing(&mut self, rows: usize) {
        self.nulls += rows as u64;
    }

    /// The statistics of everything pushed (with `with_stats`).
    pub fn statistics(&mut self) -> Option<ColumnStatistics> {
        self.stats.take().and_then(|(_, acc)| acc.finish().into_iter().next())
    }
}

/// Ground truth joined to served answers (rows with feedback only).
#[derive(Debug, Clone)]
pub enum Feedback {
    /// Classification: the served label, its probability, the true label.
    Labels { predicted: Vec<String>, probability: Vec<f64>, truth: Vec<String> },
    /// Regression: the served value and the true one.
    Values { predicted: Vec<f64>, truth: Vec<f64> },
}

impl Feedback {
    pub fn new(output: Kind) -> Self {
        match output {
            Kind::Categorical => Self::Labels { predicted: Vec::new(), probability: Vec::new(), truth: Vec::new() },
            Kind::Numeric => Self::Values { predicted: Vec::new(), truth: Vec::new() },
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            Self::Labels { truth, .. } => truth.len() as u64,
            Self::Values { truth, .. } => truth.len() as u64,
        }
    }
}

/// A monitored feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitored {
    pub name: String,
    pub kind: Kind,
}

/// One side of a comparison, filled batch by batch.
pub struct Gather {
    pub rows: u64,
    pub columns: Vec<Column>,
    /// The outputs ("_prediction"): served (prediction log) or scored
    /// (dataset rows); `None` when not gathered.
    pub output: Option<Column>,
    /// Scored classification outputs: statistics of `probability_<class>`
    /// (baselines only).
    probabilities: Option<(SchemaRef, StatsAccumulator)>,
    pub feedback: Option<Feedback>,
    /// The oldest prediction seen (prediction log).
    pub oldest_ms: Option<i64>,
    with_stats: bool,
}

impl std::fmt::Debug for Gather {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gather").field("rows", &self.rows).field("columns", &self.columns).finish_non_exhaustive()
    }
}

impl Gather {
    pub fn new(features: &[Monitored], output: Option<Kind>, with_stats: bool) -> Self {
        Self {
            rows: 0,
            columns: features.iter().map(|f| Column::new(&f.name, f.kind, with_stats)).collect(),
            output: output.map(|k| Column::new(PREDICTION, k, with_stats)),
            probabilities: None,
            feedback: None,
            oldest_ms: None,
            with_stats,
        }
    }

    /// Also collects feedback joined to served answers (prediction log).
    pub fn with_feedback(mut self) -> Self {
        if let Some(o) = &self.output {
            self.feedback = Some(Feedback::new(o.kind));
        }
        self
    }

    /// Folds in the feature columns of a batch (by name; a missing column
    /// counts as nulls).
    pub fn add_features(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        self.rows += batch.num_rows() as u64;
        for c in &mut self.columns {
            match batch.column_by_name(&c.name) {
                Some(a) => c.push(a)?,
                None => c.push_missing(batch.num_rows()),
            }
        }
        Ok(())
    }

    /// Folds in the answers of a prediction-log batch (`label` or `value`),
    /// its feedback and its times.
    pub fn add_served(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        if let Some(at) =
            batch.column_by_name("created_at").and_then(|a| a.as_any().downcast_ref::<TimestampMillisecondArray>())
            && let Some(min) = arrow::compute::min(at)
        {
            self.oldest_ms = Some(self.oldest_ms.map_or(min, |o| o.min(min)));
        }
        let Some(output) = self.output.as_mut() else { return Ok(()) };
        let answer = if output.kind == Kind::Numeric { "value" } else { "label" };
        match batch.column_by_name(answer) {
            Some(a) => output.push(a)?,
            None => output.push_missing(batch.num_rows()),
        }
        let strings = |name: &str| batch.column_by_name(name).and_then(|a| a.as_any().downcast_ref::<StringArray>());
        let floats = |name: &str| batch.column_by_name(name).and_then(|a| a.as_any().downcast_ref::<Float64Array>());
        match &mut self.feedback {
            Some(Feedback::Labels { predicted, probability, truth }) => {
                let (Some(label), Some(p), Some(t)) =
                    (strings("label"), floats("probability"), strings("feedback_label"))
                else {
                    return Ok(());
                };
                for i in 0..batch.num_rows() {
                    if t.is_valid(i) && label.is_valid(i) {
                        predicted.push(label.value(i).to_string());
                        probability.push(if p.is_valid(i) { p.value(i) } else { f64::NAN });
                        truth.push(t.value(i).to_string());
                    }
                }
            }
            Some(Feedback::Values { predicted, truth }) => {
                let (Some(v), Some(t)) = (floats("value"), floats("feedback_value")) else { return Ok(()) };
                for i in 0..batch.num_rows() {
                    if t.is_valid(i) && v.is_valid(i) {
                        predicted.push(v.value(i));
                        truth.push(t.value(i));
                    }
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Folds in the outputs of scored rows: the label (the most probable
    /// class, as inference answers) or the value.
    pub fn add_scored(&mut self, predictions: Predictions) -> Result<(), ArrowError> {
        let Some(output) = self.output.as_mut() else { return Ok(()) };
        match predictions {
            Predictions::Values(values) => output.push(&(Arc::new(Float64Array::from(values)) as ArrayRef)),
            Predictions::Classes { classes, probabilities } => {
                let k = classes.len().max(1);
                let labels: StringArray = probabilities
                    .chunks(k)
                    .map(|p| {
                        let best = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
                        classes.get(best).map(String::as_str)
                    })
                    .collect();
                output.push(&(Arc::new(labels) as ArrayRef))?;
                if self.with_stats {
                    let (schema, acc) = self.probabilities.get_or_insert_with(|| {
                        let fields: Vec<Field> = classes
                            .iter()
                            .map(|c| Field::new(format!("probability_{c}"), DataType::Float64, true))
                            .collect();
                        let schema = Arc::new(Schema::new(fields));
                        let acc = StatsAccumulator::new(&schema);
                        (schema, acc)
                    });
                    let columns: Vec<ArrayRef> = (0..classes.len())
                        .map(|c| {
                            Arc::new(probabilities.chunks(k).map(|p| p.get(c).copied()).collect::<Float64Array>())
                                as ArrayRef
                        })
                        .collect();
                    acc.add(&RecordBatch::try_new(schema.clone(), columns)?);
                }
                Ok(())
            }
        }
    }

    /// Statistics of the outputs: the label or value, then per-class
    /// probabilities of scored rows.
    pub fn output_statistics(&mut self) -> Vec<ColumnStatistics> {
        let mut out = Vec::new();
        if let Some(o) = self.output.as_mut()
            && let Some(mut s) = o.statistics()
        {
            s.column = if o.kind == Kind::Numeric { "value" } else { "label" }.to_string();
            out.push(s);
        }
        if let Some((_, acc)) = self.probabilities.take() {
            out.extend(acc.finish());
        }
        out
    }
}

/// A deterministic sample of about `keep` of `total` rows: row `i` is kept
/// when a seeded hash of `i` falls under `keep / total`, so the same
/// version always gives the same sample, whatever its chunking.
#[derive(Debug, Clone)]
pub struct Sampler {
    keep: u64,
    total: u64,
    next_row: u64,
}

const SAMPLE_SEED: u64 = 0x5eed_d21f_7000_0001;

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Sampler {
    /// `None` when every row fits.
    pub fn new(keep: u64, total: u64) -> Option<Self> {
        (total > keep).then_some(Self { keep, total, next_row: 0 })
    }

    /// Which of the next `rows` rows to keep.
    pub fn mask(&mut self, rows: usize) -> BooleanArray {
        let start = self.next_row;
        self.next_row += rows as u64;
        (start..start + rows as u64).map(|i| Some(splitmix64(SAMPLE_SEED ^ i) % self.total < self.keep)).collect()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{BooleanArray, Int64Array};

    use super::*;

    #[test]
    fn numeric_and_categorical_columns_count_nulls() {
        let mut n = Column::new("x", Kind::Numeric, true);
        n.push(&(Arc::new(Int64Array::from(vec![Some(3), None, Some(5)])) as ArrayRef)).unwrap();
        let mut f = Column::new("f", Kind::Numeric, false);
        f.push(&(Arc::new(Float64Array::from(vec![f64::NAN, 1.5, f64::INFINITY])) as ArrayRef)).unwrap();
        assert_eq!((f.count(), f.nulls), (1, 2));
        assert_eq!((n.count(), n.nulls), (2, 1));
        let stats = n.statistics().unwrap();
        assert_eq!((stats.column.as_str(), stats.count, stats.null_count), ("x", 3, 1));

        let mut c = Column::new("b", Kind::Categorical, false);
        c.push(&(Arc::new(BooleanArray::from(vec![Some(true), Some(false), None, Some(true)])) as ArrayRef)).unwrap();
        let Values::Categorical(m) = &c.values else { panic!() };
        assert_eq!(m.get("true"), Some(&2));
        assert_eq!(m.get("false"), Some(&1));
        assert_eq!(c.nulls, 1);
    }

    #[test]
    fn samples_are_deterministic_and_near_the_target() {
        let mut a = Sampler::new(1000, 10_000).unwrap();
        let mut b = Sampler::new(1000, 10_000).unwrap();
        let kept: usize = (0..10).map(|_| a.mask(1000).true_count()).sum();
        assert!((900..1100).contains(&kept), "{kept}");
        // The same rows whatever the batch sizes.
        let first: Vec<bool> =
            (0..3).flat_map(|_| b.mask(333).iter().map(|x| x.unwrap()).collect::<Vec<_>>()).collect();
        let mut c = Sampler::new(1000, 10_000).unwrap();
        let whole: Vec<bool> = c.mask(999).iter().map(|x| x.unwrap()).collect();
        assert_eq!(first, whole);
        assert!(Sampler::new(10, 10).is_none());
    }
}
