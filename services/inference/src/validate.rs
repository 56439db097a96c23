//! Prediction inputs against the model's contract: every problem of every
//! row is found (not just the first), and valid rows become the Arrow
//! columns the stored feature pipeline transforms — the same code path
//! training used, so serving applies exactly the training transform.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use pulse_proto::inference::v1::{FeatureValue, feature_value::Kind};
use pulse_proto::trainer::v1::{Contract, Feature, FeatureType, NonFinitePolicy};
use sha2::{Digest, Sha256};

use crate::error::{InferenceError, Problem};

/// One validated cell, in the contract's feature order.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Float(f64),
    Int(i64),
    Bool(bool),
    Category(String),
}

/// A row that passed the contract, with the hash of its canonical form.
#[derive(Debug, Clone)]
pub struct ValidRow {
    pub cells: Vec<Cell>,
    pub input_sha256: String,
}

fn feature_type(f: &Feature) -> FeatureType {
    FeatureType::try_from(f.r#type).unwrap_or(FeatureType::Unspecified)
}

fn type_name(t: FeatureType) -> &'static str {
    match t {
        FeatureType::Float => "a float",
        FeatureType::Int => "an int",
        FeatureType::Bool => "a bool",
        FeatureType::Category => "a category (string)",
        FeatureType::Unspecified => "a value",
    }
}

fn kind_name(k: &Kind) -> &'static str {
    match k {
        Kind::FloatValue(_) => "a float",
        Kind::IntValue(_) => "an int",
        Kind::BoolValue(_) => "a bool",
        Kind::CategoryValue(_) => "a string",
    }
}

/// Checks one row; `row` is its index in the request (reported as given).
pub fn check_row(
    contract: &Contract,
    row: u32,
    features: &BTreeMap<String, FeatureValue>,
    problems: &mut Vec<Problem>,
) -> Option<ValidRow> {
    let before = problems.len();
    let mut push = |feature: &str, problem: &'static str, message: String| {
        problems.push(Problem { row, feature: feature.to_string(), problem, message });
    };
    let mut unknown: Vec<&String> =
        features.keys().filter(|k| !contract.features.iter().any(|f| &f.name == *k)).collect();
    unknown.sort();
    for name in unknown {
        push(name, "unknown", format!("{name}: is not a feature of the contract"));
    }
    let mut cells = Vec::with_capacity(contract.features.len());
    for f in &contract.features {
        let ty = feature_type(f);
        let Some(value) = features.get(&f.name) else {
            push(&f.name, "missing", format!("{}: is missing ({} is required)", f.name, type_name(ty)));
            continue;
        };
        let cell = match (&value.kind, ty) {
            (None, _) => Cell::Null,
            (Some(Kind::FloatValue(v)), FeatureType::Float) => Cell::Float(*v),
            // An int is accepted for a float; no other conversion is made.
            (Some(Kind::IntValue(v)), FeatureType::Float) => Cell::Float(*v as f64),
            (Some(Kind::IntValue(v)), FeatureType::Int) => Cell::Int(*v),
            (Some(Kind::BoolValue(v)), FeatureType::Bool) => Cell::Bool(*v),
            (Some(Kind::CategoryValue(v)), FeatureType::Category) => Cell::Category(v.clone()),
            (Some(k), _) => {
                push(&f.name, "type", format!("{}: is {}, the contract says {}", f.name, kind_name(k), type_name(ty)));
                continue;
            }
        };
        let cell = match cell {
            Cell::Float(v) if !v.is_finite() => {
                if NonFinitePolicy::try_from(f.non_finite) == Ok(NonFinitePolicy::AsNull) {
                    Cell::Null
                } else {
                    push(&f.name, "non_finite", format!("{}: {v} is not a finite number", f.name));
                    continue;
                }
            }
            other => other,
        };
        if cell == Cell::Null && !f.nullable {
            push(&f.name, "null", format!("{}: is null and the feature is not nullable", f.name));
            continue;
        }
        let number = match &cell {
            Cell::Float(v) => Some(*v),
            Cell::Int(v) => Some(*v as f64),
            _ => None,
        };
        if let Some(x) = number {
            if let Some(min) = f.min
                && x < min
            {
                push(&f.name, "min", format!("{}: {x} is below min {min}", f.name));
                continue;
            }
            if let Some(max) = f.max
                && x > max
            {
                push(&f.name, "max", format!("{}: {x} is above max {max}", f.name));
                continue;
            }
        }
        if let Cell::Category(c) = &cell
            && !f.categories.is_empty()
            && !f.categories.iter().any(|a| a == c)
        {
            push(
                &f.name,
                "category",
                format!("{}: '{c}' is not one of the allowed categories ({})", f.name, f.categories.join(", ")),
            );
            continue;
        }
        cells.push(cell);
    }
    (problems.len() == before).then(|| {
        let input_sha256 = canonical_sha256(contract, &cells);
        ValidRow { cells, input_sha256 }
    })
}

/// Checks every row; all problems or all rows.
pub fn check_rows<'a>(
    contract: &Contract,
    rows: impl Iterator<Item = &'a BTreeMap<String, FeatureValue>>,
) -> Result<Vec<ValidRow>, InferenceError> {
    let mut problems = Vec::new();
    let mut valid = Vec::new();
    for (i, r) in rows.enumerate() {
        if let Some(v) = check_row(contract, i as u32, r, &mut problems) {
            valid.push(v);
        }
    }
    if problems.is_empty() { Ok(valid) } else { Err(InferenceError::Rows(problems)) }
}

/// SHA-256 of the row in contract order with typed values: the cache key and
/// the logged input hash (the same input always hashes the same).
fn canonical_sha256(contract: &Contract, cells: &[Cell]) -> String {
    let mut h = Sha256::new();
    for (f, c) in contract.features.iter().zip(cells) {
        h.update(f.name.as_bytes());
        match c {
            Cell::Null => h.update([0u8]),
            Cell::Float(v) => {
                h.update([1u8]);
                h.update(v.to_bits().to_le_bytes());
            }
            Cell::Int(v) => {
                h.update([2u8]);
                h.update(v.to_le_bytes());
            }
            Cell::Bool(v) => h.update([3u8, u8::from(*v)]),
            Cell::Category(s) => {
                h.update([4u8]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    hex::encode(h.finalize())
}

/// Valid rows as one record batch with the contract's feature columns.
pub fn to_batch(contract: &Contract, rows: &[&[Cell]]) -> Result<RecordBatch, InferenceError> {
    let mut fields = Vec::with_capacity(contract.features.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(contract.features.len());
    for (i, f) in contract.features.iter().enumerate() {
        let (dt, col): (DataType, ArrayRef) = match feature_type(f) {
            FeatureType::Float => {
                let mut b = Float64Builder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(match &r[i] {
                        Cell::Float(v) => Some(*v),
                        _ => None,
                    });
                }
                (DataType::Float64, Arc::new(b.finish()))
            }
            FeatureType::Int => {
                let mut b = Int64Builder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(match &r[i] {
                        Cell::Int(v) => Some(*v),
                        _ => None,
                    });
                }
                (DataType::Int64, Arc::new(b.finish()))
            }
            FeatureType::Bool => {
                let mut b = BooleanBuilder::with_capacity(rows.len());
                for r in rows {
                    b.append_option(match &r[i] {
                        Cell::Bool(v) => Some(*v),
                        _ => None,
                    });
                }
                (DataType::Boolean, Arc::new(b.finish()))
            }
            FeatureType::Category | FeatureType::Unspecified => {
                let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
                for r in rows {
                    b.append_option(match &r[i] {
                        Cell::Category(v) => Some(v.as_str()),
                        _ => None,
                    });
                }
                (DataType::Utf8, Arc::new(b.finish()))
            }
        };
        fields.push(Field::new(&f.name, dt, true));
        columns.push(col);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| InferenceError::Scoring(format!("building the input batch: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> Contract {
        Contract {
            features: vec![
                Feature {
                    name: "tenure".into(),
                    r#type: FeatureType::Int as i32,
                    min: Some(0.0),
                    max: Some(100.0),
                    ..Default::default()
                },
                Feature {
                    name: "spend".into(),
                    r#type: FeatureType::Float as i32,
                    nullable: true,
                    ..Default::default()
                },
                Feature {
                    name: "plan".into(),
                    r#type: FeatureType::Category as i32,
                    categories: vec!["basic".into(), "pro".into()],
                    ..Default::default()
                },
                Feature { name: "active".into(), r#type: FeatureType::Bool as i32, ..Default::default() },
            ],
            ..Default::default()
        }
    }

    fn v(k: Kind) -> FeatureValue {
        FeatureValue { kind: Some(k) }
    }

    fn good() -> BTreeMap<String, FeatureValue> {
        BTreeMap::from([
            ("tenure".to_string(), v(Kind::IntValue(3))),
            ("spend".to_string(), v(Kind::IntValue(20))),
            ("plan".to_string(), v(Kind::CategoryValue("pro".into()))),
            ("active".to_string(), v(Kind::BoolValue(true))),
        ])
    }

    #[test]
    fn a_valid_row_passes_and_hashes_canonically() {
        let rows = check_rows(&contract(), [good()].iter()).unwrap();
        assert_eq!(rows[0].cells[1], Cell::Float(20.0), "an int is accepted for a float");
        let mut same = good();
        same.insert("spend".into(), v(Kind::FloatValue(20.0)));
        let again = check_rows(&contract(), [same].iter()).unwrap();
        assert_eq!(rows[0].input_sha256, again[0].input_sha256);
        let mut other = good();
        other.insert("tenure".into(), v(Kind::IntValue(4)));
        assert_ne!(rows[0].input_sha256, check_rows(&contract(), [other].iter()).unwrap()[0].input_sha256);
        let batch = to_batch(&contract(), &[&rows[0].cells]).unwrap();
        assert_eq!((batch.num_rows(), batch.num_columns()), (1, 4));
    }

    #[test]
    fn every_problem_of_every_row_is_listed() {
        let mut bad = good();
        bad.remove("active");
        bad.insert("tenure".into(), v(Kind::IntValue(-3)));
        bad.insert("plan".into(), v(Kind::CategoryValue("gold".into())));
        bad.insert("colour".into(), v(Kind::CategoryValue("red".into())));
        let mut bad2 = good();
        bad2.insert("tenure".into(), v(Kind::FloatValue(2.5)));
        bad2.insert("spend".into(), v(Kind::FloatValue(f64::NAN)));
        bad2.insert("plan".into(), FeatureValue { kind: None });
        let Err(InferenceError::Rows(p)) = check_rows(&contract(), [good(), bad, bad2].iter()) else {
            panic!("refused")
        };
        let got: Vec<(u32, &str, &str)> = p.iter().map(|p| (p.row, p.feature.as_str(), p.problem)).collect();
        assert_eq!(
            got,
            [
                (1, "colour", "unknown"),
                (1, "tenure", "min"),
                (1, "plan", "category"),
                (1, "active", "missing"),
                (2, "tenure", "type"),
                (2, "spend", "non_finite"),
                (2, "plan", "null"),
            ]
        );
        assert!(p[1].message.contains("-3 is below min 0"), "{}", p[1].message);
        let e = InferenceError::Rows(p);
        assert!(e.to_string().contains("row 1: tenure: -3 is below min 0"), "{e}");
    }
}
