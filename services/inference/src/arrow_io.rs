//! Arrow in and out of `PredictBatch`: an IPC stream of feature columns
//! becomes rows (then the same validation as any row), and answers go back
//! as an IPC stream of prediction columns.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema};
use arrow::datatypes::{UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use pulse_proto::inference::v1::{self as pb, feature_value::Kind};

use crate::error::InferenceError;

fn bad(reason: impl Into<String>) -> InferenceError {
    InferenceError::invalid("arrow_ipc", reason)
}

/// The rows of an Arrow IPC stream, one feature per column.
pub fn rows_from_ipc(bytes: &[u8], limit: usize) -> Result<Vec<pb::Row>, InferenceError> {
    let reader = StreamReader::try_new(bytes, None).map_err(|e| bad(format!("is not an Arrow IPC stream: {e}")))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad(format!("a record batch does not decode: {e}")))?;
        if rows.len() + batch.num_rows() > limit {
            return Err(InferenceError::invalid(
                "arrow_ipc",
                format!("holds more than the limit of {limit} rows per call; split the batch"),
            ));
        }
        let start = rows.len();
        rows.resize_with(start + batch.num_rows(), pb::Row::default);
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            for (i, row) in rows[start..].iter_mut().enumerate() {
                let kind = cell(column.as_ref(), i).map_err(|t| {
                    bad(format!("column '{}' is {t}; send float, int, bool or string columns", field.name()))
                })?;
                row.features.insert(field.name().clone(), pb::FeatureValue { kind });
            }
        }
    }
    Ok(rows)
}

fn cell(a: &dyn Array, i: usize) -> Result<Option<Kind>, String> {
    if a.is_null(i) {
        return Ok(None);
    }
    Ok(Some(match a.data_type() {
        DataType::Float64 => Kind::FloatValue(a.as_primitive::<Float64Type>().value(i)),
        DataType::Float32 => Kind::FloatValue(f64::from(a.as_primitive::<Float32Type>().value(i))),
        DataType::Int64 => Kind::IntValue(a.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Kind::IntValue(i64::from(a.as_primitive::<Int32Type>().value(i))),
        DataType::Int16 => Kind::IntValue(i64::from(a.as_primitive::<Int16Type>().value(i))),
        DataType::Int8 => Kind::IntValue(i64::from(a.as_primitive::<Int8Type>().value(i))),
        DataType::UInt32 => Kind::IntValue(i64::from(a.as_primitive::<UInt32Type>().value(i))),
        DataType::UInt16 => Kind::IntValue(i64::from(a.as_primitive::<UInt16Type>().value(i))),
        DataType::UInt8 => Kind::IntValue(i64::from(a.as_primitive::<UInt8Type>().value(i))),
        DataType::UInt64 => {
            let v = a.as_primitive::<UInt64Type>().value(i);
            Kind::IntValue(i64::try_from(v).map_err(|_| format!("uint64 {v}, too large for an int"))?)
        }
        DataType::Boolean => Kind::BoolValue(a.as_boolean().value(i)),
        DataType::Utf8 => Kind::CategoryValue(a.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Kind::CategoryValue(a.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Kind::CategoryValue(a.as_string_view().value(i).to_string()),
        other => return Err(other.to_string()),
    }))
}

/// Predictions as an IPC stream: prediction_id, then label and
/// probability_<class> columns (classification) or value (regression).
pub fn predictions_to_ipc(predictions: &[pb::Prediction]) -> Result<Vec<u8>, InferenceError> {
    let regression = predictions.first().is_some_and(|p| p.value.is_some());
    let mut fields = vec![Field::new("prediction_id", DataType::Utf8, false)];
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut ids = StringBuilder::new();
    for p in predictions {
        ids.append_value(&p.id);
    }
    columns.push(Arc::new(ids.finish()));
    if regression {
        let mut v = Float64Builder::with_capacity(predictions.len());
        for p in predictions {
            v.append_option(p.value);
        }
        fields.push(Field::new("value", DataType::Float64, true));
        columns.push(Arc::new(v.finish()));
    } else {
        let mut labels = StringBuilder::new();
        for p in predictions {
            labels.append_value(&p.label);
        }
        fields.push(Field::new("label", DataType::Utf8, false));
        columns.push(Arc::new(labels.finish()));
        let classes: Vec<String> =
            predictions.first().map(|p| p.probabilities.keys().cloned().collect()).unwrap_or_default();
        for c in classes {
            let mut b = Float64Builder::with_capacity(predictions.len());
            for p in predictions {
                b.append_option(p.probabilities.get(&c).copied());
            }
            fields.push(Field::new(format!("probability_{c}"), DataType::Float64, true));
            columns.push(Arc::new(b.finish()));
        }
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| InferenceError::Scoring(e.to_string()))?;
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, &schema).map_err(|e| InferenceError::Scoring(e.to_string()))?;
    w.write(&batch).map_err(|e| InferenceError::Scoring(e.to_string()))?;
    w.finish().map_err(|e| InferenceError::Scoring(e.to_string()))?;
    drop(w);
    Ok(out)
}
