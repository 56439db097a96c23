//! Logical types ↔ Arrow, and typed scalars ([`Value`]) read out of Arrow
//! arrays. Every connector produces the same Arrow type for a logical type, so
//! snapshots, statistics and models see one representation:
//!
//! | logical   | Arrow                                  |
//! |-----------|----------------------------------------|
//! | bool      | Boolean                                |
//! | int       | Int64                                  |
//! | float     | Float64                                |
//! | decimal   | Decimal128(p, s) from `source_type`'s `(p,s)` |
//! | string, json, uuid | Utf8                          |
//! | binary    | Binary                                 |
//! | date      | Date32                                 |
//! | timestamp | Timestamp(µs, "+00:00")                |

use std::sync::Arc;

use arrow::array::{
    Array, ArrayBuilder, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, BooleanBuilder, Date32Array,
    Date32Builder, Decimal128Array, Decimal128Builder, Float64Array, Float64Builder, Int64Array, Int64Builder,
    StringArray, StringBuilder, TimestampMicrosecondArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType as ArrowType, Field, Schema as ArrowSchema, SchemaRef, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use pulse_proto::common::v1::{Column, DataType, Schema};
use pulse_proto::datasource::v1::Value;
use pulse_proto::datasource::v1::value::Kind;

use crate::error::DatasourceError;

/// The canonical timestamp zone: an offset, so casts need no time-zone
/// database.
pub const UTC: &str = "+00:00";

/// Field metadata key holding `type;pk;source type`.
pub const META_KEY: &str = "pulse";

/// The largest decimal precision Arrow's Decimal128 holds.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// Precision and scale from a source type such as `numeric(15,2)`.
pub fn decimal_precision_scale(source_type: &str) -> Option<(u8, i8)> {
    let inner = source_type.split_once('(')?.1.split_once(')')?.0;
    let (p, s) = inner.split_once(',').unwrap_or((inner, "0"));
    let p: u8 = p.trim().parse().ok()?;
    let s: i8 = s.trim().parse().ok()?;
    ((1..=MAX_DECIMAL_PRECISION).contains(&p) && s >= 0 && (s as u8) <= p).then_some((p, s))
}

/// The Arrow type of a logical column.
pub fn arrow_type(col: &Column) -> ArrowType {
    match DataType::try_from(col.data_type).unwrap_or(DataType::String) {
        DataType::Bool => ArrowType::Boolean,
        DataType::Int => ArrowType::Int64,
        DataType::Float => ArrowType::Float64,
        DataType::Decimal => match decimal_precision_scale(&col.source_type) {
            Some((p, s)) => ArrowType::Decimal128(p, s),
            None => ArrowType::Decimal128(MAX_DECIMAL_PRECISION, 10),
        },
        DataType::Binary => ArrowType::Binary,
        DataType::Date => ArrowType::Date32,
        DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        DataType::String | DataType::Json | DataType::Uuid | DataType::Unspecified => ArrowType::Utf8,
    }
}

/// The Arrow schema of a logical schema. Field metadata keeps the logical
/// type and source type so the schema round-trips through Parquet.
pub fn arrow_schema(schema: &Schema) -> SchemaRef {
    Arc::new(ArrowSchema::new(
        schema
            .columns
            .iter()
            .map(|c| {
                // One key, so the serialized schema (and the Parquet bytes
                // that embed it) never depends on hash-map order.
                let mut meta = std::collections::HashMap::new();
                meta.insert(
                    META_KEY.to_string(),
                    format!(
                        "{};{};{}",
                        data_type_name(c.data_type),
                        if c.primary_key { "pk" } else { "" },
                        c.source_type
                    ),
                );
                Field::new(&c.name, arrow_type(c), c.nullable).with_metadata(meta)
            })
            .collect::<Vec<_>>(),
    ))
}

/// The logical schema written into an Arrow schema by [`arrow_schema`], or
/// inferred from the Arrow types of a foreign one (Parquet and CSV files).
pub fn logical_schema(schema: &ArrowSchema) -> Schema {
    Schema {
        columns: schema
            .fields()
            .iter()
            .map(|f| {
                let meta = f.metadata().get(META_KEY).map(|m| {
                    let mut parts = m.splitn(3, ';');
                    let (t, pk, source) = (parts.next(), parts.next(), parts.next());
                    (t.and_then(data_type_from_name), pk == Some("pk"), source.unwrap_or("").to_string())
                });
                let data_type = meta.as_ref().and_then(|m| m.0).unwrap_or_else(|| logical_type_of(f.data_type()));
                Column {
                    name: f.name().clone(),
                    data_type: data_type as i32,
                    source_type: meta.as_ref().map(|m| m.2.clone()).unwrap_or_else(|| f.data_type().to_string()),
                    nullable: f.is_nullable(),
                    primary_key: meta.as_ref().is_some_and(|m| m.1),
                }
            })
            .collect(),
    }
}

/// The logical type of a foreign Arrow type.
pub fn logical_type_of(t: &ArrowType) -> DataType {
    match t {
        ArrowType::Boolean => DataType::Bool,
        ArrowType::Int8
        | ArrowType::Int16
        | ArrowType::Int32
        | ArrowType::Int64
        | ArrowType::UInt8
        | ArrowType::UInt16
        | ArrowType::UInt32
        | ArrowType::UInt64 => DataType::Int,
        ArrowType::Float16 | ArrowType::Float32 | ArrowType::Float64 => DataType::Float,
        ArrowType::Decimal128(..) | ArrowType::Decimal256(..) => DataType::Decimal,
        ArrowType::Binary | ArrowType::LargeBinary | ArrowType::FixedSizeBinary(_) | ArrowType::BinaryView => {
            DataType::Binary
        }
        ArrowType::Date32 | ArrowType::Date64 => DataType::Date,
        ArrowType::Timestamp(..) => DataType::Timestamp,
        _ => DataType::String,
    }
}

pub fn data_type_name(t: i32) -> &'static str {
    match DataType::try_from(t).unwrap_or(DataType::Unspecified) {
        DataType::Bool => "bool",
        DataType::Int => "int",
        DataType::Float => "float",
        DataType::Decimal => "decimal",
        DataType::String => "string",
        DataType::Binary => "binary",
        DataType::Date => "date",
        DataType::Timestamp => "timestamp",
        DataType::Json => "json",
        DataType::Uuid => "uuid",
        DataType::Unspecified => "unspecified",
    }
}

pub fn data_type_from_name(name: &str) -> Option<DataType> {
    Some(match name {
        "bool" => DataType::Bool,
        "int" => DataType::Int,
        "float" => DataType::Float,
        "decimal" => DataType::Decimal,
        "string" => DataType::String,
        "binary" => DataType::Binary,
        "date" => DataType::Date,
        "timestamp" => DataType::Timestamp,
        "json" => DataType::Json,
        "uuid" => DataType::Uuid,
        _ => return None,
    })
}

/// Casts a foreign array (e.g. Int32 from a Parquet file, Utf8 timestamps
/// of a CSV) to the canonical Arrow type of its logical column.
pub fn to_canonical(array: &ArrayRef, target: &ArrowType) -> Result<ArrayRef, DatasourceError> {
    if array.data_type() == target {
        return Ok(array.clone());
    }
    Ok(arrow::compute::cast(array, target)?)
}

/// Casts every column of a batch to the canonical schema.
pub fn canonical_batch(
    batch: &arrow::record_batch::RecordBatch,
    schema: &SchemaRef,
) -> Result<arrow::record_batch::RecordBatch, DatasourceError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(a, f)| to_canonical(a, f.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(arrow::record_batch::RecordBatch::try_new(schema.clone(), columns)?)
}

/// The value at `row` of a canonical array, as a typed scalar (unset kind
/// for null).
pub fn value_at(array: &dyn Array, row: usize) -> Value {
    if array.is_null(row) {
        return Value { kind: None };
    }
    let any = array.as_any();
    let kind = match array.data_type() {
        ArrowType::Boolean => {
            Kind::BoolValue(any.downcast_ref::<BooleanArray>().map(|a| a.value(row)).unwrap_or(false))
        }
        ArrowType::Int64 => Kind::IntValue(any.downcast_ref::<Int64Array>().map(|a| a.value(row)).unwrap_or(0)),
        ArrowType::Float64 => Kind::FloatValue(any.downcast_ref::<Float64Array>().map(|a| a.value(row)).unwrap_or(0.0)),
        ArrowType::Decimal128(_, _) => match any.downcast_ref::<Decimal128Array>() {
            Some(a) => Kind::DecimalValue(a.value_as_string(row)),
            None => return Value { kind: None },
        },
        ArrowType::Utf8 => {
            Kind::StringValue(any.downcast_ref::<StringArray>().map(|a| a.value(row).to_string()).unwrap_or_default())
        }
        ArrowType::Binary => {
            Kind::BinaryValue(any.downcast_ref::<BinaryArray>().map(|a| a.value(row).to_vec()).unwrap_or_default())
        }
        ArrowType::Date32 => match any.downcast_ref::<Date32Array>().and_then(|a| a.value_as_date(row)) {
            Some(d) => Kind::DateValue(d.format("%Y-%m-%d").to_string()),
            None => return Value { kind: None },
        },
        ArrowType::Timestamp(TimeUnit::Microsecond, _) => {
            match any.downcast_ref::<TimestampMicrosecondArray>().map(|a| a.value(row)) {
                Some(us) => Kind::TimestampValue(micros_to_proto(us)),
                None => return Value { kind: None },
            }
        }
        _ => {
            // Not a canonical type: fall back to its display form.
            let formatted = arrow::util::display::array_value_to_string(array, row).unwrap_or_default();
            Kind::StringValue(formatted)
        }
    };
    Value { kind: Some(kind) }
}

pub fn micros_to_proto(us: i64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: us.div_euclid(1_000_000), nanos: (us.rem_euclid(1_000_000) * 1000) as i32 }
}

pub fn proto_to_micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos) / 1000
}

pub fn timestamp_of(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
}

pub fn parse_date(field: &str, s: &str) -> Result<NaiveDate, DatasourceError> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| DatasourceError::invalid(field, format!("'{s}' is not a date: use YYYY-MM-DD")))
}

/// Checks that a value fits a column's logical type (so literals and bind
/// parameters are well-typed), naming the field when it does not.
pub fn check_value_for(field: &str, value: &Value, col: &Column) -> Result<(), DatasourceError> {
    let Some(kind) = &value.kind else {
        return Err(DatasourceError::invalid(field, "must not be null"));
    };
    let dt = DataType::try_from(col.data_type).unwrap_or(DataType::Unspecified);
    let ok = match (dt, kind) {
        (DataType::Int, Kind::IntValue(_)) => true,
        (DataType::Float, Kind::FloatValue(f)) => f.is_finite(),
        (DataType::Float, Kind::IntValue(_)) => true,
        (DataType::Decimal, Kind::DecimalValue(d)) => is_decimal_text(d),
        (DataType::Decimal, Kind::IntValue(_)) => true,
        (DataType::String | DataType::Json, Kind::StringValue(s)) => !s.contains('\0'),
        (DataType::Uuid, Kind::UuidValue(_) | Kind::StringValue(_)) => true,
        (DataType::Date, Kind::DateValue(d)) => parse_date(field, d).is_ok(),
        (DataType::Timestamp, Kind::TimestampValue(_)) => true,
        (DataType::Bool, Kind::BoolValue(_)) => true,
        (DataType::Binary, Kind::BinaryValue(_)) => true,
        _ => false,
    };
    if !ok {
        return Err(DatasourceError::invalid(
            field,
            format!(
                "a {} value does not fit column '{}' of type {}",
                kind_name(kind),
                col.name,
                data_type_name(col.data_type)
            ),
        ));
    }
    if let Kind::UuidValue(u) | Kind::StringValue(u) = kind
        && dt == DataType::Uuid
        && !is_uuid_text(u)
    {
        return Err(DatasourceError::invalid(field, format!("'{u}' is not a UUID")));
    }
    Ok(())
}

pub fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::BoolValue(_) => "bool",
        Kind::IntValue(_) => "int",
        Kind::FloatValue(_) => "float",
        Kind::DecimalValue(_) => "decimal",
        Kind::StringValue(_) => "string",
        Kind::BinaryValue(_) => "binary",
        Kind::DateValue(_) => "date",
        Kind::TimestampValue(_) => "timestamp",
        Kind::UuidValue(_) => "uuid",
    }
}

/// `-?digits(.digits)?`, nothing else.
pub fn is_decimal_text(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    !int.is_empty()
        && int.len() <= 40
        && frac.len() <= 40
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(s.contains('.') && frac.is_empty())
}

pub fn is_uuid_text(s: &str) -> bool {
    s.len() == 36
        && s.bytes()
            .enumerate()
            .all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() })
}

/// Orders two scalars of the same kind (used to keep split points ascending).
pub fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (&a.kind, &b.kind) {
        (Some(Kind::IntValue(x)), Some(Kind::IntValue(y))) => x.cmp(y),
        (Some(Kind::FloatValue(x)), Some(Kind::FloatValue(y))) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        (Some(Kind::DecimalValue(x)), Some(Kind::DecimalValue(y))) => {
            let (fx, fy) = (x.parse::<f64>().unwrap_or(0.0), y.parse::<f64>().unwrap_or(0.0));
            fx.partial_cmp(&fy).unwrap_or(Ordering::Equal)
        }
        (Some(Kind::StringValue(x)), Some(Kind::StringValue(y))) => x.cmp(y),
        (Some(Kind::DateValue(x)), Some(Kind::DateValue(y))) => x.cmp(y),
        (Some(Kind::TimestampValue(x)), Some(Kind::TimestampValue(y))) => proto_to_micros(x).cmp(&proto_to_micros(y)),
        (Some(Kind::UuidValue(x)), Some(Kind::UuidValue(y))) => x.cmp(y),
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        _ => Ordering::Equal,
    }
}

/// Decimal text (`-12.345`) as an integer scaled by 10^scale, rounded half
/// away from zero past the scale.
pub fn decimal_text_to_i128(text: &str, scale: i8) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = usize::try_from(scale).ok()?;
    let mut acc: i128 = 0;
    for b in int.bytes() {
        acc = acc.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    let fb = frac.as_bytes();
    for i in 0..scale {
        let d = fb.get(i).map(|b| b - b'0').unwrap_or(0);
        acc = acc.checked_mul(10)?.checked_add(i128::from(d))?;
    }
    if fb.get(scale).is_some_and(|b| *b >= b'5') {
        acc = acc.checked_add(1)?;
    }
    Some(if neg { -acc } else { acc })
}

/// The text of a scaled integer, e.g. (1250, 2) → "12.50".
pub fn i128_to_decimal_text(v: i128, scale: i8) -> String {
    let digits = v.unsigned_abs().to_string();
    let s = usize::try_from(scale).unwrap_or(0);
    let text = if s == 0 {
        digits
    } else if digits.len() > s {
        format!("{}.{}", &digits[..digits.len() - s], &digits[digits.len() - s..])
    } else {
        format!("0.{}{}", "0".repeat(s - digits.len()), digits)
    };
    if v < 0 { format!("-{text}") } else { text }
}

/// `count - 1` split points evenly spaced between min and max (numeric and
/// temporal values only; decimals need their column's scale).
pub fn even_splits(min: &Value, max: &Value, count: u32, decimal_scale: Option<i8>) -> Option<Vec<Value>> {
    let n = i128::from(count);
    let lerp = |lo: i128, hi: i128| -> Vec<i128> { (1..n).map(|k| lo + (hi - lo) * k / n).collect() };
    let kinds: Vec<Kind> = match (&min.kind, &max.kind, decimal_scale) {
        (Some(Kind::IntValue(a)), Some(Kind::IntValue(b)), _) => {
            lerp(i128::from(*a), i128::from(*b)).into_iter().map(|v| Kind::IntValue(v as i64)).collect()
        }
        (Some(Kind::FloatValue(a)), Some(Kind::FloatValue(b)), _) => {
            (1..count).map(|k| Kind::FloatValue(a + (b - a) * f64::from(k) / f64::from(count))).collect()
        }
        (Some(Kind::DecimalValue(a)), Some(Kind::DecimalValue(b)), Some(s)) => {
            let (a, b) = (decimal_text_to_i128(a, s)?, decimal_text_to_i128(b, s)?);
            lerp(a, b).into_iter().map(|v| Kind::DecimalValue(i128_to_decimal_text(v, s))).collect()
        }
        (Some(Kind::DateValue(a)), Some(Kind::DateValue(b)), _) => {
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
            let da = i128::from((NaiveDate::parse_from_str(a, "%Y-%m-%d").ok()? - epoch).num_days());
            let db = i128::from((NaiveDate::parse_from_str(b, "%Y-%m-%d").ok()? - epoch).num_days());
            lerp(da, db)
                .into_iter()
                .filter_map(|d| {
                    let day = epoch.checked_add_signed(chrono::Duration::days(d as i64))?;
                    Some(Kind::DateValue(day.format("%Y-%m-%d").to_string()))
                })
                .collect()
        }
        (Some(Kind::TimestampValue(a)), Some(Kind::TimestampValue(b)), _) => {
            lerp(i128::from(proto_to_micros(a)), i128::from(proto_to_micros(b)))
                .into_iter()
                .map(|us| Kind::TimestampValue(micros_to_proto(us as i64)))
                .collect()
        }
        _ => return None,
    };
    Some(kinds.into_iter().map(|k| Value { kind: Some(k) }).collect())
}

/// Split candidates reduced to strictly ascending values inside `(min, max]`.
pub fn ordered_splits(candidates: Vec<Value>, min: &Value, max: &Value) -> Vec<Value> {
    let mut splits: Vec<Value> = Vec::new();
    for v in candidates {
        let above = compare_values(&v, splits.last().unwrap_or(min)) == std::cmp::Ordering::Greater;
        let within = compare_values(&v, max) != std::cmp::Ordering::Greater;
        if v.kind.is_some() && above && within {
            splits.push(v);
        }
    }
    splits
}

/// An Arrow builder for one canonical column type; connectors append their
/// decoded values to the variant `new` picked.
pub enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Decimal(Decimal128Builder),
    Text(StringBuilder),
    Bytes(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    pub fn new(t: &ArrowType, capacity: usize) -> Self {
        match t {
            ArrowType::Boolean => Self::Bool(BooleanBuilder::with_capacity(capacity)),
            ArrowType::Int64 => Self::Int(Int64Builder::with_capacity(capacity)),
            ArrowType::Float64 => Self::Float(Float64Builder::with_capacity(capacity)),
            ArrowType::Decimal128(p, s) => Self::Decimal(
                Decimal128Builder::with_capacity(capacity).with_precision_and_scale(*p, *s).unwrap_or_default(),
            ),
            ArrowType::Binary => Self::Bytes(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            ArrowType::Date32 => Self::Date(Date32Builder::with_capacity(capacity)),
            ArrowType::Timestamp(_, tz) => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone_opt(tz.clone()))
            }
            _ => Self::Text(StringBuilder::with_capacity(capacity, capacity * 16)),
        }
    }

    pub fn null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int(b) => b.append_null(),
            Self::Float(b) => b.append_null(),
            Self::Decimal(b) => b.append_null(),
            Self::Text(b) => b.append_null(),
            Self::Bytes(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
        }
    }

    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int(b) => Arc::new(b.finish()),
            Self::Float(b) => Arc::new(b.finish()),
            Self::Decimal(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
            Self::Bytes(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Self::Bool(b) => b.len(),
            Self::Int(b) => b.len(),
            Self::Float(b) => b.len(),
            Self::Decimal(b) => b.len(),
            Self::Text(b) => b.len(),
            Self::Bytes(b) => b.len(),
            Self::Date(b) => b.len(),
            Self::Timestamp(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_types() {
        assert_eq!(decimal_precision_scale("numeric(15,2)"), Some((15, 2)));
        assert_eq!(decimal_precision_scale("decimal(10)"), Some((10, 0)));
        assert_eq!(decimal_precision_scale("numeric"), None);
        assert_eq!(decimal_precision_scale("numeric(60,2)"), None);
        assert!(is_decimal_text("-12.50") && is_decimal_text("3") && !is_decimal_text("1e5") && !is_decimal_text("1."));
        assert!(!is_decimal_text("1;DROP"));
    }

    #[test]
    fn schema_round_trips_through_arrow() {
        let schema = Schema {
            columns: vec![
                Column {
                    name: "id".into(),
                    data_type: DataType::Int as i32,
                    source_type: "bigint".into(),
                    nullable: false,
                    primary_key: true,
                },
                Column {
                    name: "price".into(),
                    data_type: DataType::Decimal as i32,
                    source_type: "numeric(12,2)".into(),
                    nullable: true,
                    primary_key: false,
                },
            ],
        };
        let arrow = arrow_schema(&schema);
        assert_eq!(arrow.field(1).data_type(), &ArrowType::Decimal128(12, 2));
        assert_eq!(logical_schema(&arrow), schema);
    }

    #[test]
    fn values_are_read_out_of_arrays() {
        let a: ArrayRef =
            Arc::new(Decimal128Array::from(vec![Some(1250), None]).with_precision_and_scale(10, 2).unwrap());
        assert_eq!(value_at(&a, 0).kind, Some(Kind::DecimalValue("12.50".into())));
        assert_eq!(value_at(&a, 1).kind, None);
        let t: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![-1_500_000]).with_timezone(UTC));
        let Some(Kind::TimestampValue(ts)) = value_at(&t, 0).kind else { panic!() };
        assert_eq!(proto_to_micros(&ts), -1_500_000);
    }
}
