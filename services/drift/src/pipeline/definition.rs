//! Pipeline definitions: validation (every error names its field), the
//! built-in retraining pipeline, and the flattened list of step runs a new
//! run starts with.

use std::collections::HashSet;

use pulse_client::dynamic;
use pulse_common::json;
use pulse_proto::drift::v1 as pb;
use pulse_proto::drift::v1::{OnFalse, StepKind, StepStatus, pipeline_trigger, step};
use pulse_proto::prost_types::Duration as PbDuration;

use super::expr::{self, Expression, Reference, Root};
use crate::error::DriftError;
use crate::events;
use crate::schedule::Schedule;

pub const BUILT_IN: &str = "retrain";
pub const MAX_STEPS: usize = 100;
pub const MAX_DELAY_SECONDS: i64 = 30 * 24 * 3600;
pub const MAX_TIMEOUT_SECONDS: i64 = 7 * 24 * 3600;
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 3600;
pub const DEFAULT_ATTEMPTS: u32 = 3;
pub const MAX_ATTEMPTS: u32 = 20;

fn is_step_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

pub fn check_pipeline_name(field: &str, name: &str) -> Result<(), DriftError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_lowercase()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(DriftError::invalid(
            field,
            format!(
                "'{name}' is not a pipeline name: 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter"
            ),
        ))
    }
}

pub fn seconds(d: &PbDuration) -> f64 {
    d.seconds as f64 + f64::from(d.nanos) / 1e9
}

/// A step's effective retry policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_s: f64,
    pub max_s: f64,
    pub multiplier: f64,
}

impl Retry {
    pub fn of(step: &pb::Step) -> Self {
        let r = step.retry.unwrap_or_default();
        Self {
            max_attempts: if r.max_attempts == 0 { DEFAULT_ATTEMPTS } else { r.max_attempts },
            initial_s: r.initial_backoff.as_ref().map(seconds).filter(|s| *s > 0.0).unwrap_or(1.0),
            max_s: r.max_backoff.as_ref().map(seconds).filter(|s| *s > 0.0).unwrap_or(300.0),
            multiplier: if r.multiplier > 0.0 { r.multiplier } else { 2.0 },
        }
    }

    /// The wait before attempt `next` (2, 3, …).
    pub fn backoff_s(&self, next: u32) -> f64 {
        (self.initial_s * self.multiplier.powi(next.saturating_sub(2) as i32)).min(self.max_s)
    }
}

pub fn timeout_s(step: &pb::Step) -> f64 {
    step.timeout.as_ref().map(seconds).filter(|s| *s > 0.0).unwrap_or(DEFAULT_TIMEOUT_SECONDS as f64)
}

pub fn kind_of(step: &pb::Step) -> StepKind {
    match &step.kind {
        Some(step::Kind::Action(_)) => StepKind::Action,
        Some(step::Kind::Condition(_)) => StepKind::Condition,
        Some(step::Kind::Delay(_)) => StepKind::Delay,
        Some(step::Kind::Parallel(_)) => StepKind::Parallel,
        None => StepKind::Unspecified,
    }
}

/// Whether a step runs in replays (see `Step.replay_safe`).
pub fn replay_safe(step: &pb::Step) -> bool {
    if let Some(safe) = step.replay_safe {
        return safe;
    }
    match &step.kind {
        Some(step::Kind::Action(a)) => dynamic::method(&a.method).map(|m| !m.info.mutation).unwrap_or(false),
        Some(step::Kind::Parallel(p)) => p.branches.iter().flat_map(|b| &b.steps).all(replay_safe),
        _ => true,
    }
}

/// Validates a definition and fills its defaults; `field` is where it sits
/// in the request (`pipeline`).
pub fn validate(field: &str, p: &pb::Pipeline) -> Result<pb::Pipeline, DriftError> {
    check_pipeline_name(&format!("{field}.name"), &p.name)?;
    if p.steps.is_empty() || p.steps.len() > MAX_STEPS {
        return Err(DriftError::invalid(
            format!("{field}.steps"),
            format!("has {} steps; a pipeline has 1 to {MAX_STEPS}", p.steps.len()),
        ));
    }
    if let Some(trigger) = p.trigger.as_ref().and_then(|t| t.kind.as_ref()) {
        match trigger {
            pipeline_trigger::Kind::Event(e) => {
                let name_field = format!("{field}.trigger.event.name");
                match e.name.strip_suffix(".*") {
                    Some(prefix) if !prefix.is_empty() => {}
                    _ => {
                        events::check_event_name(&name_field, &e.name)?;
                    }
                }
                events::validate_filters(&format!("{field}.trigger.event.filters"), &e.filters)?;
            }
            pipeline_trigger::Kind::Cron(c) => {
                Schedule::parse(&format!("{field}.trigger.cron.expression"), &c.expression, &c.timezone)?;
            }
        }
    }
    let (mut seen, mut ids) = (HashSet::new(), HashSet::new());
    validate_steps(&format!("{field}.steps"), &p.steps, &mut seen, &mut ids)?;
    let mut out = p.clone();
    if out.default_inputs.is_none() {
        out.default_inputs = Some(Default::default());
    }
    Ok(out)
}

/// Checks steps in order: `seen` holds the ids a reference here may name
/// (earlier steps, not a sibling branch's), `ids` every id defined so far
/// (ids are unique across branches).
fn validate_steps(
    field: &str,
    steps: &[pb::Step],
    seen: &mut HashSet<String>,
    ids: &mut HashSet<String>,
) -> Result<(), DriftError> {
    for (i, s) in steps.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if !is_step_id(&s.id) {
            return Err(DriftError::invalid(
                format!("{f}.id"),
                format!("'{}' is not a step id: 1 to 63 characters of a-z, 0-9, '_' and '-'", s.id),
            ));
        }
        if !ids.insert(s.id.clone()) {
            return Err(DriftError::invalid(
                format!("{f}.id"),
                format!("'{}' is used twice; step ids are unique", s.id),
            ));
        }
        let check_refs = |sub: &str, refs: Vec<Reference>, seen: &HashSet<String>| -> Result<(), DriftError> {
            for r in refs {
                if let Root::Steps { step_id } = &r.root
                    && !seen.contains(step_id)
                {
                    return Err(DriftError::invalid(
                        format!("{f}.{sub}"),
                        format!("'{}' names step '{step_id}', which is not an earlier step", r.text),
                    ));
                }
            }
            Ok(())
        };
        match &s.kind {
            None => {
                return Err(DriftError::invalid(
                    f.clone(),
                    "has no kind: set one of action, condition, delay or parallel",
                ));
            }
            Some(step::Kind::Action(a)) => {
                dynamic::method(&a.method).map_err(|e| DriftError::invalid(format!("{f}.action.method"), e))?;
                let request = a.request.as_ref().map(json::to_json).unwrap_or_else(|| serde_json::json!({}));
                let refs =
                    expr::references_in(&request).map_err(|e| DriftError::invalid(format!("{f}.action.request"), e))?;
                check_refs("action.request", refs, seen)?;
                let r = Retry::of(s);
                if r.max_attempts > MAX_ATTEMPTS {
                    return Err(DriftError::invalid(
                        format!("{f}.retry.max_attempts"),
                        format!("{} is more than {MAX_ATTEMPTS}", r.max_attempts),
                    ));
                }
                if !(r.multiplier >= 1.0 && r.multiplier <= 100.0) {
                    return Err(DriftError::invalid(format!("{f}.retry.multiplier"), "must be between 1 and 100"));
                }
                if let Some(t) = &s.timeout
                    && (seconds(t) < 0.0 || seconds(t) > MAX_TIMEOUT_SECONDS as f64)
                {
                    return Err(DriftError::invalid(format!("{f}.timeout"), "must be between 0 and 7 days"));
                }
            }
            Some(step::Kind::Condition(c)) => {
                let e = Expression::parse(&c.expression)
                    .map_err(|e| DriftError::invalid(format!("{f}.condition.expression"), e))?;
                check_refs("condition.expression", e.references(), seen)?;
                if c.on_false == OnFalse::SkipN as i32 && c.skip_count == 0 {
                    return Err(DriftError::invalid(
                        format!("{f}.condition.skip_count"),
                        "must be at least 1 with on_false SKIP_N",
                    ));
                }
                let skipping = match OnFalse::try_from(c.on_false).unwrap_or(OnFalse::Stop) {
                    OnFalse::SkipNext => 1,
                    OnFalse::SkipN => c.skip_count as usize,
                    _ => 0,
                };
                if skipping > steps.len() - i - 1 {
                    return Err(DriftError::invalid(
                        format!("{f}.condition.skip_count"),
                        format!("skips {skipping} steps but only {} follow", steps.len() - i - 1),
                    ));
                }
            }
            Some(step::Kind::Delay(d)) => {
                use pb::delay_step::Until;
                match &d.until {
                    Some(Until::Duration(x)) if seconds(x) > 0.0 && seconds(x) <= MAX_DELAY_SECONDS as f64 => {}
                    Some(Until::Duration(_)) => {
                        return Err(DriftError::invalid(
                            format!("{f}.delay.duration"),
                            "must be more than 0 and at most 30 days",
                        ));
                    }
                    Some(Until::At(_)) => {}
                    None => {
                        return Err(DriftError::invalid(format!("{f}.delay"), "set duration or at"));
                    }
                }
            }
            Some(step::Kind::Parallel(p)) => {
                if p.branches.len() < 2 || p.branches.len() > 16 {
                    return Err(DriftError::invalid(
                        format!("{f}.parallel.branches"),
                        format!("has {} branches; a parallel step has 2 to 16", p.branches.len()),
                    ));
                }
                let mut names = HashSet::new();
                let before = seen.clone();
                let mut all = HashSet::new();
                for (b, branch) in p.branches.iter().enumerate() {
                    let bf = format!("{f}.parallel.branches[{b}]");
                    if !is_step_id(&branch.name) || !names.insert(branch.name.clone()) {
                        return Err(DriftError::invalid(
                            format!("{bf}.name"),
                            format!("'{}' is empty, malformed or used twice; branch names are unique", branch.name),
                        ));
                    }
                    if branch.steps.is_empty() {
                        return Err(DriftError::invalid(format!("{bf}.steps"), "is empty"));
                    }
                    // A branch sees the steps before the parallel step and
                    // its own earlier steps, not its siblings'.
                    let mut visible = before.clone();
                    validate_steps(&format!("{bf}.steps"), &branch.steps, &mut visible, ids)?;
                    all.extend(visible.difference(&before).cloned());
                }
                seen.extend(all);
            }
        }
        seen.insert(s.id.clone());
    }
    Ok(())
}

/// Every step of a definition, branches flattened, in definition order, with
/// its path (`both/a/train`).
pub fn flatten<'a>(steps: &'a [pb::Step], prefix: &str, out: &mut Vec<(String, &'a pb::Step)>) {
    for s in steps {
        let path = if prefix.is_empty() { s.id.clone() } else { format!("{prefix}/{}", s.id) };
        out.push((path.clone(), s));
        if let Some(step::Kind::Parallel(p)) = &s.kind {
            for b in &p.branches {
                flatten(&b.steps, &format!("{path}/{}", b.name), out);
            }
        }
    }
}

/// The step runs a new run starts with: every step PENDING, or SKIPPED
/// "not replay-safe" in a replay that does not allow unsafe steps.
pub fn initial_steps(p: &pb::Pipeline, replay: bool, allow_unsafe: bool) -> Vec<pb::StepRun> {
    let mut flat = Vec::new();
    flatten(&p.steps, "", &mut flat);
    flat.into_iter()
        .map(|(path, s)| {
            let unsafe_here = replay && !allow_unsafe && !replay_safe(s);
            pb::StepRun {
                step_id: s.id.clone(),
                path,
                kind: kind_of(s) as i32,
                status: if unsafe_here { StepStatus::Skipped } else { StepStatus::Pending } as i32,
                max_attempts: if matches!(s.kind, Some(step::Kind::Action(_))) { Retry::of(s).max_attempts } else { 1 },
                skip_reason: if unsafe_here { "not replay-safe".into() } else { String::new() },
                ..Default::default()
            }
        })
        .collect()
}

fn action(id: &str, description: &str, method: &str, request: serde_json::Value) -> pb::Step {
    pb::Step {
        id: id.into(),
        description: description.into(),
        kind: Some(step::Kind::Action(pb::ActionStep {
            method: method.into(),
            request: Some(json::to_struct(&request)),
            wait: Some(true),
        })),
        ..Default::default()
    }
}

/// extract → validate (stop when the contract is broken) → train → evaluate
/// → promote if the gates pass. Inputs: `model`, `extraction` (a
/// StartExtractionRequest), `algorithm`, `params`, `stage`.
pub fn built_in_retrain() -> pb::Pipeline {
    let dataset = serde_json::json!({
        "dataset_id": "${steps.extract.output.result.dataset_id}",
        "version": "${steps.extract.output.result.version}",
    });
    pb::Pipeline {
        name: BUILT_IN.into(),
        description:
            "Retrains a model: extract, validate against the contract, train, evaluate, promote if the gates pass."
                .into(),
        steps: vec![
            action(
                "extract",
                "snapshot the source again",
                "pulse.snapshot.v1.SnapshotService/StartExtraction",
                serde_json::json!({
                    "datasource_id": "${inputs.extraction.datasource_id}",
                    "object": "${inputs.extraction.object}",
                    "dataset": "${inputs.extraction.dataset}",
                    "mode": "${inputs.extraction.mode}",
                    "cursor_field": "${inputs.extraction.cursor_field}",
                    "primary_key": "${inputs.extraction.primary_key}",
                    "columns": "${inputs.extraction.columns}",
                    "parallelism": "${inputs.extraction.parallelism}",
                    "partition_column": "${inputs.extraction.partition_column}",
                }),
            ),
            action(
                "validate",
                "validate the snapshot against the model's contract",
                "pulse.trainer.v1.TrainerService/ValidateDataset",
                serde_json::json!({"dataset": dataset, "model": "${inputs.model}"}),
            ),
            pb::Step {
                id: "valid".into(),
                description: "stop when the snapshot breaks the contract".into(),
                kind: Some(step::Kind::Condition(pb::ConditionStep {
                    expression: "steps.validate.output.passed == true".into(),
                    on_false: OnFalse::Stop as i32,
                    skip_count: 0,
                })),
                ..Default::default()
            },
            action(
                "train",
                "train on the new snapshot",
                "pulse.trainer.v1.TrainerService/StartTraining",
                serde_json::json!({
                    "dataset": dataset,
                    "model": "${inputs.model}",
                    "algorithm": "${inputs.algorithm}",
                    "params": "${inputs.params}",
                }),
            ),
            action(
                "evaluate",
                "evaluate against the production version on the same rows",
                "pulse.trainer.v1.TrainerService/EvaluateModel",
                serde_json::json!({"model_version": "${steps.train.output.model_version}", "compare_with_production": true}),
            ),
            action(
                "promote",
                "promote if the gates pass",
                "pulse.trainer.v1.TrainerService/PromoteModel",
                serde_json::json!({"model_version": "${steps.train.output.model_version}", "stage": "${inputs.stage}"}),
            ),
        ],
        default_inputs: Some(json::to_struct(&serde_json::json!({
            "algorithm": "ALGORITHM_UNSPECIFIED",
            "params": {},
            "stage": "MODEL_STAGE_PRODUCTION",
        }))),
        built_in: true,
        revision: 1,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_pipeline_is_valid() {
        validate("pipeline", &built_in_retrain()).unwrap();
        let steps = initial_steps(&built_in_retrain(), true, false);
        // In a replay every mutation is skipped; the condition runs.
        let skipped: Vec<_> =
            steps.iter().filter(|s| s.status == StepStatus::Skipped as i32).map(|s| s.step_id.as_str()).collect();
        assert_eq!(skipped, ["extract", "train", "evaluate", "promote"]);
        // ValidateDataset is a query: safe to replay.
        assert!(steps.iter().any(|s| s.step_id == "validate" && s.status == StepStatus::Pending as i32));
    }

    #[test]
    fn errors_name_the_field() {
        let mut p = built_in_retrain();
        p.name = "Retrain".into();
        assert!(validate("pipeline", &p).unwrap_err().to_string().starts_with("pipeline.name"));
        let mut p = built_in_retrain();
        p.steps[3].id = "extract".into();
        assert!(validate("pipeline", &p).unwrap_err().to_string().starts_with("pipeline.steps[3].id"));
        let mut p = built_in_retrain();
        p.steps.swap(0, 1);
        let e = validate("pipeline", &p).unwrap_err().to_string();
        assert!(e.starts_with("pipeline.steps[0].action.request") && e.contains("'extract'"), "{e}");
        let mut p = built_in_retrain();
        if let Some(step::Kind::Condition(c)) = &mut p.steps[2].kind {
            c.expression = "steps.trian.output.x ==".into();
        }
        assert!(
            validate("pipeline", &p).unwrap_err().to_string().starts_with("pipeline.steps[2].condition.expression")
        );
        let mut p = built_in_retrain();
        if let Some(step::Kind::Action(a)) = &mut p.steps[0].kind {
            a.method = "pulse.trainer.v1.TrainerService/Trian".into();
        }
        assert!(validate("pipeline", &p).unwrap_err().to_string().starts_with("pipeline.steps[0].action.method"));
        let mut p = built_in_retrain();
        p.trigger = Some(pb::PipelineTrigger {
            kind: Some(pipeline_trigger::Kind::Cron(pb::CronTrigger {
                expression: "61 * * * *".into(),
                timezone: String::new(),
            })),
        });
        assert!(validate("pipeline", &p).unwrap_err().to_string().starts_with("pipeline.trigger.cron.expression"));
    }

    #[test]
    fn branches_see_earlier_steps_but_not_their_siblings() {
        let wait = |id: &str| pb::Step {
            id: id.into(),
            kind: Some(step::Kind::Delay(pb::DelayStep {
                until: Some(pb::delay_step::Until::Duration(PbDuration { seconds: 1, nanos: 0 })),
            })),
            ..Default::default()
        };
        let cond = |id: &str, e: &str| pb::Step {
            id: id.into(),
            kind: Some(step::Kind::Condition(pb::ConditionStep { expression: e.into(), ..Default::default() })),
            ..Default::default()
        };
        let par = |a: Vec<pb::Step>, b: Vec<pb::Step>| pb::Step {
            id: "both".into(),
            kind: Some(step::Kind::Parallel(pb::ParallelStep {
                branches: vec![pb::Branch { name: "a".into(), steps: a }, pb::Branch { name: "b".into(), steps: b }],
            })),
            ..Default::default()
        };
        let ok = pb::Pipeline {
            name: "p".into(),
            steps: vec![
                wait("first"),
                par(
                    vec![wait("a1"), cond("a2", "steps.a1.output.x == 1")],
                    vec![cond("b1", "steps.first.output.x == 1")],
                ),
                cond("after", "steps.a2.output.result == true"),
            ],
            ..Default::default()
        };
        validate("pipeline", &ok).unwrap();
        let mut flat = Vec::new();
        flatten(&ok.steps, "", &mut flat);
        let paths: Vec<_> = flat.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["first", "both", "both/a/a1", "both/a/a2", "both/b/b1", "after"]);
        let bad = pb::Pipeline {
            name: "p".into(),
            steps: vec![par(vec![wait("a1")], vec![cond("b1", "steps.a1.output.x == 1")])],
            ..Default::default()
        };
        let e = validate("pipeline", &bad).unwrap_err().to_string();
        assert!(e.starts_with("pipeline.steps[0].parallel.branches[1].steps[0].condition.expression"), "{e}");
    }
}
