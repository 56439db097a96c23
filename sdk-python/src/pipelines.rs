//! Retraining policies, pipelines, pipeline runs and events (the drift
//! service's closed loop) for the SDK.
//!
//! Python hands over plain dicts, sent as JSON, that mirror the contracts'
//! proto3 JSON mapping with a few conveniences for notebooks. Before anything
//! is sent, [`shape`] walks a request along its message descriptor and
//!
//! - refuses unknown keys, naming the path and the keys it expected
//!   (`steps[1].action: unknown key 'methd'; did you mean 'method'? …`);
//! - refuses two members of one `oneof` (`action` and `delay` in one step);
//! - reads enum values in any case, with or without their prefix (`"psi"`,
//!   `"PSI"`, `"DRIFT_METRIC_PSI"`);
//! - reads durations as `"24h"`, `"1h30m"`, `"10m"`, `"30s"`, `"500ms"` or a
//!   number of seconds, timestamps as RFC 3339 text or epoch seconds;
//! - reads a bare value as the main field of a few small messages
//!   (`{"cron": "0 3 * * *"}`, `{"event": "acme.orders.loaded.v1"}`,
//!   `{"delay": "10m"}`, `{"condition": "steps.a.output.ok == true"}`,
//!   `{"retry": 3}`, `{"feedback": 1000}`).
//!
//! Those errors are raised as `pulse.InvalidSpec`, both a
//! `pulse.InvalidArgument` and a `ValueError`. Answers come back as JSON with
//! snake_case names and enum values without their prefix, in upper case
//! (`"SUCCEEDED"`, `"STEP_COMPLETED"`, `"PSI"`); an unspecified enum is
//! `null`.

use std::sync::{Arc, OnceLock};

use prost_reflect::{DescriptorPool, DynamicMessage, EnumDescriptor, Kind, MessageDescriptor, SerializeOptions};
use pulse_client::pulse_proto::common::v1::EventEnvelope;
use pulse_client::pulse_proto::drift::v1 as dr;
use pulse_client::pulse_proto::prost::Message;
use pulse_client::pulse_proto::tonic::Streaming;
use pulse_client::{Client, ClientError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use serde_json::{Map, Value};

const PACKAGE: &str = "pulse.drift.v1.";

// ---- the error --------------------------------------------------------------

static INVALID_SPEC: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `pulse.InvalidSpec`: a subclass of both `InvalidArgument` and
/// `ValueError`, so callers may catch either.
pub(crate) fn invalid_spec_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    INVALID_SPEC
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [py.get_type::<super::InvalidArgument>().into_any(), py.get_type::<PyValueError>().into_any()],
            )?;
            let ns = PyDict::new(py);
            ns.set_item("__module__", "pulse")?;
            ns.set_item(
                "__doc__",
                "A policy, pipeline, step, trigger or event given to the SDK is malformed (an unknown key, \
                 enum value or duration); raised before anything is sent. Both an InvalidArgument and a \
                 ValueError; the message starts with the path of the field.",
            )?;
            let ty = py.get_type::<PyType>().call1(("InvalidSpec", bases, ns))?;
            Ok::<_, PyErr>(ty.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// An `InvalidSpec` with `code` "INVALID_ARGUMENT" and `message`.
pub(crate) fn spec_error(py: Python<'_>, message: String) -> PyErr {
    let ty = match invalid_spec_type(py) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let err = PyErr::from_type(ty.clone(), message.clone());
    let value = err.value(py);
    if let Err(e) = value.setattr("code", "INVALID_ARGUMENT").and_then(|()| value.setattr("message", message)) {
        return e;
    }
    err
}

// ---- descriptors ---------------------------------------------------------------

fn pool() -> Result<&'static DescriptorPool, String> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let service = "pulse.drift.v1.DriftService";
        let set = pulse_client::pulse_proto::service(service)
            .ok_or_else(|| format!("the {service} contract is missing from this build"))?
            .descriptor_set;
        let mut pool = DescriptorPool::new();
        pool.decode_file_descriptor_set(set).map_err(|e| e.to_string())?;
        Ok(pool)
    })
    .as_ref()
    .map_err(|e| format!("contracts: {e}"))
}

fn message(name: &str) -> Result<MessageDescriptor, String> {
    pool()?.get_message_by_name(name).ok_or_else(|| format!("contracts: unknown message {name}"))
}

// ---- the calls ---------------------------------------------------------------------

/// The SDK names of the calls this module answers, with their request and
/// answer messages (in `pulse.drift.v1`).
const RPCS: &[(&str, &str, &str)] = &[
    ("set_retraining_policy", "SetRetrainingPolicyRequest", "RetrainingPolicy"),
    ("get_retraining_policy", "GetRetrainingPolicyRequest", "RetrainingPolicy"),
    ("list_retraining_policies", "ListRetrainingPoliciesRequest", "ListRetrainingPoliciesResponse"),
    ("evaluate_policies", "EvaluatePoliciesRequest", "EvaluatePoliciesResponse"),
    ("list_policy_decisions", "ListPolicyDecisionsRequest", "ListPolicyDecisionsResponse"),
    ("create_pipeline", "CreatePipelineRequest", "Pipeline"),
    ("update_pipeline", "UpdatePipelineRequest", "Pipeline"),
    ("get_pipeline", "GetPipelineRequest", "Pipeline"),
    ("list_pipelines", "ListPipelinesRequest", "ListPipelinesResponse"),
    ("start_pipeline_run", "StartPipelineRunRequest", "PipelineRun"),
    ("get_pipeline_run", "GetPipelineRunRequest", "PipelineRun"),
    ("list_pipeline_runs", "ListPipelineRunsRequest", "ListPipelineRunsResponse"),
    ("cancel_pipeline_run", "CancelPipelineRunRequest", "PipelineRun"),
    ("retry_pipeline_run", "RetryPipelineRunRequest", "PipelineRun"),
    ("get_run_timeline", "GetRunTimelineRequest", "RunTimeline"),
    ("publish_events", "PublishEventsRequest", "PublishEventsResponse"),
    ("list_events", "ListEventsRequest", "ListEventsResponse"),
    ("replay_events", "ReplayEventsRequest", "ReplayEventsResponse"),
    // Used by `watch_events` to check its request; not a unary call.
    ("watch_events", "WatchEventsRequest", "pulse.common.v1.EventEnvelope"),
];

/// A request checked and encoded, ready to send.
pub(crate) struct Prepared {
    method: &'static str,
    answer: &'static str,
    body: Vec<u8>,
}

/// None when `method` is not one of this module's calls; otherwise the
/// request checked against its contract (errors name the field).
pub(crate) fn prepare(method: &str, request_json: &str) -> Option<Result<Prepared, String>> {
    let &(name, request, answer) = RPCS.iter().find(|(m, _, _)| *m == method)?;
    Some(encode(&format!("{PACKAGE}{request}"), request_json).map(|body| Prepared { method: name, answer, body }))
}

fn encode(message_name: &str, json: &str) -> Result<Vec<u8>, String> {
    let desc = message(message_name)?;
    let value: Value = serde_json::from_str(json).map_err(|e| format!("request: not JSON: {e}"))?;
    let shaped = shape_request(&desc, value)?;
    let dynamic = DynamicMessage::deserialize(desc, shaped).map_err(|e| format!("request: {e}"))?;
    Ok(dynamic.encode_to_vec())
}

fn decode<M: Message + Default>(body: &[u8]) -> Result<M, ClientError> {
    M::decode(body).map_err(|e| ClientError::InvalidArgument(format!("request: {e}")))
}

/// Sends a prepared request and answers its JSON. `idempotency_key` ""
/// generates one for the mutations.
pub(crate) async fn call(client: Client, p: Prepared, idempotency_key: String) -> Result<String, ClientError> {
    let key = Some(idempotency_key.as_str()).filter(|k| !k.is_empty());
    let b = p.body.as_slice();
    let answer = format!("{PACKAGE}{}", p.answer);
    let answer = answer.as_str();
    match p.method {
        "set_retraining_policy" => {
            let r: dr::SetRetrainingPolicyRequest = decode(b)?;
            to_json(answer, &client.set_retraining_policy(r.policy.unwrap_or_default(), key).await?)
        }
        "get_retraining_policy" => {
            let r: dr::GetRetrainingPolicyRequest = decode(b)?;
            to_json(answer, &client.get_retraining_policy(&r.model).await?)
        }
        "list_retraining_policies" => {
            let r: dr::ListRetrainingPoliciesRequest = decode(b)?;
            let page = r.page.unwrap_or_default();
            to_json(answer, &client.list_retraining_policies(&page.page_token, page.page_size).await?)
        }
        "evaluate_policies" => {
            let r: dr::EvaluatePoliciesRequest = decode(b)?;
            to_json(answer, &client.evaluate_policies(&r.model).await?)
        }
        "list_policy_decisions" => to_json(answer, &client.list_policy_decisions(decode(b)?).await?),
        "create_pipeline" => {
            let r: dr::CreatePipelineRequest = decode(b)?;
            to_json(answer, &client.create_pipeline(r.pipeline.unwrap_or_default(), key).await?)
        }
        "update_pipeline" => {
            let r: dr::UpdatePipelineRequest = decode(b)?;
            to_json(answer, &client.update_pipeline(r.pipeline.unwrap_or_default(), key).await?)
        }
        "get_pipeline" => {
            let r: dr::GetPipelineRequest = decode(b)?;
            to_json(answer, &client.get_pipeline(&r.pipeline_id).await?)
        }
        "list_pipelines" => {
            let r: dr::ListPipelinesRequest = decode(b)?;
            let page = r.page.unwrap_or_default();
            to_json(answer, &client.list_pipelines(&page.page_token, page.page_size).await?)
        }
        "start_pipeline_run" => to_json(answer, &client.start_pipeline_run(decode(b)?, key).await?),
        "get_pipeline_run" => {
            let r: dr::GetPipelineRunRequest = decode(b)?;
            to_json(answer, &client.get_pipeline_run(&r.run_id).await?)
        }
        "list_pipeline_runs" => to_json(answer, &client.list_pipeline_runs(decode(b)?).await?),
        "cancel_pipeline_run" => {
            let r: dr::CancelPipelineRunRequest = decode(b)?;
            to_json(answer, &client.cancel_pipeline_run(&r.run_id, &r.reason).await?)
        }
        "retry_pipeline_run" => {
            let r: dr::RetryPipelineRunRequest = decode(b)?;
            to_json(answer, &client.retry_pipeline_run(&r.run_id).await?)
        }
        "get_run_timeline" => {
            let r: dr::GetRunTimelineRequest = decode(b)?;
            let page = r.page.unwrap_or_default();
            to_json(answer, &client.get_run_timeline(&r.run_id, &page.page_token, page.page_size).await?)
        }
        "publish_events" => {
            let r: dr::PublishEventsRequest = decode(b)?;
            to_json(answer, &client.publish_events(r.events, key).await?)
        }
        "list_events" => to_json(answer, &client.list_events(decode(b)?).await?),
        "replay_events" => to_json(answer, &client.replay_events(decode(b)?, key).await?),
        other => Err(ClientError::InvalidArgument(format!("method: '{other}' is not a unary call"))),
    }
}

// ---- Python → proto JSON -------------------------------------------------------------

/// A request message whose only field is a message (`{"policy": …}`,
/// `{"pipeline": …}`) is a wrapper: paths in errors leave it out, as the
/// server's do ("steps[2].condition.expression: …").
fn shape_request(desc: &MessageDescriptor, value: Value) -> Result<Value, String> {
    let wrapper =
        desc.fields().len() == 1 && desc.fields().all(|f| matches!(f.kind(), Kind::Message(_)) && !f.is_list());
    if wrapper && let Value::Object(mut obj) = value {
        let field = desc.fields().next().expect("one field");
        let mut out = Map::new();
        for (k, v) in std::mem::take(&mut obj) {
            if k == field.name() || k == field.json_name() {
                if !v.is_null() {
                    let Kind::Message(inner) = field.kind() else { unreachable!() };
                    out.insert(field.name().to_string(), shape_message(&inner, v, "")?);
                }
            } else {
                return Err(unknown_key(desc, "", &k));
            }
        }
        return Ok(Value::Object(out));
    }
    shape_message(desc, value, "")
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

fn at(path: &str) -> String {
    if path.is_empty() { "request".to_string() } else { path.to_string() }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "None",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Messages that may be given as their main field's value alone.
fn shorthand(full_name: &str) -> Option<&'static str> {
    Some(match full_name {
        "pulse.drift.v1.CronTrigger" => "expression",
        "pulse.drift.v1.EventTrigger" => "name",
        "pulse.drift.v1.ScheduleCondition" => "cron",
        "pulse.drift.v1.ConditionStep" => "expression",
        "pulse.drift.v1.DelayStep" => "duration",
        "pulse.drift.v1.FeedbackCondition" => "new_feedback",
        "pulse.drift.v1.RetryPolicy" => "max_attempts",
        "pulse.drift.v1.ActionStep" => "method",
        _ => return None,
    })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn unknown_key(desc: &MessageDescriptor, path: &str, key: &str) -> String {
    let names: Vec<String> = desc.fields().map(|f| f.name().to_string()).collect();
    let close = names.iter().map(|n| (edit_distance(key, n), n)).filter(|(d, _)| *d <= 2).min_by_key(|(d, _)| *d);
    let hint = close.map(|(_, n)| format!("did you mean '{n}'? ")).unwrap_or_default();
    format!("{}: unknown key '{key}'; {hint}expected one of: {}", at(path), names.join(", "))
}

fn shape_message(desc: &MessageDescriptor, value: Value, path: &str) -> Result<Value, String> {
    match desc.full_name() {
        "google.protobuf.Duration" => return duration(value, path),
        "google.protobuf.Timestamp" => return timestamp(value, path),
        "google.protobuf.Struct" => {
            return match value {
                Value::Object(_) => Ok(value),
                other => Err(format!("{}: expected a dict, got {}", at(path), kind_of(&other))),
            };
        }
        // Value, ListValue, wrappers: as given.
        name if name.starts_with("google.protobuf.") => return Ok(value),
        _ => {}
    }
    let obj = match value {
        Value::Object(obj) => obj,
        other => match shorthand(desc.full_name()) {
            Some(field) => Map::from_iter([(field.to_string(), other)]),
            None => return Err(format!("{}: expected a dict, got {}", at(path), kind_of(&other))),
        },
    };
    let mut out = Map::new();
    let mut oneofs: Vec<(String, String)> = Vec::new();
    for (key, v) in obj {
        let field = desc
            .get_field_by_name(&key)
            .or_else(|| desc.get_field_by_json_name(&key))
            .ok_or_else(|| unknown_key(desc, path, &key))?;
        if out.contains_key(field.name()) {
            return Err(format!("{}: '{key}' is given twice (as '{}' too)", at(path), field.name()));
        }
        if v.is_null() {
            continue;
        }
        if let Some(oneof) = field.containing_oneof()
            && !oneof.name().starts_with('_')
        {
            if let Some((_, other)) = oneofs.iter().find(|(o, _)| o == oneof.name()) {
                let members: Vec<String> = oneof.fields().map(|f| f.name().to_string()).collect();
                return Err(format!(
                    "{}: give one of {}, not both '{other}' and '{}'",
                    at(path),
                    members.join(", "),
                    field.name()
                ));
            }
            oneofs.push((oneof.name().to_string(), field.name().to_string()));
        }
        let fpath = join(path, field.name());
        let shaped = if field.is_map() {
            let Kind::Message(entry) = field.kind() else { unreachable!("a map field is a message") };
            let value_field = entry.map_entry_value_field();
            let Value::Object(map) = v else {
                return Err(format!("{fpath}: expected a dict, got {}", kind_of(&v)));
            };
            let mut m = Map::new();
            for (k, item) in map {
                let kpath = format!("{fpath}[{k:?}]");
                let item = match (&value_field.kind(), item) {
                    // Text maps (event metadata) take numbers and booleans as text.
                    (Kind::String, Value::Number(n)) => Value::String(n.to_string()),
                    (Kind::String, Value::Bool(b)) => Value::String(b.to_string()),
                    (_, item) => item,
                };
                m.insert(k, shape_single(&value_field.kind(), item, &kpath)?);
            }
            Value::Object(m)
        } else if field.is_list() {
            let Value::Array(items) = v else {
                return Err(format!("{fpath}: expected a list, got {}", kind_of(&v)));
            };
            let kind = field.kind();
            let shaped: Result<Vec<Value>, String> = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let ipath = format!("{fpath}[{i}]");
                    if item.is_null() {
                        return Err(format!("{ipath}: expected a value, got None"));
                    }
                    shape_single(&kind, item, &ipath)
                })
                .collect();
            Value::Array(shaped?)
        } else {
            shape_single(&field.kind(), v, &fpath)?
        };
        out.insert(field.name().to_string(), shaped);
    }
    Ok(Value::Object(out))
}

fn shape_single(kind: &Kind, v: Value, path: &str) -> Result<Value, String> {
    let wrong = |what: &str, v: &Value| format!("{path}: expected {what}, got {}", kind_of(v));
    match kind {
        Kind::Message(m) => shape_message(m, v, path),
        Kind::Enum(e) => enum_value(e, v, path),
        Kind::Bool => match v {
            Value::Bool(_) => Ok(v),
            other => Err(wrong("a bool", &other)),
        },
        Kind::String => match v {
            Value::String(_) => Ok(v),
            other => Err(wrong("a str", &other)),
        },
        Kind::Bytes => match v {
            Value::String(_) => Ok(v),
            other => Err(wrong("base64 text", &other)),
        },
        Kind::Double | Kind::Float => match v {
            Value::Number(_) => Ok(v),
            Value::String(ref s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => Ok(v),
            other => Err(wrong("a number", &other)),
        },
        Kind::Uint32 | Kind::Fixed32 => integer(v, path, 0, u32::MAX as i128),
        Kind::Uint64 | Kind::Fixed64 => integer(v, path, 0, u64::MAX as i128),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => integer(v, path, i32::MIN as i128, i32::MAX as i128),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => integer(v, path, i64::MIN as i128, i64::MAX as i128),
    }
}

fn integer(v: Value, path: &str, min: i128, max: i128) -> Result<Value, String> {
    let n: Option<i128> = match &v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.is_finite()).map(|f| f as i128)),
        Value::String(s) => s.trim().parse::<i128>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n < min => Err(format!("{path}: {n} is out of range (at least {min})")),
        Some(n) if n > max => Err(format!("{path}: {n} is out of range (at most {max})")),
        Some(n) => Ok(if let Ok(i) = i64::try_from(n) {
            Value::from(i)
        } else {
            Value::from(u64::try_from(n).map_err(|_| format!("{path}: {n} is out of range"))?)
        }),
        None => Err(format!("{path}: expected an integer, got {}", describe(&v))),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("'{s}'"),
        Value::Number(n) => n.to_string(),
        other => kind_of(other).to_string(),
    }
}

/// The prefix all of an enum's values share: `DriftMetric` → `DRIFT_METRIC_`.
fn enum_prefix(e: &EnumDescriptor) -> String {
    let mut p = String::new();
    for (i, c) in e.name().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            p.push('_');
        }
        p.push(c.to_ascii_uppercase());
    }
    p.push('_');
    if e.values().all(|v| v.name().starts_with(&p)) { p } else { String::new() }
}

/// Other spellings of metric names, as `pulse.Client.check_drift` takes them.
fn alias(enum_name: &str, short: &str) -> Option<&'static str> {
    match (enum_name, short) {
        ("pulse.drift.v1.DriftMetric", "KS") => Some("KS_STATISTIC"),
        ("pulse.drift.v1.DriftMetric", "JS") => Some("JENSEN_SHANNON"),
        ("pulse.drift.v1.DriftMetric", "CHI2") => Some("CHI_SQUARE_STATISTIC"),
        ("pulse.drift.v1.DriftMetric", "CHI2_P_VALUE") => Some("CHI_SQUARE_P_VALUE"),
        _ => None,
    }
}

fn enum_value(e: &EnumDescriptor, v: Value, path: &str) -> Result<Value, String> {
    let prefix = enum_prefix(e);
    let expected = || {
        let names: Vec<String> = e
            .values()
            .filter(|v| v.number() != 0)
            .map(|v| v.name().strip_prefix(&prefix).unwrap_or(v.name()).to_string())
            .collect();
        names.join(", ")
    };
    match &v {
        Value::String(s) => {
            let up = s.trim().to_ascii_uppercase().replace(['-', ' '], "_");
            let short = up.strip_prefix(&prefix).unwrap_or(&up);
            let short = alias(e.full_name(), short).unwrap_or(short);
            let full = format!("{prefix}{short}");
            match e.get_value_by_name(&full) {
                Some(found) => Ok(Value::String(found.name().to_string())),
                None => Err(format!("{path}: unknown value '{s}'; expected one of: {}", expected())),
            }
        }
        Value::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()).and_then(|i| e.get_value(i)) {
            Some(found) => Ok(Value::String(found.name().to_string())),
            None => Err(format!("{path}: unknown value {n}; expected one of: {}", expected())),
        },
        other => Err(format!("{path}: expected a str (one of: {}), got {}", expected(), kind_of(other))),
    }
}

const DURATION_HELP: &str = "use e.g. \"24h\", \"1h30m\", \"10m\", \"30s\", \"500ms\" or a number of seconds";
/// google.protobuf.Duration's range.
const MAX_DURATION_SECONDS: i128 = 315_576_000_000;

/// A duration as proto3 JSON (`"5400s"`, `"0.500000000s"`).
fn duration(v: Value, path: &str) -> Result<Value, String> {
    let nanos: i128 = match &v {
        Value::Number(n) => {
            let secs = n.as_f64().filter(|f| f.is_finite()).ok_or_else(|| format!("{path}: {n} is not a duration"))?;
            (secs * 1e9).round() as i128
        }
        Value::String(s) => {
            parse_duration(s).ok_or_else(|| format!("{path}: '{s}' is not a duration; {DURATION_HELP}"))?
        }
        other => return Err(format!("{path}: expected a duration ({DURATION_HELP}), got {}", kind_of(other))),
    };
    if nanos < 0 {
        return Err(format!("{path}: {} must not be negative", describe(&v)));
    }
    let (secs, frac) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    if secs > MAX_DURATION_SECONDS {
        return Err(format!("{path}: {} is too long", describe(&v)));
    }
    Ok(Value::String(if frac == 0 { format!("{secs}s") } else { format!("{secs}.{frac:09}s") }))
}

/// Nanoseconds of `"1h30m"`, `"24h"`, `"1.5s"`, `"500ms"`, `"2d"`, `"1w"`,
/// or a bare number of seconds.
fn parse_duration(text: &str) -> Option<i128> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then(|| (secs * 1e9).round() as i128);
    }
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit_nanos: f64 = match rest[..unit_len].trim() {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" | "sec" | "secs" => 1e9,
            "m" | "min" | "mins" => 60e9,
            "h" | "hr" | "hrs" => 3_600e9,
            "d" => 86_400e9,
            "w" => 604_800e9,
            _ => return None,
        };
        rest = rest[unit_len..].trim_start();
        total += (number * unit_nanos).round() as i128;
    }
    Some(if negative { -total } else { total })
}

/// A timestamp as RFC 3339 in UTC, from RFC 3339 text or epoch seconds.
fn timestamp(v: Value, path: &str) -> Result<Value, String> {
    use chrono::{DateTime, SecondsFormat, Utc};
    let at: DateTime<Utc> = match &v {
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .map_err(|e| format!("{path}: '{s}' is not an RFC 3339 time (e.g. 2025-06-01T03:00:00Z): {e}"))?
            .with_timezone(&Utc),
        Value::Number(n) => {
            let secs = n.as_f64().filter(|f| f.is_finite()).ok_or_else(|| format!("{path}: {n} is not a time"))?;
            let nanos = (secs * 1e9).round() as i128;
            let (s, ns) = (nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000));
            i64::try_from(s)
                .ok()
                .and_then(|s| DateTime::from_timestamp(s, ns as u32))
                .ok_or_else(|| format!("{path}: {n} is out of range"))?
        }
        other => return Err(format!("{path}: expected a datetime or RFC 3339 text, got {}", kind_of(other))),
    };
    Ok(Value::String(at.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
}

// ---- proto → Python -------------------------------------------------------------------

/// An answer as JSON: snake_case names, every field (unset messages left
/// out), 64-bit integers as numbers, enum values short and upper case.
pub(crate) fn to_json<M: Message>(name: &str, msg: &M) -> Result<String, ClientError> {
    let desc = message(name).map_err(ClientError::InvalidArgument)?;
    let dynamic = DynamicMessage::decode(desc.clone(), msg.encode_to_vec().as_slice())
        .map_err(|e| ClientError::InvalidArgument(format!("answer: {e}")))?;
    let options =
        SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(false).skip_default_fields(false);
    let mut value = dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| ClientError::InvalidArgument(format!("answer: {e}")))?;
    short_enums(&desc, &mut value);
    serde_json::to_string(&value).map_err(|e| ClientError::InvalidArgument(format!("answer: {e}")))
}

fn short_enums(desc: &MessageDescriptor, value: &mut Value) {
    if desc.full_name().starts_with("google.protobuf.") {
        return;
    }
    let Value::Object(obj) = value else { return };
    for (key, v) in obj.iter_mut() {
        let Some(field) = desc.get_field_by_name(key) else { continue };
        let kind = if field.is_map() {
            let Kind::Message(entry) = field.kind() else { continue };
            let value_kind = entry.map_entry_value_field().kind();
            if let Value::Object(m) = v {
                m.values_mut().for_each(|item| short_single(&value_kind, item));
            }
            continue;
        } else {
            field.kind()
        };
        match v {
            Value::Array(items) if field.is_list() => items.iter_mut().for_each(|item| short_single(&kind, item)),
            _ => short_single(&kind, v),
        }
    }
}

fn short_single(kind: &Kind, v: &mut Value) {
    match kind {
        Kind::Message(m) => short_enums(m, v),
        Kind::Enum(e) => {
            if let Value::String(s) = v {
                let prefix = enum_prefix(e);
                let short = s.strip_prefix(&prefix).unwrap_or(s);
                *v = if short == "UNSPECIFIED" { Value::Null } else { Value::String(short.to_string()) };
            }
        }
        _ => {}
    }
}

// ---- watching events ---------------------------------------------------------------------

/// Opens `WatchEvents` for a checked `WatchEventsRequest`.
pub(crate) async fn watch(client: Client, p: Prepared) -> Result<Streaming<EventEnvelope>, ClientError> {
    let r: dr::WatchEventsRequest = decode(&p.body)?;
    client.watch_events(r.selector.unwrap_or_default(), &r.after_message_id).await
}

type Shared = Arc<tokio::sync::Mutex<Option<Streaming<EventEnvelope>>>>;

/// Events as the server sends them, one JSON text each. Iterating blocks
/// (GIL released, Ctrl-C honoured); `close()` ends the call, also from
/// another thread.
#[pyclass(frozen, module = "pulse._native", name = "EventStream")]
pub(crate) struct EventStream {
    stream: Shared,
    closed: tokio::sync::watch::Sender<bool>,
}

impl EventStream {
    pub(crate) fn new(stream: Streaming<EventEnvelope>) -> Self {
        Self { stream: Arc::new(tokio::sync::Mutex::new(Some(stream))), closed: tokio::sync::watch::channel(false).0 }
    }
}

#[pymethods]
impl EventStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next event as JSON; StopIteration when the stream ended or was
    /// closed.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let stream = self.stream.clone();
        let mut closed = self.closed.subscribe();
        let next = super::block_on(py, async move {
            if *closed.borrow_and_update() {
                return Ok(None);
            }
            let mut guard = stream.lock().await;
            let Some(s) = guard.as_mut() else { return Ok(None) };
            tokio::select! {
                m = s.message() => match m {
                    Ok(Some(event)) => Ok(Some(event)),
                    Ok(None) => { *guard = None; Ok(None) }
                    Err(status) => { *guard = None; Err(status.into()) }
                },
                _ = closed.wait_for(|c| *c) => { *guard = None; Ok(None) }
            }
        })?;
        next.map(|e| to_json("pulse.common.v1.EventEnvelope", &e)).transpose().map_err(|e| super::client_error(py, e))
    }

    /// Ends the call; iterating stops.
    fn close(&self) {
        self.closed.send_replace(true);
        if let Ok(mut guard) = self.stream.try_lock() {
            *guard = None;
        }
    }

    /// True once the stream ended or was closed.
    #[getter]
    fn closed(&self) -> bool {
        *self.closed.borrow() || self.stream.try_lock().map(|g| g.is_none()).unwrap_or(false)
    }

    fn __repr__(&self) -> String {
        format!("<EventStream {}>", if self.closed() { "closed" } else { "open" })
    }
}
