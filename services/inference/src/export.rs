//! The prediction log as Arrow record batches (`ExportPredictions`): one
//! row per prediction, one typed column per contract feature, the answer,
//! and the joined ground truth. Drift detection and offline analysis read
//! the log this way.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use pulse_proto::inference::v1::{self as pb, feature_value::Kind};
use pulse_proto::trainer::v1::{Contract, FeatureType};

use crate::error::InferenceError;

/// The fixed columns before the features (the features follow, named as in
/// the contract, then `feedback_label` and `feedback_value`).
pub const FIXED_COLUMNS: [&str; 11] = [
    "prediction_id",
    "created_at",
    "model",
    "version",
    "role",
    "label",
    "probability",
    "value",
    "latency_us",
    "input_sha256",
    "output_sha256",
];

pub fn schema(contract: &Contract) -> SchemaRef {
    let mut fields = vec![
        Field::new("prediction_id", DataType::Utf8, false),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
        Field::new("model", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        Field::new("role", DataType::Utf8, false),
        // Classification: the label and its probability; regression: value.
        Field::new("label", DataType::Utf8, true),
        Field::new("probability", DataType::Float64, true),
        Field::new("value", DataType::Float64, true),
        Field::new("latency_us", DataType::UInt32, false),
        Field::new("input_sha256", DataType::Utf8, false),
        Field::new("output_sha256", DataType::Utf8, false),
    ];
    for f in &contract.features {
        let t = match FeatureType::try_from(f.r#type).unwrap_or_default() {
            FeatureType::Int => DataType::Int64,
            FeatureType::Bool => DataType::Boolean,
            FeatureType::Category => DataType::Utf8,
            FeatureType::Float | FeatureType::Unspecified => DataType::Float64,
        };
        fields.push(Field::new(&f.name, t, true));
    }
    fields.push(Field::new("feedback_label", DataType::Utf8, true));
    fields.push(Field::new("feedback_value", DataType::Float64, true));
    Arc::new(Schema::new(fields))
}

enum Column {
    Float(Float64Builder),
    Int(Int64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
}

/// Accumulates predictions into record batches of the export schema.
pub struct BatchBuilder {
    schema: SchemaRef,
    features: Vec<String>,
    id: StringBuilder,
    created_at: TimestampMillisecondBuilder,
    model: StringBuilder,
    version: UInt64Builder,
    role: StringBuilder,
    label: StringBuilder,
    probability: Float64Builder,
    value: Float64Builder,
    latency: UInt32Builder,
    input_sha: StringBuilder,
    output_sha: StringBuilder,
    columns: Vec<Column>,
    feedback_label: StringBuilder,
    feedback_value: Float64Builder,
    rows: usize,
}

impl BatchBuilder {
    pub fn new(contract: &Contract) -> Self {
        let columns = contract
            .features
            .iter()
            .map(|f| match FeatureType::try_from(f.r#type).unwrap_or_default() {
                FeatureType::Int => Column::Int(Int64Builder::new()),
                FeatureType::Bool => Column::Bool(BooleanBuilder::new()),
                FeatureType::Category => Column::Text(StringBuilder::new()),
                FeatureType::Float | FeatureType::Unspecified => Column::Float(Float64Builder::new()),
            })
            .collect();
        Self {
            schema: schema(contract),
            features: contract.features.iter().map(|f| f.name.clone()).collect(),
            id: StringBuilder::new(),
            created_at: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            model: StringBuilder::new(),
            version: UInt64Builder::new(),
            role: StringBuilder::new(),
            label: StringBuilder::new(),
            probability: Float64Builder::new(),
            value: Float64Builder::new(),
            latency: UInt32Builder::new(),
            input_sha: StringBuilder::new(),
            output_sha: StringBuilder::new(),
            columns,
            feedback_label: StringBuilder::new(),
            feedback_value: Float64Builder::new(),
            rows: 0,
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn push(&mut self, p: &pb::Prediction) {
        let mv = p.model_version.clone().unwrap_or_default();
        self.id.append_value(&p.id);
        self.created_at.append_value(
            p.created_at.as_ref().map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000).unwrap_or(0),
        );
        self.model.append_value(&mv.model);
        self.version.append_value(mv.version);
        let role = pb::ServingRole::try_from(p.role).unwrap_or_default().as_str_name();
        self.role.append_value(role.trim_start_matches("SERVING_ROLE_").to_ascii_lowercase());
        if p.value.is_some() || p.label.is_empty() {
            self.label.append_null();
            self.probability.append_null();
        } else {
            self.label.append_value(&p.label);
            self.probability.append_option(p.probabilities.get(&p.label).copied());
        }
        self.value.append_option(p.value);
        self.latency.append_value(p.latency_us);
        self.input_sha.append_value(&p.input_sha256);
        self.output_sha.append_value(&p.output_sha256);
        for (name, column) in self.features.iter().zip(&mut self.columns) {
            let kind = p.features.get(name).and_then(|v| v.kind.as_ref());
            match column {
                Column::Float(b) => b.append_option(match kind {
                    Some(Kind::FloatValue(v)) => Some(*v),
                    Some(Kind::IntValue(v)) => Some(*v as f64),
                    _ => None,
                }),
                Column::Int(b) => b.append_option(match kind {
                    Some(Kind::IntValue(v)) => Some(*v),
                    _ => None,
                }),
                Column::Bool(b) => b.append_option(match kind {
                    Some(Kind::BoolValue(v)) => Some(*v),
                    _ => None,
                }),
                Column::Text(b) => b.append_option(match kind {
                    Some(Kind::CategoryValue(v)) => Some(v.as_str()),
                    _ => None,
                }),
            }
        }
        use pb::feedback::Truth;
        match p.feedback.as_ref().and_then(|f| f.truth.as_ref()) {
            Some(Truth::Label(l)) => {
                self.feedback_label.append_value(l);
                self.feedback_value.append_null();
            }
            Some(Truth::Value(v)) => {
                self.feedback_label.append_null();
                self.feedback_value.append_value(*v);
            }
            None => {
                self.feedback_label.append_null();
                self.feedback_value.append_null();
            }
        }
        self.rows += 1;
    }

    /// The rows pushed since the last call, as one batch.
    pub fn finish(&mut self) -> Result<RecordBatch, InferenceError> {
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.created_at.finish()),
            Arc::new(self.model.finish()),
            Arc::new(self.version.finish()),
            Arc::new(self.role.finish()),
            Arc::new(self.label.finish()),
            Arc::new(self.probability.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.latency.finish()),
            Arc::new(self.input_sha.finish()),
            Arc::new(self.output_sha.finish()),
        ];
        for c in &mut self.columns {
            arrays.push(match c {
                Column::Float(b) => Arc::new(b.finish()),
                Column::Int(b) => Arc::new(b.finish()),
                Column::Bool(b) => Arc::new(b.finish()),
                Column::Text(b) => Arc::new(b.finish()),
            });
        }
        arrays.push(Arc::new(self.feedback_label.finish()));
        arrays.push(Arc::new(self.feedback_value.finish()));
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| InferenceError::Scoring(format!("export batch: {e}")))
    }
}
