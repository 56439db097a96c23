//! Algorithm parameters: parsed from the request's `params` struct, checked
//! (unknown names and out-of-range values are refused before any work), and
//! written back with every default filled in, so a run can be repeated.

use std::collections::BTreeMap;

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use pulse_proto::trainer::v1::{Algorithm, Task};

use crate::error::TrainerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    Adam,
    AdamW,
    Sgd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrSchedule {
    Constant,
    Cosine,
    Step,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Tanh,
    Gelu,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    pub epochs: u32,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    pub lr_schedule: LrSchedule,
    pub lr_step_epochs: u32,
    pub lr_gamma: f64,
    pub early_stopping_patience: u32,
    pub class_weight_balanced: bool,
    pub checkpoint_every_epochs: u32,
    /// Empty for the linear models.
    pub hidden_layers: Vec<usize>,
    pub activation: Activation,
    pub dropout: f64,
    pub seed: u64,
}

/// Which algorithms fit which task.
pub fn check_algorithm(algorithm: Algorithm, task: Task) -> Result<(), TrainerError> {
    let ok = match algorithm {
        Algorithm::LogisticRegression | Algorithm::MlpClassifier => {
            matches!(task, Task::BinaryClassification | Task::MulticlassClassification)
        }
        Algorithm::LinearRegression | Algorithm::MlpRegressor => task == Task::Regression,
        Algorithm::Unspecified => {
            return Err(TrainerError::invalid(
                "algorithm",
                "is required: logistic_regression, linear_regression, mlp_classifier or mlp_regressor",
            ));
        }
    };
    if ok {
        Ok(())
    } else {
        Err(TrainerError::invalid(
            "algorithm",
            format!(
                "{} does not fit the contract's task {}; use {}",
                algorithm.as_str_name().trim_start_matches("ALGORITHM_").to_lowercase(),
                task.as_str_name().trim_start_matches("TASK_").to_lowercase(),
                if task == Task::Regression {
                    "linear_regression or mlp_regressor"
                } else {
                    "logistic_regression or mlp_classifier"
                }
            ),
        ))
    }
}

fn is_mlp(a: Algorithm) -> bool {
    matches!(a, Algorithm::MlpClassifier | Algorithm::MlpRegressor)
}

const COMMON: [&str; 14] = [
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "momentum",
    "weight_decay",
    "lr_schedule",
    "lr_step_epochs",
    "lr_gamma",
    "early_stopping_patience",
    "early_stopping_metric",
    "class_weight",
    "checkpoint_every_epochs",
    "seed",
];
const MLP: [&str; 3] = ["hidden_layers", "activation", "dropout"];

struct Reader<'a> {
    fields: &'a BTreeMap<String, Value>,
}

impl Reader<'_> {
    fn field(name: &str) -> String {
        format!("params.{name}")
    }

    fn number(&self, name: &str, default: f64) -> Result<f64, TrainerError> {
        match self.fields.get(name).and_then(|v| v.kind.as_ref()) {
            None | Some(Kind::NullValue(_)) => Ok(default),
            Some(Kind::NumberValue(n)) if n.is_finite() => Ok(*n),
            Some(Kind::StringValue(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite())
                .ok_or_else(|| TrainerError::invalid(Self::field(name), format!("'{s}' is not a number"))),
            Some(_) => Err(TrainerError::invalid(Self::field(name), "must be a number")),
        }
    }

    fn integer(&self, name: &str, default: u64, lo: u64, hi: u64) -> Result<u64, TrainerError> {
        let n = self.number(name, default as f64)?;
        if n.fract() != 0.0 {
            return Err(TrainerError::invalid(Self::field(name), format!("must be a whole number, not {n}")));
        }
        if n < lo as f64 || n > hi as f64 {
            return Err(TrainerError::invalid(Self::field(name), format!("{n} is outside {lo}..={hi}")));
        }
        Ok(n as u64)
    }

    fn choice<'c>(&self, name: &str, default: &'c str, allowed: &[&'c str]) -> Result<&'c str, TrainerError> {
        match self.fields.get(name).and_then(|v| v.kind.as_ref()) {
            None | Some(Kind::NullValue(_)) => Ok(default),
            Some(Kind::StringValue(s)) => {
                let s = s.trim().to_ascii_lowercase();
                allowed.iter().find(|a| **a == s).copied().ok_or_else(|| {
                    TrainerError::invalid(Self::field(name), format!("'{s}' is not one of {}", allowed.join(", ")))
                })
            }
            Some(_) => Err(TrainerError::invalid(Self::field(name), format!("must be one of {}", allowed.join(", ")))),
        }
    }
}

/// Parses and checks `params` for `algorithm`; `seed` is the job's seed.
pub fn parse(algorithm: Algorithm, params: Option<&Struct>, seed: u64) -> Result<TrainParams, TrainerError> {
    let empty = BTreeMap::new();
    let fields = params.map(|p| &p.fields).unwrap_or(&empty);
    for name in fields.keys() {
        let known = COMMON.contains(&name.as_str()) || (is_mlp(algorithm) && MLP.contains(&name.as_str()));
        if !known {
            let mut names: Vec<&str> = COMMON.iter().copied().filter(|n| *n != "seed").collect();
            if is_mlp(algorithm) {
                names.extend(MLP);
            }
            let hint = if MLP.contains(&name.as_str()) { " (only the MLP algorithms have it)" } else { "" };
            return Err(TrainerError::invalid(
                format!("params.{name}"),
                format!("is not a parameter of this algorithm{hint}; known: {}", names.join(", ")),
            ));
        }
    }
    if fields.contains_key("seed") {
        return Err(TrainerError::invalid("params.seed", "set the seed in the request's `seed` field"));
    }
    let r = Reader { fields };
    let learning_rate = r.number("learning_rate", 0.01)?;
    if !(learning_rate > 0.0 && learning_rate <= 10.0) {
        return Err(TrainerError::invalid("params.learning_rate", format!("{learning_rate} is outside (0, 10]")));
    }
    let momentum = r.number("momentum", 0.9)?;
    if !(0.0..1.0).contains(&momentum) {
        return Err(TrainerError::invalid("params.momentum", format!("{momentum} is outside [0, 1)")));
    }
    let weight_decay = r.number("weight_decay", 0.0)?;
    if weight_decay < 0.0 {
        return Err(TrainerError::invalid("params.weight_decay", format!("{weight_decay} is negative")));
    }
    let lr_gamma = r.number("lr_gamma", 0.1)?;
    if !(lr_gamma > 0.0 && lr_gamma <= 1.0) {
        return Err(TrainerError::invalid("params.lr_gamma", format!("{lr_gamma} is outside (0, 1]")));
    }
    r.choice("early_stopping_metric", "val_loss", &["val_loss"])?;
    let (hidden_layers, activation, dropout) = if is_mlp(algorithm) {
        let hidden = match fields.get("hidden_layers").and_then(|v| v.kind.as_ref()) {
            None | Some(Kind::NullValue(_)) => vec![64, 32],
            Some(Kind::ListValue(ListValue { values })) => {
                if values.is_empty() || values.len() > 8 {
                    return Err(TrainerError::invalid(
                        "params.hidden_layers",
                        format!("has {} layers; give 1 to 8", values.len()),
                    ));
                }
                let mut out = Vec::new();
                for (i, v) in values.iter().enumerate() {
                    match v.kind {
                        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && (1.0..=4096.0).contains(&n) => {
                            out.push(n as usize)
                        }
                        _ => {
                            return Err(TrainerError::invalid(
                                format!("params.hidden_layers[{i}]"),
                                "must be a whole number of units in 1..=4096",
                            ));
                        }
                    }
                }
                out
            }
            Some(_) => {
                return Err(TrainerError::invalid(
                    "params.hidden_layers",
                    "must be a list of layer sizes, e.g. [64, 32]",
                ));
            }
        };
        let activation = match r.choice("activation", "relu", &["relu", "tanh", "gelu"])? {
            "tanh" => Activation::Tanh,
            "gelu" => Activation::Gelu,
            _ => Activation::Relu,
        };
        let dropout = r.number("dropout", 0.0)?;
        if !(0.0..1.0).contains(&dropout) {
            return Err(TrainerError::invalid("params.dropout", format!("{dropout} is outside [0, 1)")));
        }
        (hidden, activation, dropout)
    } else {
        (Vec::new(), Activation::Relu, 0.0)
    };
    Ok(TrainParams {
        epochs: r.integer("epochs", 20, 1, 10_000)? as u32,
        batch_size: r.integer("batch_size", 256, 1, 65_536)? as usize,
        learning_rate,
        optimizer: match r.choice("optimizer", "adam", &["adam", "adamw", "sgd"])? {
            "adamw" => OptimizerKind::AdamW,
            "sgd" => OptimizerKind::Sgd,
            _ => OptimizerKind::Adam,
        },
        momentum,
        weight_decay,
        lr_schedule: match r.choice("lr_schedule", "constant", &["constant", "cosine", "step"])? {
            "cosine" => LrSchedule::Cosine,
            "step" => LrSchedule::Step,
            _ => LrSchedule::Constant,
        },
        lr_step_epochs: r.integer("lr_step_epochs", 10, 1, 10_000)? as u32,
        lr_gamma,
        early_stopping_patience: r.integer("early_stopping_patience", 5, 0, 10_000)? as u32,
        class_weight_balanced: r.choice("class_weight", "none", &["none", "balanced"])? == "balanced",
        checkpoint_every_epochs: r.integer("checkpoint_every_epochs", 1, 0, 10_000)? as u32,
        hidden_layers,
        activation,
        dropout,
        seed,
    })
}

fn num(n: f64) -> Value {
    Value { kind: Some(Kind::NumberValue(n)) }
}

fn text(s: &str) -> Value {
    Value { kind: Some(Kind::StringValue(s.into())) }
}

/// The effective parameters, every default filled in.
pub fn effective(algorithm: Algorithm, p: &TrainParams) -> Struct {
    let mut f = BTreeMap::new();
    f.insert("epochs".into(), num(p.epochs.into()));
    f.insert("batch_size".into(), num(p.batch_size as f64));
    f.insert("learning_rate".into(), num(p.learning_rate));
    let optimizer = match p.optimizer {
        OptimizerKind::Adam => "adam",
        OptimizerKind::AdamW => "adamw",
        OptimizerKind::Sgd => "sgd",
    };
    f.insert("optimizer".into(), text(optimizer));
    f.insert("momentum".into(), num(p.momentum));
    f.insert("weight_decay".into(), num(p.weight_decay));
    let schedule = match p.lr_schedule {
        LrSchedule::Constant => "constant",
        LrSchedule::Cosine => "cosine",
        LrSchedule::Step => "step",
    };
    f.insert("lr_schedule".into(), text(schedule));
    f.insert("lr_step_epochs".into(), num(p.lr_step_epochs.into()));
    f.insert("lr_gamma".into(), num(p.lr_gamma));
    f.insert("early_stopping_patience".into(), num(p.early_stopping_patience.into()));
    f.insert("early_stopping_metric".into(), text("val_loss"));
    f.insert("class_weight".into(), text(if p.class_weight_balanced { "balanced" } else { "none" }));
    f.insert("checkpoint_every_epochs".into(), num(p.checkpoint_every_epochs.into()));
    if is_mlp(algorithm) {
        let layers = p.hidden_layers.iter().map(|h| num(*h as f64)).collect();
        f.insert("hidden_layers".into(), Value { kind: Some(Kind::ListValue(ListValue { values: layers })) });
        let act = match p.activation {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
        };
        f.insert("activation".into(), text(act));
        f.insert("dropout".into(), num(p.dropout));
    }
    Struct { fields: f }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, Value)]) -> Struct {
        Struct { fields: pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect() }
    }

    #[test]
    fn defaults_fill_in_and_round_trip() {
        let p = parse(Algorithm::MlpClassifier, None, 7).unwrap();
        assert_eq!((p.epochs, p.batch_size, p.hidden_layers.clone()), (20, 256, vec![64, 32]));
        let again = parse(Algorithm::MlpClassifier, Some(&effective(Algorithm::MlpClassifier, &p)), 7).unwrap();
        assert_eq!(again, p);
        let lr = parse(Algorithm::LogisticRegression, None, 1).unwrap();
        assert!(lr.hidden_layers.is_empty());
    }

    #[test]
    fn unknown_and_out_of_range_parameters_are_refused_naming_them() {
        let cases = [
            (Algorithm::LogisticRegression, params(&[("epochz", num(3.0))]), "params.epochz"),
            (Algorithm::LogisticRegression, params(&[("hidden_layers", num(3.0))]), "only the MLP"),
            (Algorithm::MlpClassifier, params(&[("epochs", num(0.0))]), "params.epochs"),
            (Algorithm::MlpClassifier, params(&[("epochs", num(2.5))]), "whole number"),
            (Algorithm::MlpClassifier, params(&[("learning_rate", num(0.0))]), "params.learning_rate"),
            (Algorithm::MlpClassifier, params(&[("optimizer", text("lbfgs"))]), "params.optimizer"),
            (Algorithm::MlpClassifier, params(&[("dropout", num(1.0))]), "params.dropout"),
            (
                Algorithm::MlpClassifier,
                params(&[(
                    "hidden_layers",
                    Value { kind: Some(Kind::ListValue(ListValue { values: vec![num(0.0)] })) },
                )]),
                "params.hidden_layers[0]",
            ),
            (Algorithm::MlpRegressor, params(&[("seed", num(1.0))]), "params.seed"),
        ];
        for (algo, p, needle) in cases {
            let e = parse(algo, Some(&p), 1).unwrap_err();
            assert!(matches!(e, TrainerError::Invalid { .. }), "{e}");
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn algorithms_must_fit_the_task() {
        assert!(check_algorithm(Algorithm::LogisticRegression, Task::BinaryClassification).is_ok());
        assert!(check_algorithm(Algorithm::MlpRegressor, Task::Regression).is_ok());
        let e = check_algorithm(Algorithm::LinearRegression, Task::MulticlassClassification).unwrap_err();
        assert!(e.to_string().contains("logistic_regression or mlp_classifier"), "{e}");
        assert!(check_algorithm(Algorithm::Unspecified, Task::Regression).is_err());
    }
}
