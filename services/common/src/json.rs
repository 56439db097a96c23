//! `google.protobuf.Struct` ⇄ JSON. Struct numbers are doubles; whole
//! numbers come back as JSON integers, so a version `3` stays `3`, not `3.0`.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};

pub fn to_json(s: &Struct) -> serde_json::Value {
    serde_json::Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())
}

pub fn value_to_json(v: &Value) -> serde_json::Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                serde_json::Value::from(*n as i64)
            } else {
                serde_json::Number::from_f64(*n).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
            }
        }
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(l)) => serde_json::Value::Array(l.values.iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => to_json(s),
    }
}

/// A JSON object as a Struct; anything else is wrapped as `{"value": …}`.
pub fn to_struct(v: &serde_json::Value) -> Struct {
    match v {
        serde_json::Value::Object(map) => {
            Struct { fields: map.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect() }
        }
        other => Struct { fields: [("value".to_string(), json_to_value(other))].into_iter().collect() },
    }
}

pub fn json_to_value(v: &serde_json::Value) -> Value {
    let kind = match v {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(a) => Kind::ListValue(ListValue { values: a.iter().map(json_to_value).collect() }),
        serde_json::Value::Object(_) => Kind::StructValue(to_struct(v)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_keeps_whole_numbers_whole() {
        let v = serde_json::json!({"a": 3, "b": 2.5, "c": [true, null, "x"], "d": {"e": -7}});
        assert_eq!(super::to_json(&super::to_struct(&v)), v);
    }
}
