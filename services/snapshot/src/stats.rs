//! Per-column statistics of a version, computed over its rows as read back.
//! They are the drift baseline of models trained on the version, so they are
//! deterministic: the same rows in the same order give the same numbers.
//!
//! Exact: count, nulls, NaNs, min, max, mean, std, and categories while a
//! column has at most [`MAX_CATEGORIES`] distinct values. Sketched (marked
//! `approximate`) past [`SAMPLE`] values: quantiles and the histogram, from a
//! seeded reservoir sample.

use std::collections::HashMap;

use arrow::array::{
    Array, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType as ArrowType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use pulse_datasource::connector::values::{compare_values, logical_type_of, micros_to_proto};
use pulse_proto::datasource::v1::Value;
use pulse_proto::datasource::v1::value::Kind;
use pulse_proto::snapshot::v1::{CategoryCount, ColumnStatistics, Histogram, Quantile};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SAMPLE: usize = 100_000;
const MAX_CATEGORIES: usize = 10_000;
const TOP: usize = 50;
const BINS: usize = 20;
const QUANTILES: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Numeric,
    Categorical,
    Ordered,
    Opaque,
}

struct ColumnAcc {
    name: String,
    data_type: ArrowType,
    shape: Shape,
    count: u64,
    nulls: u64,
    nans: u64,
    /// Welford's running mean and sum of squared deviations.
    n: u64,
    mean: f64,
    m2: f64,
    min: Option<Value>,
    max: Option<Value>,
    min_f: f64,
    max_f: f64,
    sample: Vec<f64>,
    seen: u64,
    rng: StdRng,
    /// Algorithm L state: the next offered value to sample, and its weight.
    next: u64,
    w: f64,
    buf: Vec<f64>,
    categories: Categories,
    categories_overflow: bool,
}

type Categories = HashMap<String, u64, ahash::RandomState>;

/// Fixed seeds: hashing never affects results, but deterministic builds
/// make profiles comparable.
fn categories() -> Categories {
    HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4))
}

impl ColumnAcc {
    fn new(index: usize, name: &str, data_type: &ArrowType) -> Self {
        let shape = match data_type {
            ArrowType::Int64 | ArrowType::Float64 | ArrowType::Decimal128(..) => Shape::Numeric,
            ArrowType::Utf8 | ArrowType::Boolean => Shape::Categorical,
            ArrowType::Date32 | ArrowType::Timestamp(..) => Shape::Ordered,
            _ => Shape::Opaque,
        };
        Self {
            name: name.to_string(),
            data_type: data_type.clone(),
            shape,
            count: 0,
            nulls: 0,
            nans: 0,
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: None,
            max: None,
            min_f: f64::INFINITY,
            max_f: f64::NEG_INFINITY,
            sample: Vec::new(),
            seen: 0,
            rng: StdRng::seed_from_u64(0x5eed_0000 + index as u64),
            next: 0,
            w: 1.0,
            buf: Vec::new(),
            categories: categories(),
            categories_overflow: false,
        }
    }

    fn uniform(&mut self) -> f64 {
        1.0 - self.rng.random::<f64>()
    }

    fn skip(&mut self) -> u64 {
        let u = self.uniform();
        (u.ln() / (1.0 - self.w).ln()).floor().max(0.0) as u64
    }

    /// Folds in a batch of finite values: moments (Chan's parallel
    /// update), range, and a reservoir sample (Algorithm L: one random draw
    /// per replacement, not per value).
    fn numeric_batch(&mut self) {
        let xs = std::mem::take(&mut self.buf);
        if !xs.is_empty() {
            let n = xs.len() as u64;
            let mean = xs.iter().sum::<f64>() / n as f64;
            let m2: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum();
            let (lo, hi) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
            let total = self.n + n;
            let delta = mean - self.mean;
            self.mean += delta * n as f64 / total as f64;
            self.m2 += m2 + delta * delta * self.n as f64 * n as f64 / total as f64;
            self.n = total;
            self.min_f = self.min_f.min(lo);
            self.max_f = self.max_f.max(hi);

            let mut start = 0;
            while self.sample.len() < SAMPLE && start < xs.len() {
                self.sample.push(xs[start]);
                start += 1;
                self.seen += 1;
                if self.sample.len() == SAMPLE {
                    self.w = (self.uniform().ln() / SAMPLE as f64).exp();
                    self.next = self.seen + self.skip();
                }
            }
            let first = self.seen;
            let end = first + (xs.len() - start) as u64;
            while self.sample.len() == SAMPLE && self.next < end {
                let x = xs[start + (self.next - first) as usize];
                let slot = self.rng.random_range(0..SAMPLE);
                self.sample[slot] = x;
                self.w *= (self.uniform().ln() / SAMPLE as f64).exp();
                self.next += self.skip() + 1;
            }
            self.seen = end;
        }
        self.buf = xs;
        self.buf.clear();
    }

    fn category(&mut self, v: &str) {
        if self.categories_overflow {
            return;
        }
        if let Some(c) = self.categories.get_mut(v) {
            *c += 1;
        } else if self.categories.len() < MAX_CATEGORIES {
            self.categories.insert(v.to_string(), 1);
        } else {
            // An identifier-like column: its "top categories" say nothing,
            // and counting them would cost a hash lookup per row.
            self.categories_overflow = true;
            self.categories = categories();
        }
    }

    /// Folds the statistics of the rows that follow (in read order) in.
    fn merge(&mut self, other: ColumnAcc) {
        self.count += other.count;
        self.nulls += other.nulls;
        self.nans += other.nans;
        if other.n > 0 {
            let n = self.n + other.n;
            let delta = other.mean - self.mean;
            self.mean += delta * other.n as f64 / n as f64;
            self.m2 += other.m2 + delta * delta * self.n as f64 * other.n as f64 / n as f64;
            self.n = n;
        }
        let (lo, hi) = (self.min_f, self.max_f);
        self.min_f = self.min_f.min(other.min_f);
        self.max_f = self.max_f.max(other.max_f);
        match (&self.min, &other.min) {
            (None, Some(_)) => self.min = other.min.clone(),
            (Some(a), Some(b)) if compare_values(b, a).is_lt() => self.min = other.min.clone(),
            _ => {}
        }
        match (&self.max, &other.max) {
            (None, Some(_)) => self.max = other.max.clone(),
            (Some(a), Some(b)) if compare_values(b, a).is_gt() => self.max = other.max.clone(),
            _ => {}
        }
        let _ = (lo, hi);
        // Reservoirs are uniform samples of their rows: keep from each a
        // share proportional to the rows it stands for.
        let seen = self.seen + other.seen;
        if self.sample.len() + other.sample.len() > SAMPLE && seen > 0 {
            let mine = ((SAMPLE as f64) * self.seen as f64 / seen as f64).round() as usize;
            self.sample.truncate(mine.min(self.sample.len()));
            let theirs = SAMPLE - self.sample.len();
            self.sample.extend(other.sample.into_iter().take(theirs));
        } else {
            self.sample.extend(other.sample);
        }
        self.seen = seen;
        if self.categories_overflow || other.categories_overflow {
            self.categories_overflow = true;
            self.categories = categories();
        } else {
            for (k, v) in other.categories {
                *self.categories.entry(k).or_default() += v;
            }
            if self.categories.len() > MAX_CATEGORIES {
                self.categories_overflow = true;
                self.categories = categories();
            }
        }
    }

    fn add(&mut self, array: &dyn Array) {
        self.count += array.len() as u64;
        self.nulls += array.null_count() as u64;
        let any = array.as_any();
        match &self.data_type {
            ArrowType::Int64 => {
                if let Some(a) = any.downcast_ref::<Int64Array>() {
                    self.buf.extend(a.iter().flatten().map(|v| v as f64));
                    self.numeric_batch();
                    if let (Some(lo), Some(hi)) = (arrow::compute::min(a), arrow::compute::max(a)) {
                        self.extremes(
                            Value { kind: Some(Kind::IntValue(lo)) },
                            Value { kind: Some(Kind::IntValue(hi)) },
                        );
                    }
                }
            }
            ArrowType::Float64 => {
                if let Some(a) = any.downcast_ref::<Float64Array>() {
                    for v in a.iter().flatten() {
                        if v.is_nan() {
                            self.nans += 1;
                        } else if v.is_finite() {
                            self.buf.push(v);
                        }
                    }
                    self.numeric_batch();
                }
            }
            ArrowType::Decimal128(_, scale) => {
                let div = 10f64.powi(i32::from(*scale));
                if let Some(a) = any.downcast_ref::<Decimal128Array>() {
                    self.buf.extend(a.iter().flatten().map(|raw| raw as f64 / div));
                    self.numeric_batch();
                    if let (Some(lo), Some(hi)) = (arrow::compute::min(a), arrow::compute::max(a)) {
                        let text = |v: i128| {
                            Decimal128Array::from(vec![v])
                                .with_precision_and_scale(a.precision(), a.scale())
                                .map(|d| d.value_as_string(0))
                                .unwrap_or_default()
                        };
                        self.extremes(
                            Value { kind: Some(Kind::DecimalValue(text(lo))) },
                            Value { kind: Some(Kind::DecimalValue(text(hi))) },
                        );
                    }
                }
            }
            ArrowType::Utf8 => {
                if let Some(a) = any.downcast_ref::<StringArray>() {
                    if !self.categories_overflow {
                        for v in a.iter().flatten() {
                            self.category(v);
                        }
                    }
                    if let (Some(lo), Some(hi)) = (arrow::compute::min_string(a), arrow::compute::max_string(a)) {
                        self.extremes(
                            Value { kind: Some(Kind::StringValue(lo.to_string())) },
                            Value { kind: Some(Kind::StringValue(hi.to_string())) },
                        );
                    }
                }
            }
            ArrowType::Boolean => {
                if let Some(a) = any.downcast_ref::<BooleanArray>() {
                    let trues = a.true_count() as u64;
                    let falses = (a.len() - a.null_count()) as u64 - trues;
                    for (value, n) in [("true", trues), ("false", falses)] {
                        if n > 0 {
                            *self.categories.entry(value.to_string()).or_default() += n;
                        }
                    }
                    let k = |b| Value { kind: Some(Kind::BoolValue(b)) };
                    if a.len() > a.null_count() {
                        self.extremes(k(falses == 0), k(trues > 0));
                    }
                }
            }
            ArrowType::Date32 => {
                if let Some(a) = any.downcast_ref::<Date32Array>()
                    && let (Some(lo), Some(hi)) = (arrow::compute::min(a), arrow::compute::max(a))
                {
                    let date = |d: i32| {
                        let day =
                            chrono::DateTime::from_timestamp(i64::from(d) * 86_400, 0).unwrap_or_default().date_naive();
                        Value { kind: Some(Kind::DateValue(day.format("%Y-%m-%d").to_string())) }
                    };
                    self.extremes(date(lo), date(hi));
                }
            }
            ArrowType::Timestamp(TimeUnit::Microsecond, _) => {
                if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>()
                    && let (Some(lo), Some(hi)) = (arrow::compute::min(a), arrow::compute::max(a))
                {
                    let ts = |us| Value { kind: Some(Kind::TimestampValue(micros_to_proto(us))) };
                    self.extremes(ts(lo), ts(hi));
                }
            }
            _ => {}
        }
    }

    fn extremes(&mut self, lo: Value, hi: Value) {
        if self.min.as_ref().is_none_or(|m| compare_values(&lo, m).is_lt()) {
            self.min = Some(lo);
        }
        if self.max.as_ref().is_none_or(|m| compare_values(&hi, m).is_gt()) {
            self.max = Some(hi);
        }
    }

    fn finish(mut self) -> ColumnStatistics {
        let mut out = ColumnStatistics {
            column: self.name.clone(),
            data_type: logical_type_of(&self.data_type) as i32,
            count: self.count,
            null_count: self.nulls,
            nan_count: self.nans,
            ..Default::default()
        };
        match self.shape {
            Shape::Numeric => {
                if self.n > 0 {
                    out.mean = Some(self.mean);
                    out.std = Some((self.m2 / self.n as f64).sqrt());
                    if matches!(self.data_type, ArrowType::Float64) {
                        self.min = Some(Value { kind: Some(Kind::FloatValue(self.min_f)) });
                        self.max = Some(Value { kind: Some(Kind::FloatValue(self.max_f)) });
                    }
                    self.sample.sort_by(|a, b| a.total_cmp(b));
                    let s = &self.sample;
                    out.quantiles = QUANTILES
                        .iter()
                        .map(|q| {
                            let pos = (q * (s.len() - 1) as f64).round() as usize;
                            Quantile { q: *q, value: s[pos.min(s.len() - 1)] }
                        })
                        .collect();
                    let (lo, hi) = (self.min_f, self.max_f);
                    let width = (hi - lo) / BINS as f64;
                    let mut counts = [0u64; BINS];
                    for x in s {
                        let bin = if width > 0.0 { (((x - lo) / width) as usize).min(BINS - 1) } else { 0 };
                        counts[bin] += 1;
                    }
                    // Scale sampled counts to the column's size.
                    let scale = self.n as f64 / s.len() as f64;
                    let counts = counts.iter().map(|c| (*c as f64 * scale).round() as u64).collect();
                    out.histogram =
                        Some(Histogram { bounds: (0..=BINS).map(|i| lo + width * i as f64).collect(), counts });
                    out.approximate = self.seen as usize > SAMPLE;
                }
                // Integer columns with few values are categories too.
                if matches!(self.data_type, ArrowType::Int64) && self.n > 0 && self.max_f - self.min_f < 50.0 {
                    let mut counts = categories();
                    for x in &self.sample {
                        *counts.entry(format!("{}", *x as i64)).or_default() += 1;
                    }
                    if self.seen as usize <= SAMPLE {
                        self.categories = counts;
                    }
                }
            }
            Shape::Categorical | Shape::Ordered | Shape::Opaque => {}
        }
        if !self.categories.is_empty() {
            let mut cats: Vec<(String, u64)> = self.categories.into_iter().collect();
            cats.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            if !self.categories_overflow {
                out.distinct_count = Some(cats.len() as u64);
            }
            let non_null = self.count - self.nulls;
            let top: Vec<CategoryCount> =
                cats.into_iter().take(TOP).map(|(value, count)| CategoryCount { value, count }).collect();
            out.other_count = non_null.saturating_sub(top.iter().map(|c| c.count).sum::<u64>());
            out.top_categories = top;
            out.approximate |= self.categories_overflow;
        }
        out.min = self.min;
        out.max = self.max;
        out
    }
}

/// Statistics of every column of a schema, fed batch by batch.
pub struct StatsAccumulator {
    columns: Vec<ColumnAcc>,
}

impl StatsAccumulator {
    pub fn new(schema: &SchemaRef) -> Self {
        Self {
            columns: schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| ColumnAcc::new(i, f.name(), f.data_type()))
                .collect(),
        }
    }

    pub fn add(&mut self, batch: &RecordBatch) {
        for (acc, col) in self.columns.iter_mut().zip(batch.columns()) {
            acc.add(col.as_ref());
        }
    }

    /// Folds in the statistics of the rows that follow these.
    pub fn merge(&mut self, other: StatsAccumulator) {
        for (a, b) in self.columns.iter_mut().zip(other.columns) {
            a.merge(b);
        }
    }

    pub fn finish(self) -> Vec<ColumnStatistics> {
        self.columns.into_iter().map(ColumnAcc::finish).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn exact_statistics_for_small_columns() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", ArrowType::Int64, true),
            Field::new("c", ArrowType::Utf8, true),
            Field::new("f", ArrowType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), Some(2), Some(3), None])),
                Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("a"), None])),
                Arc::new(Float64Array::from(vec![Some(1.0), Some(f64::NAN), Some(3.0), Some(5.0)])),
            ],
        )
        .unwrap();
        let mut acc = StatsAccumulator::new(&schema);
        acc.add(&batch);
        let stats = acc.finish();
        let x = &stats[0];
        assert_eq!((x.count, x.null_count), (4, 1));
        assert_eq!(x.mean, Some(2.0));
        assert!((x.std.unwrap() - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(x.min.as_ref().unwrap().kind, Some(Kind::IntValue(1)));
        assert_eq!(x.max.as_ref().unwrap().kind, Some(Kind::IntValue(3)));
        assert_eq!(x.histogram.as_ref().unwrap().counts.iter().sum::<u64>(), 3);
        let c = &stats[1];
        assert_eq!(c.top_categories[0], CategoryCount { value: "a".into(), count: 2 });
        assert_eq!(c.distinct_count, Some(2));
        let f = &stats[2];
        assert_eq!((f.nan_count, f.mean), (1, Some(3.0)));
        assert!(!x.approximate);
    }

    #[test]
    fn merged_statistics_equal_one_pass() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", ArrowType::Int64, true)]));
        let batch =
            |v: Vec<Option<i64>>| RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(v))]).unwrap();
        let (a, b) = (batch(vec![Some(5), Some(-2), None]), batch(vec![Some(9), Some(1)]));
        let mut one = StatsAccumulator::new(&schema);
        one.add(&a);
        one.add(&b);
        let one = one.finish();
        let mut left = StatsAccumulator::new(&schema);
        left.add(&a);
        let mut right = StatsAccumulator::new(&schema);
        right.add(&b);
        left.merge(right);
        let merged = left.finish();
        assert_eq!((merged[0].count, merged[0].null_count), (one[0].count, one[0].null_count));
        assert!((merged[0].mean.unwrap() - one[0].mean.unwrap()).abs() < 1e-12);
        assert!((merged[0].std.unwrap() - one[0].std.unwrap()).abs() < 1e-12);
        assert_eq!(merged[0].min, one[0].min);
        assert_eq!(merged[0].max, one[0].max);
        assert_eq!(merged[0].quantiles, one[0].quantiles);
    }
}
