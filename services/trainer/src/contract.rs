//! Model contracts: the YAML a model is trained under, parsed and checked
//! in full at registration, and the validation of a dataset version's rows
//! against it.
//!
//! Registration errors name the YAML path and, when known, the line
//! ("features[2].min: must be <= max (line 7)"). `serde_yaml_ng` keeps no
//! positions in its values, so the line of a path is found afterwards by
//! replaying the document with a visitor that fails on purpose at that path:
//! the parser stamps its own position on the failure.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use prost_types::value::Kind;
use pulse_proto::trainer::v1 as pb;
use pulse_proto::trainer::v1::{FeatureType, Imputation, NonFinitePolicy, Task};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_yaml_ng::Value as Yaml;
use sha2::{Digest, Sha256};

use crate::error::TrainerError;
use crate::metrics::{METRIC_NAMES, metric_fits_task};

/// Largest contract accepted, in bytes of YAML.
pub const MAX_CONTRACT_BYTES: usize = 1 << 20;

/// Rule kinds a contract may use.
pub const RULE_KINDS: [&str; 4] = ["min_rows", "max_null_fraction", "unique", "min_class_rows"];

/// Examples per violation when the caller asks for 0, and the most it may ask.
const DEFAULT_EXAMPLES: usize = 5;
const MAX_EXAMPLES: usize = 100;

// ---------------------------------------------------------------- parsing

/// Parses and checks a contract. `version` and `created_at` are left for
/// the caller to assign.
pub fn parse_contract(yaml: &str) -> Result<pb::Contract, TrainerError> {
    if yaml.len() > MAX_CONTRACT_BYTES {
        return Err(TrainerError::invalid(
            "yaml",
            format!("is {} bytes; a contract is at most 1 MiB ({MAX_CONTRACT_BYTES} bytes)", yaml.len()),
        ));
    }
    check_duplicate_keys(yaml)?;
    let doc: Yaml = serde_yaml_ng::from_str(yaml).map_err(syntax_error)?;
    let mut contract =
        read_contract(&Node { value: &doc, path: YamlPath::default() }).map_err(|p| p.into_error(yaml))?;
    contract.yaml = yaml.to_string();
    contract.sha256 = hex::encode(Sha256::digest(yaml.as_bytes()));
    Ok(contract)
}

fn syntax_error(e: serde_yaml_ng::Error) -> TrainerError {
    let text = e.to_string();
    let reason = match e.location() {
        // The parser's own " at line L column C" moves to the end, where
        // every contract error puts its position.
        Some(at) => {
            let text = text.replacen(&format!(" at line {} column {}", at.line(), at.column()), "", 1);
            format!("malformed YAML: {text} (line {}, column {})", at.line(), at.column())
        }
        None => format!("malformed YAML: {text}"),
    };
    TrainerError::invalid("yaml", reason)
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A path into the document, shown as `features[2].min`.
#[derive(Debug, Clone, Default, PartialEq)]
struct YamlPath(Vec<Seg>);

impl YamlPath {
    fn key(&self, key: &str) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_string()));
        Self(segs)
    }

    fn index(&self, index: usize) -> Self {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        Self(segs)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A contract error before its line is known.
#[derive(Debug)]
struct Problem {
    path: YamlPath,
    reason: String,
}

impl Problem {
    fn into_error(self, yaml: &str) -> TrainerError {
        // Errors about the document as a whole name the YAML itself.
        let field = if self.path.0.is_empty() { "yaml".to_string() } else { self.path.to_string() };
        let reason = match line_of(yaml, &self.path.0) {
            Some(line) => format!("{} (line {line})", self.reason),
            None => self.reason,
        };
        TrainerError::invalid(field, reason)
    }
}

type Check<T> = Result<T, Problem>;

fn describe(v: &Yaml) -> &'static str {
    match v {
        Yaml::Null => "null",
        Yaml::Bool(_) => "a bool",
        Yaml::Number(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Sequence(_) => "a list",
        Yaml::Mapping(_) => "a mapping",
        Yaml::Tagged(_) => "a tagged value",
    }
}

/// A value of the document with its path.
struct Node<'a> {
    value: &'a Yaml,
    path: YamlPath,
}

impl<'a> Node<'a> {
    fn fail<T>(&self, reason: impl Into<String>) -> Check<T> {
        Err(Problem { path: self.path.clone(), reason: reason.into() })
    }

    fn str(&self) -> Check<&'a str> {
        match self.value {
            Yaml::String(s) => Ok(s),
            other => self.fail(format!("must be a string, found {}", describe(other))),
        }
    }

    fn name(&self) -> Check<&'a str> {
        let s = self.str()?;
        if s.is_empty() { self.fail("must not be empty") } else { Ok(s) }
    }

    fn bool(&self) -> Check<bool> {
        match self.value {
            Yaml::Bool(b) => Ok(*b),
            other => self.fail(format!("must be true or false, found {}", describe(other))),
        }
    }

    fn number(&self) -> Check<f64> {
        match self.value {
            Yaml::Number(n) => match n.as_f64() {
                Some(x) if x.is_finite() => Ok(x),
                _ => self.fail("must be a finite number"),
            },
            other => self.fail(format!("must be a number, found {}", describe(other))),
        }
    }

    fn integer(&self) -> Check<i64> {
        match self.value {
            Yaml::Number(n) => match n.as_i64() {
                Some(i) => Ok(i),
                None => self.fail(format!("must be an integer, found {n}")),
            },
            other => self.fail(format!("must be an integer, found {}", describe(other))),
        }
    }

    /// A category or class label: strings as they are, integers in decimal,
    /// bools as `true`/`false` (the text [`label_text`] gives their cells).
    fn label(&self) -> Check<String> {
        match self.value {
            Yaml::String(s) => Ok(s.clone()),
            Yaml::Bool(b) => Ok(b.to_string()),
            Yaml::Number(n) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            other => self.fail(format!("must be a string, an integer or a bool, found {}", describe(other))),
        }
    }

    fn seq(&self) -> Check<Vec<Node<'a>>> {
        match self.value {
            Yaml::Sequence(items) => {
                Ok(items.iter().enumerate().map(|(i, value)| Node { value, path: self.path.index(i) }).collect())
            }
            other => self.fail(format!("must be a list, found {}", describe(other))),
        }
    }

    /// Entries of a mapping with string keys, in document order.
    fn entries(&self) -> Check<Vec<(&'a str, Node<'a>)>> {
        let Yaml::Mapping(map) = self.value else {
            return self.fail(format!("must be a mapping, found {}", describe(self.value)));
        };
        map.iter()
            .map(|(k, value)| match k {
                Yaml::String(k) => Ok((k.as_str(), Node { value, path: self.path.key(k) })),
                other => self.fail(format!("keys must be strings, found {}", describe(other))),
            })
            .collect()
    }

    /// A mapping whose keys must all be in `allowed`.
    fn map(&self, allowed: &[&str]) -> Check<Fields<'a>> {
        let entries = self.entries()?;
        for (key, node) in &entries {
            if !allowed.contains(key) {
                return node.fail(format!("unknown key; expected one of: {}", allowed.join(", ")));
            }
        }
        Ok(Fields { path: self.path.clone(), entries })
    }
}

struct Fields<'a> {
    path: YamlPath,
    entries: Vec<(&'a str, Node<'a>)>,
}

impl<'a> Fields<'a> {
    /// The value under `key`; an explicit null counts as absent.
    fn get(&self, key: &str) -> Option<&Node<'a>> {
        self.entries.iter().find(|(k, n)| *k == key && !n.value.is_null()).map(|(_, n)| n)
    }

    fn required(&self, key: &str) -> Check<&Node<'a>> {
        self.get(key).ok_or_else(|| Problem { path: self.path.key(key), reason: "is required".into() })
    }
}

fn valid_model_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

fn type_name(t: FeatureType) -> &'static str {
    match t {
        FeatureType::Float => "float",
        FeatureType::Int => "int",
        FeatureType::Bool => "bool",
        FeatureType::Category => "category",
        FeatureType::Unspecified => "unspecified",
    }
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::BinaryClassification => "binary_classification",
        Task::MulticlassClassification => "multiclass_classification",
        Task::Regression => "regression",
        Task::Unspecified => "unspecified",
    }
}

fn feature_type(node: &Node) -> Check<FeatureType> {
    match node.str()? {
        "float" => Ok(FeatureType::Float),
        "int" => Ok(FeatureType::Int),
        "bool" => Ok(FeatureType::Bool),
        "category" => Ok(FeatureType::Category),
        "text" => node.fail("text features are out of scope; expected float, int, bool or category"),
        other => node.fail(format!("unknown type `{other}`; expected float, int, bool or category")),
    }
}

fn read_contract(root: &Node) -> Check<pb::Contract> {
    if !matches!(root.value, Yaml::Mapping(_)) {
        return root.fail(format!(
            "a contract is a YAML mapping with model, task, target and features; found {}",
            describe(root.value)
        ));
    }
    let fields = root.map(&["model", "task", "target", "features", "rules", "promotion"])?;

    let model_node = fields.required("model")?;
    let model = model_node.str()?;
    if !valid_model_name(model) {
        return model_node.fail("must be 1 to 63 characters of a-z, 0-9, '_' and '-', starting with a letter");
    }

    let task_node = fields.required("task")?;
    let task = match task_node.str()? {
        "binary_classification" => Task::BinaryClassification,
        "multiclass_classification" => Task::MulticlassClassification,
        "regression" => Task::Regression,
        other => {
            return task_node.fail(format!(
                "unknown task `{other}`; expected binary_classification, multiclass_classification or regression"
            ));
        }
    };

    let target = read_target(fields.required("target")?, task)?;

    let features_node = fields.required("features")?;
    let items = features_node.seq()?;
    if items.is_empty() {
        return features_node.fail("at least one feature is required");
    }
    let mut features = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let (feature, name_node) = read_feature(item)?;
        if feature.name == target.name {
            return name_node
                .fail(format!("`{}` is the target; a feature cannot be named like the target", target.name));
        }
        if let Some(first) = seen.get(&feature.name) {
            return name_node.fail(format!("duplicate feature name `{}` (also features[{first}])", feature.name));
        }
        seen.insert(feature.name.clone(), i);
        features.push(feature);
    }

    let mut rules = Vec::new();
    if let Some(node) = fields.get("rules") {
        for item in node.seq()? {
            let rule = read_rule(&item, task)?;
            if let Some(j) = rules.iter().position(|r: &pb::Rule| r.kind == rule.kind && r.column == rule.column) {
                return item.fail(format!("duplicate rule: the same {} rule is rules[{j}]", rule.kind));
            }
            rules.push(rule);
        }
    }

    let promotion = fields.get("promotion").map(|n| read_promotion(n, task)).transpose()?;

    let mut contract = pb::Contract {
        model: model.to_string(),
        target: Some(target),
        features,
        rules,
        promotion,
        ..Default::default()
    };
    contract.set_task(task);
    Ok(contract)
}

fn read_target(node: &Node, task: Task) -> Check<pb::Target> {
    let fields = node.map(&["name", "type", "classes"])?;
    let name = fields.required("name")?.name()?;
    let type_node = fields.required("type")?;
    let ty = feature_type(type_node)?;
    let regression = task == Task::Regression;
    if regression && !matches!(ty, FeatureType::Float | FeatureType::Int) {
        return type_node.fail(format!("a regression target must be float or int, not {}", type_name(ty)));
    }
    if !regression && !matches!(ty, FeatureType::Bool | FeatureType::Int | FeatureType::Category) {
        return type_node.fail(format!("a classification target must be bool, int or category, not {}", type_name(ty)));
    }

    let mut classes: Vec<String> = Vec::new();
    if let Some(classes_node) = fields.get("classes") {
        if regression {
            return classes_node.fail("classes apply to classification targets only");
        }
        for item in classes_node.seq()? {
            let label = match ty {
                FeatureType::Bool => match item.value {
                    Yaml::Bool(b) => b.to_string(),
                    _ => return item.fail("a bool target's classes are true and false"),
                },
                FeatureType::Int => item.integer()?.to_string(),
                _ => item.label()?,
            };
            if let Some(j) = classes.iter().position(|c| *c == label) {
                return item.fail(format!("duplicate class `{label}` (also classes[{j}])"));
            }
            classes.push(label);
        }
        match task {
            Task::BinaryClassification if !classes.is_empty() && classes.len() != 2 => {
                return classes_node.fail(format!("a binary target has exactly 2 classes, found {}", classes.len()));
            }
            Task::MulticlassClassification if classes.len() == 1 => {
                return classes_node.fail("a multiclass target needs at least 2 classes");
            }
            _ => {}
        }
    }

    let mut target = pb::Target { name: name.to_string(), classes, ..Default::default() };
    target.set_type(ty);
    Ok(target)
}

/// The feature and the node of its name (for errors about the name).
fn read_feature<'a>(node: &Node<'a>) -> Check<(pb::Feature, Node<'a>)> {
    let fields =
        node.map(&["name", "type", "nullable", "min", "max", "categories", "impute", "fill_value", "non_finite"])?;
    let name_node = fields.required("name")?;
    let name = name_node.name()?;
    let ty = feature_type(fields.required("type")?)?;
    let numeric = matches!(ty, FeatureType::Float | FeatureType::Int);
    let nullable = fields.get("nullable").map(|n| n.bool()).transpose()?.unwrap_or(false);

    let bound = |key: &str| -> Check<Option<f64>> {
        let Some(n) = fields.get(key) else { return Ok(None) };
        if !numeric {
            return n.fail(format!("{key} applies to float and int features, not {}", type_name(ty)));
        }
        n.number().map(Some)
    };
    let (min, max) = (bound("min")?, bound("max")?);
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
        && let Some(n) = fields.get("min")
    {
        return n.fail("must be <= max");
    }

    let mut categories: Vec<String> = Vec::new();
    if let Some(n) = fields.get("categories") {
        if ty != FeatureType::Category {
            return n.fail(format!("categories apply to category features only, not {}", type_name(ty)));
        }
        for item in n.seq()? {
            let label = item.label()?;
            if let Some(j) = categories.iter().position(|c| *c == label) {
                return item.fail(format!("duplicate category `{label}` (also categories[{j}])"));
            }
            categories.push(label);
        }
    }

    let impute = match fields.get("impute") {
        None => Imputation::Unspecified,
        Some(n) => {
            let text = n.str()?;
            let (kind, fits) = match text {
                "mean" => (Imputation::Mean, numeric),
                "median" => (Imputation::Median, numeric),
                "mode" => (Imputation::Mode, true),
                "constant" => (Imputation::Constant, true),
                "missing_category" => (Imputation::MissingCategory, ty == FeatureType::Category),
                other => {
                    return n.fail(format!(
                        "unknown imputation `{other}`; expected mean, median, mode, constant or missing_category"
                    ));
                }
            };
            if !fits {
                let applies =
                    if kind == Imputation::MissingCategory { "category features" } else { "float and int features" };
                return n.fail(format!("{text} applies to {applies} only, not {}", type_name(ty)));
            }
            if kind == Imputation::Constant && fields.get("fill_value").is_none() {
                return n.fail("constant needs fill_value");
            }
            kind
        }
    };

    let fill_value = match fields.get("fill_value") {
        None => String::new(),
        Some(n) if impute != Imputation::Constant => return n.fail("applies only with impute: constant"),
        Some(n) => match ty {
            FeatureType::Float => n.number()?.to_string(),
            FeatureType::Int => n.integer()?.to_string(),
            FeatureType::Bool => n.bool()?.to_string(),
            _ => n.label()?,
        },
    };

    let non_finite = match fields.get("non_finite") {
        None => NonFinitePolicy::Refuse,
        Some(n) => {
            let policy = match n.str()? {
                "refuse" => NonFinitePolicy::Refuse,
                "as_null" => NonFinitePolicy::AsNull,
                other => return n.fail(format!("unknown policy `{other}`; expected refuse or as_null")),
            };
            if ty != FeatureType::Float {
                return n.fail(format!("non_finite applies to float features only, not {}", type_name(ty)));
            }
            if policy == NonFinitePolicy::AsNull && !nullable {
                return n.fail("as_null needs nullable: true (non-finite values become nulls)");
            }
            policy
        }
    };

    let mut feature =
        pb::Feature { name: name.to_string(), nullable, min, max, categories, fill_value, ..Default::default() };
    feature.set_type(ty);
    feature.set_impute(impute);
    feature.set_non_finite(non_finite);
    Ok((feature, Node { value: name_node.value, path: name_node.path.clone() }))
}

fn read_rule(node: &Node, task: Task) -> Check<pb::Rule> {
    let entries = node.entries()?;
    let Some((_, kind_node)) = entries.iter().find(|(k, n)| *k == "kind" && !n.value.is_null()) else {
        return Err(Problem { path: node.path.key("kind"), reason: "is required".into() });
    };
    let kind = kind_node.str()?;
    let (column_rule, params): (bool, &[&str]) = match kind {
        "min_rows" | "min_class_rows" => (false, &["value"]),
        "max_null_fraction" => (true, &["value"]),
        "unique" => (true, &[]),
        other => {
            return kind_node.fail(format!("unknown rule kind `{other}`; expected one of: {}", RULE_KINDS.join(", ")));
        }
    };
    if kind == "min_class_rows" && task == Task::Regression {
        return kind_node.fail("min_class_rows applies to classification tasks only");
    }

    let mut column = String::new();
    let mut fields = BTreeMap::new();
    for (key, value) in &entries {
        match *key {
            "kind" => {}
            "column" if column_rule => column = value.name()?.to_string(),
            "column" if kind == "min_class_rows" => {
                return value.fail("min_class_rows applies to the target's classes and takes no column");
            }
            "column" => return value.fail(format!("{kind} applies to the whole dataset and takes no column")),
            k if params.contains(&k) => {
                fields.insert(k.to_string(), to_proto(value.value));
            }
            _ if params.is_empty() => return value.fail(format!("unknown key; {kind} takes only kind and column")),
            _ => {
                let mut allowed = vec!["kind"];
                if column_rule {
                    allowed.push("column");
                }
                allowed.extend_from_slice(params);
                return value.fail(format!("unknown key; expected one of: {}", allowed.join(", ")));
            }
        }
    }
    if column_rule && column.is_empty() {
        return Err(Problem { path: node.path.key("column"), reason: format!("is required for {kind}") });
    }
    if !params.is_empty() {
        let Some((_, value)) = entries.iter().find(|(k, n)| *k == "value" && !n.value.is_null()) else {
            return Err(Problem { path: node.path.key("value"), reason: format!("is required for {kind}") });
        };
        if kind == "max_null_fraction" {
            let v = value.number()?;
            if !(0.0..=1.0).contains(&v) {
                return value.fail("must be between 0 and 1");
            }
        } else {
            match value.value {
                Yaml::Number(n) if n.as_i64().is_some_and(|v| v >= 1) => {}
                _ => return value.fail("must be an integer >= 1"),
            }
        }
    }
    Ok(pb::Rule { kind: kind.to_string(), column, params: Some(prost_types::Struct { fields }) })
}

fn to_proto(v: &Yaml) -> prost_types::Value {
    let kind = match v {
        Yaml::Null => Kind::NullValue(0),
        Yaml::Bool(b) => Kind::BoolValue(*b),
        Yaml::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Yaml::String(s) => Kind::StringValue(s.clone()),
        Yaml::Sequence(items) => {
            Kind::ListValue(prost_types::ListValue { values: items.iter().map(to_proto).collect() })
        }
        Yaml::Mapping(map) => Kind::StructValue(prost_types::Struct {
            fields: map.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), to_proto(v)))).collect(),
        }),
        Yaml::Tagged(t) => return to_proto(&t.value),
    };
    prost_types::Value { kind: Some(kind) }
}

fn read_promotion(node: &Node, task: Task) -> Check<pb::PromotionGates> {
    let fields = node.map(&["min_metrics", "max_regression"])?;
    let mut gates = pb::PromotionGates::default();
    for (section, out) in [("min_metrics", &mut gates.min_metrics), ("max_regression", &mut gates.max_regression)] {
        let Some(n) = fields.get(section) else { continue };
        for (name, value) in n.entries()? {
            if !METRIC_NAMES.contains(&name) {
                return value.fail(format!("unknown metric `{name}`; expected one of: {}", METRIC_NAMES.join(", ")));
            }
            if !metric_fits_task(name, task) {
                let fits = if matches!(name, "rmse" | "mae" | "r2") { "regression" } else { "classification" };
                return value.fail(format!("{name} is a {fits} metric; the task is {}", task_name(task)));
            }
            let v = value.number()?;
            if section == "max_regression" {
                if v < 0.0 {
                    return value.fail("must be >= 0");
                }
            } else if matches!(name, "accuracy" | "precision" | "recall" | "f1" | "roc_auc") {
                if !(0.0..=1.0).contains(&v) {
                    return value.fail("must be between 0 and 1");
                }
            } else if name == "r2" {
                if v > 1.0 {
                    return value.fail("must be <= 1");
                }
            } else if v < 0.0 {
                return value.fail("must be >= 0");
            }
            out.insert(name.to_string(), v);
        }
    }
    Ok(gates)
}

// ---------------------------------------------------------------- lines

/// Marks the deliberate failure of [`Probe`].
const PROBE_HIT: &str = "pulse contract probe";

/// The 1-based line of the node at `path`, or of its nearest ancestor
/// present in the document (a missing key points at its parent). The root
/// alone gives no line: "line 1" would say nothing useful.
fn line_of(yaml: &str, path: &[Seg]) -> Option<usize> {
    (1..=path.len()).rev().find_map(|len| probe(yaml, &path[..len]))
}

fn probe(yaml: &str, path: &[Seg]) -> Option<usize> {
    let de = serde_yaml_ng::Deserializer::from_str(yaml);
    match (Probe { path }).deserialize(de) {
        Err(e) if e.to_string().contains(PROBE_HIT) => e.location().map(|at| at.line()),
        _ => None,
    }
}

fn hit<E: de::Error>() -> E {
    E::custom(PROBE_HIT)
}

/// Walks to `path` and fails there. A path ending in a key fails on the key
/// itself, so the line is the key's even when its value starts below.
struct Probe<'p> {
    path: &'p [Seg],
}

impl Probe<'_> {
    fn leaf<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() { Err(hit()) } else { Ok(()) }
    }
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Probe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.leaf()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.leaf()
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.leaf()
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.leaf()
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.leaf()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.leaf()
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.leaf()
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.leaf()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else { return Err(hit()) };
        let wanted = match first {
            Seg::Index(i) => Some(*i),
            Seg::Key(_) => None,
        };
        let mut i = 0;
        loop {
            let more = if Some(i) == wanted {
                seq.next_element_seed(Probe { path: rest })?.is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((first, rest)) = self.path.split_first() else { return Err(hit()) };
        let wanted = match first {
            Seg::Key(k) => Some(k.as_str()),
            Seg::Index(_) => None,
        };
        while let Some(found) = map.next_key_seed(KeyProbe { wanted, fail: rest.is_empty() })? {
            if found {
                map.next_value_seed(Probe { path: rest })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // Tagged values (`!tag x`): the contract rejects them, so a path
        // never goes through one.
        if self.path.is_empty() {
            return Err(hit());
        }
        let (_, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant::<IgnoredAny>(variant)?;
        Ok(())
    }
}

/// A mapping key: whether it is the wanted one (failing right there when
/// the path ends at it).
struct KeyProbe<'k> {
    wanted: Option<&'k str>,
    fail: bool,
}

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        match self.wanted {
            Some(w) if w == key && self.fail => Err(hit()),
            Some(w) => Ok(w == key),
            None => Ok(false),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Refuses a key repeated in a mapping, naming the repeat's path and line.
/// Reading the document into values would refuse it too, but positioned at
/// the mapping's start; failing while the parser is on the key puts the
/// position on the key itself.
fn check_duplicate_keys(yaml: &str) -> Result<(), TrainerError> {
    let found = RefCell::new(None);
    let de = serde_yaml_ng::Deserializer::from_str(yaml);
    // Any other failure is a syntax error, reported by the real read.
    if let Err(e) = (Dups { path: YamlPath::default(), found: &found }).deserialize(de)
        && let Some(path) = found.take()
    {
        let reason = match e.location() {
            Some(at) => format!("duplicate key (line {})", at.line()),
            None => "duplicate key".to_string(),
        };
        return Err(TrainerError::invalid(path.to_string(), reason));
    }
    Ok(())
}

struct Dups<'f> {
    path: YamlPath,
    found: &'f RefCell<Option<YamlPath>>,
}

impl<'de> DeserializeSeed<'de> for Dups<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Dups<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        Ok(())
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq.next_element_seed(Dups { path: self.path.index(i), found: self.found })?.is_some() {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key_seed(DupKey { path: &self.path, seen: &mut seen, found: self.found })? {
            map.next_value_seed(Dups { path: self.path.key(key.as_deref().unwrap_or("?")), found: self.found })?;
        }
        Ok(())
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (_, variant) = data.variant::<IgnoredAny>()?;
        de::VariantAccess::newtype_variant_seed(variant, self)
    }
}

/// A mapping key: its text when it is a string, failing on a repeat.
struct DupKey<'s, 'f> {
    path: &'s YamlPath,
    seen: &'s mut HashSet<String>,
    found: &'f RefCell<Option<YamlPath>>,
}

impl<'de> DeserializeSeed<'de> for DupKey<'_, '_> {
    type Value = Option<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DupKey<'_, '_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<String>, E> {
        if !self.seen.insert(key.to_string()) {
            *self.found.borrow_mut() = Some(self.path.key(key));
            return Err(E::custom("duplicate key"));
        }
        Ok(Some(key.to_string()))
    }

    // Other keys are refused later, when the contract is read.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<String>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

// ---------------------------------------------------------------- validation

/// The result of checking rows against a contract.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationOutcome {
    pub passed: bool,
    pub rows_checked: u64,
    /// One per (column, rule), features first in contract order, then the
    /// target, then the rules.
    pub violations: Vec<pb::Violation>,
}

/// Checks every row of `batches` (one dataset version, in read order; rows
/// are numbered from 0 across batches) against the contract. `max_examples`
/// per violation: 0 means 5, at most 100.
pub fn validate_batches(contract: &pb::Contract, batches: &[RecordBatch], max_examples: u32) -> ValidationOutcome {
    let limit = match max_examples {
        0 => DEFAULT_EXAMPLES,
        n => (n as usize).min(MAX_EXAMPLES),
    };
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let mut checker = Checker { batches, limit, violations: Vec::new() };
    for feature in &contract.features {
        checker.feature(feature);
    }
    if let Some(target) = &contract.target {
        checker.target(target);
    }
    for rule in &contract.rules {
        checker.rule(rule, contract, rows);
    }
    let violations = checker.violations;
    ValidationOutcome { passed: violations.is_empty(), rows_checked: rows, violations }
}

/// The text of a cell as classes and categories spell it: bools as
/// `true`/`false`, integers in decimal, strings as they are, floats in
/// Rust's shortest round-trip form ("2.5", "3", "NaN", "inf"), decimals with
/// their scale. `None` for a null or a row out of range.
pub fn label_text(array: &dyn Array, row: usize) -> Option<String> {
    if row >= array.len() || array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float32 => array.as_primitive::<Float32Type>().value(row).to_string(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => array.as_string_view().value(row).to_string(),
        DataType::Decimal128(..) => array.as_primitive::<Decimal128Type>().value_as_string(row),
        // Anything else (dates, dictionaries, …) as Arrow displays it.
        _ => ArrayFormatter::try_new(array, &FormatOptions::default()).ok()?.value(row).to_string(),
    })
}

fn cell_text(array: &dyn Array, row: usize) -> String {
    label_text(array, row).unwrap_or_else(|| "null".to_string())
}

fn accepts(ty: FeatureType, dt: &DataType) -> bool {
    use DataType as D;
    match ty {
        FeatureType::Float => matches!(dt, D::Float64 | D::Float32 | D::Int64 | D::Int32 | D::Decimal128(..)),
        FeatureType::Int => {
            matches!(dt, D::Int64 | D::Int32 | D::Int16 | D::Int8 | D::UInt64 | D::UInt32 | D::UInt16 | D::UInt8)
        }
        FeatureType::Bool => matches!(dt, D::Boolean),
        FeatureType::Category => matches!(dt, D::Utf8 | D::LargeUtf8 | D::Int64 | D::Boolean),
        FeatureType::Unspecified => false,
    }
}

fn accepted_names(ty: FeatureType) -> &'static str {
    match ty {
        FeatureType::Float => "Float64, Float32, Int64, Int32 or Decimal128",
        FeatureType::Int => "Int64, Int32, Int16, Int8 or UInt64, UInt32, UInt16, UInt8",
        FeatureType::Bool => "Boolean",
        FeatureType::Category => "Utf8, LargeUtf8, Int64 or Boolean",
        FeatureType::Unspecified => "nothing (the contract gives no type)",
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A list for a message, cut after ten items.
fn show_list(items: &[String]) -> String {
    const SHOWN: usize = 10;
    let head = items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOWN { format!("[{head}, … {} more]", items.len() - SHOWN) } else { format!("[{head}]") }
}

/// Offending rows of one (column, rule): all counted, the first few kept.
struct Tally {
    count: u64,
    examples: Vec<pb::ViolationExample>,
    limit: usize,
}

impl Tally {
    fn new(limit: usize) -> Self {
        Self { count: 0, examples: Vec::new(), limit }
    }

    fn add(&mut self, row: u64, value: impl FnOnce() -> String) {
        self.count += 1;
        if self.examples.len() < self.limit {
            self.examples.push(pb::ViolationExample { row, value: value() });
        }
    }
}

struct Checker<'b> {
    batches: &'b [RecordBatch],
    limit: usize,
    violations: Vec<pb::Violation>,
}

impl<'b> Checker<'b> {
    /// Records a violation unless its (column, rule) already has one: a
    /// missing column named by a feature and a rule is reported once.
    fn push(&mut self, violation: pb::Violation) {
        if !self.violations.iter().any(|v| v.column == violation.column && v.rule == violation.rule) {
            self.violations.push(violation);
        }
    }

    fn report(&mut self, column: &str, rule: &str, tally: Tally, message: String) {
        if tally.count > 0 {
            self.push(pb::Violation {
                column: column.to_string(),
                rule: rule.to_string(),
                count: tally.count,
                examples: tally.examples,
                message,
            });
        }
    }

    fn tally(&self) -> Tally {
        Tally::new(self.limit)
    }

    /// The column's arrays in batch order, or a `missing_column` violation
    /// when a batch lacks it. No batches: nothing can be said.
    fn column(&mut self, name: &str) -> Option<Vec<&'b ArrayRef>> {
        let arrays: Option<Vec<&'b ArrayRef>> = self.batches.iter().map(|b| b.column_by_name(name)).collect();
        if arrays.is_none() {
            self.push(pb::Violation {
                column: name.to_string(),
                rule: "missing_column".into(),
                count: 1,
                examples: Vec::new(),
                message: format!("{name}: column is missing from the dataset"),
            });
        }
        arrays
    }

    /// The column when present with an Arrow type that fits `ty`.
    fn typed_column(&mut self, name: &str, ty: FeatureType, what: &str) -> Option<Vec<&'b ArrayRef>> {
        let arrays = self.column(name)?;
        if let Some(bad) = arrays.iter().find(|a| !accepts(ty, a.data_type())) {
            self.push(pb::Violation {
                column: name.to_string(),
                rule: "type".into(),
                count: 1,
                examples: Vec::new(),
                message: format!(
                    "{name}: Arrow type {} does not fit the {what}'s type {} (accepted: {})",
                    bad.data_type(),
                    type_name(ty),
                    accepted_names(ty)
                ),
            });
            return None;
        }
        Some(arrays)
    }

    /// The column as Float64 for range checks; a failed cast is reported as
    /// a type violation.
    fn floats(&mut self, name: &str, array: &ArrayRef) -> Option<ArrayRef> {
        match cast(array, &DataType::Float64) {
            Ok(values) => Some(values),
            Err(e) => {
                self.push(pb::Violation {
                    column: name.to_string(),
                    rule: "type".into(),
                    count: 1,
                    examples: Vec::new(),
                    message: format!("{name}: Arrow type {} cannot be read as numbers: {e}", array.data_type()),
                });
                None
            }
        }
    }

    fn feature(&mut self, f: &pb::Feature) {
        let ty = f.r#type();
        let Some(arrays) = self.typed_column(&f.name, ty, "feature") else { return };
        let numeric = matches!(ty, FeatureType::Float | FeatureType::Int);
        let as_null = f.non_finite() == NonFinitePolicy::AsNull;
        let categories: HashSet<&str> = f.categories.iter().map(String::as_str).collect();
        let check_categories = ty == FeatureType::Category && !categories.is_empty();
        let (mut nulls, mut non_finite, mut below, mut above, mut outside) =
            (self.tally(), self.tally(), self.tally(), self.tally(), self.tally());

        let mut first_row = 0u64;
        for array in arrays {
            let numbers = if numeric {
                match self.floats(&f.name, array) {
                    Some(values) => Some(values),
                    None => return,
                }
            } else {
                None
            };
            for i in 0..array.len() {
                let row = first_row + i as u64;
                if array.is_null(i) {
                    if !f.nullable {
                        nulls.add(row, || "null".into());
                    }
                    continue;
                }
                if let Some(values) = &numbers {
                    let v = values.as_primitive::<Float64Type>().value(i);
                    if !v.is_finite() {
                        // as_null: the value is a null from here on.
                        if as_null {
                            if !f.nullable {
                                nulls.add(row, || cell_text(array, i));
                            }
                        } else {
                            non_finite.add(row, || cell_text(array, i));
                        }
                        continue;
                    }
                    if f.min.is_some_and(|min| v < min) {
                        below.add(row, || cell_text(array, i));
                    }
                    if f.max.is_some_and(|max| v > max) {
                        above.add(row, || cell_text(array, i));
                    }
                } else if check_categories
                    && let Some(label) = label_text(array, i)
                    && !categories.contains(label.as_str())
                {
                    outside.add(row, || label);
                }
            }
            first_row += array.len() as u64;
        }

        let name = &f.name;
        let m = format!("{name}: {} in a non-nullable feature", plural(nulls.count, "null value", "null values"));
        self.report(name, "nullable", nulls, m);
        let m = format!("{name}: {} (NaN or ±inf)", plural(non_finite.count, "non-finite value", "non-finite values"));
        self.report(name, "non_finite", non_finite, m);
        if let Some(min) = f.min {
            let m = format!("{name}: {} below min {min}", plural(below.count, "value", "values"));
            self.report(name, "min", below, m);
        }
        if let Some(max) = f.max {
            let m = format!("{name}: {} above max {max}", plural(above.count, "value", "values"));
            self.report(name, "max", above, m);
        }
        let m = format!(
            "{name}: {} not in the categories {}",
            plural(outside.count, "value", "values"),
            show_list(&f.categories)
        );
        self.report(name, "categories", outside, m);
    }

    fn target(&mut self, t: &pb::Target) {
        let ty = t.r#type();
        let Some(arrays) = self.typed_column(&t.name, ty, "target") else { return };
        let classes: HashSet<&str> = t.classes.iter().map(String::as_str).collect();
        let (mut nulls, mut non_finite, mut outside) = (self.tally(), self.tally(), self.tally());

        let mut first_row = 0u64;
        for array in arrays {
            let numbers = if ty == FeatureType::Float {
                match self.floats(&t.name, array) {
                    Some(values) => Some(values),
                    None => return,
                }
            } else {
                None
            };
            for i in 0..array.len() {
                let row = first_row + i as u64;
                if array.is_null(i) {
                    nulls.add(row, || "null".into());
                    continue;
                }
                if let Some(values) = &numbers
                    && !values.as_primitive::<Float64Type>().value(i).is_finite()
                {
                    non_finite.add(row, || cell_text(array, i));
                    continue;
                }
                if !classes.is_empty()
                    && let Some(label) = label_text(array, i)
                    && !classes.contains(label.as_str())
                {
                    outside.add(row, || label);
                }
            }
            first_row += array.len() as u64;
        }

        let name = &t.name;
        let m = format!("{name}: {} in the target", plural(nulls.count, "null label", "null labels"));
        self.report(name, "nullable", nulls, m);
        let m = format!(
            "{name}: {} in the target (NaN or ±inf)",
            plural(non_finite.count, "non-finite value", "non-finite values")
        );
        self.report(name, "non_finite", non_finite, m);
        let m = format!(
            "{name}: {} not in the classes {}",
            plural(outside.count, "label", "labels"),
            show_list(&t.classes)
        );
        self.report(name, "categories", outside, m);
    }

    fn rule(&mut self, rule: &pb::Rule, contract: &pb::Contract, rows: u64) {
        let value = rule.params.as_ref().and_then(|p| p.fields.get("value")).and_then(|v| match v.kind {
            Some(Kind::NumberValue(x)) => Some(x),
            _ => None,
        });
        match rule.kind.as_str() {
            "min_rows" => {
                if let Some(min) = value
                    && (rows as f64) < min
                {
                    self.push(pb::Violation {
                        column: String::new(),
                        rule: rule.kind.clone(),
                        count: 1,
                        examples: Vec::new(),
                        message: format!("the dataset has {}, fewer than min_rows {min}", plural(rows, "row", "rows")),
                    });
                }
            }
            "max_null_fraction" => {
                if let Some(max) = value {
                    self.max_null_fraction(&rule.column, max, contract, rows);
                }
            }
            "unique" => self.unique(&rule.column),
            "min_class_rows" => {
                if let (Some(min), Some(target)) = (value, &contract.target) {
                    self.min_class_rows(target, min);
                }
            }
            // Registration refuses other kinds; a contract stored by a later
            // version may know more.
            _ => {}
        }
    }

    fn max_null_fraction(&mut self, column: &str, max: f64, contract: &pb::Contract, rows: u64) {
        let Some(arrays) = self.column(column) else { return };
        // A float feature with non_finite: as_null has more nulls than Arrow
        // shows: its NaNs and infinities.
        let as_null = contract
            .features
            .iter()
            .any(|f| f.name == column && f.r#type() == FeatureType::Float && f.non_finite() == NonFinitePolicy::AsNull);
        let mut nulls = self.tally();
        let mut first_row = 0u64;
        for array in arrays {
            let floats = match array.data_type() {
                DataType::Float64 if as_null => Some(array.as_primitive::<Float64Type>().clone()),
                DataType::Float32 if as_null => {
                    cast(array, &DataType::Float64).ok().map(|a| a.as_primitive::<Float64Type>().clone())
                }
                _ => None,
            };
            for i in 0..array.len() {
                let null = array.is_null(i) || floats.as_ref().is_some_and(|f| !f.value(i).is_finite());
                if null {
                    nulls.add(first_row + i as u64, || cell_text(array, i));
                }
            }
            first_row += array.len() as u64;
        }
        if rows == 0 {
            return;
        }
        let fraction = nulls.count as f64 / rows as f64;
        if fraction > max {
            let m = format!(
                "{column}: null fraction {fraction:.4} ({} of {rows}) above max_null_fraction {max}",
                nulls.count
            );
            self.report(column, "max_null_fraction", nulls, m);
        }
    }

    /// Rows repeating an earlier row's value; nulls are never duplicates
    /// (as in SQL: `nullable` is the rule about them).
    fn unique(&mut self, column: &str) {
        let Some(arrays) = self.column(column) else { return };
        let mut seen: HashSet<String> = HashSet::new();
        let mut dups = self.tally();
        let mut first_row = 0u64;
        for array in arrays {
            for i in 0..array.len() {
                if let Some(key) = label_text(array.as_ref(), i)
                    && let Some(key) = seen.replace(key)
                {
                    dups.add(first_row + i as u64, || key);
                }
            }
            first_row += array.len() as u64;
        }
        let m = format!("{column}: {}", plural(dups.count, "duplicate value", "duplicate values"));
        self.report(column, "unique", dups, m);
    }

    /// One violation naming every class under the minimum: the declared
    /// classes (a declared class with no rows has 0), else the classes seen.
    fn min_class_rows(&mut self, target: &pb::Target, min: f64) {
        // A missing target column is already reported by the target check.
        let Some(arrays) = self.batches.iter().map(|b| b.column_by_name(&target.name)).collect::<Option<Vec<_>>>()
        else {
            return;
        };
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for array in arrays {
            for i in 0..array.len() {
                if let Some(label) = label_text(array.as_ref(), i) {
                    *counts.entry(label).or_default() += 1;
                }
            }
        }
        let classes: Vec<String> =
            if target.classes.is_empty() { counts.keys().cloned().collect() } else { target.classes.clone() };
        let under: Vec<String> = classes
            .iter()
            .map(|c| (c, counts.get(c).copied().unwrap_or(0)))
            .filter(|(_, n)| (*n as f64) < min)
            .map(|(c, n)| format!("{c} ({n})"))
            .collect();
        if !under.is_empty() {
            self.push(pb::Violation {
                column: target.name.clone(),
                rule: "min_class_rows".into(),
                count: under.len() as u64,
                examples: Vec::new(),
                message: format!(
                    "{}: {} with fewer than {min} rows: {}",
                    target.name,
                    plural(under.len() as u64, "class", "classes"),
                    under.join(", ")
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Decimal128Array, Float32Array, Float64Array, Int32Array, Int64Array, LargeStringArray,
        StringArray, UInt8Array,
    };

    use super::*;

    const EXAMPLE: &str = "\
model: churn
task: binary_classification
target: {name: churned, type: bool}
features:
  - {name: tenure, type: int, nullable: false, min: 0, max: 600}
  - {name: monthly_spend, type: float, nullable: true, impute: median, non_finite: as_null}
  - {name: plan, type: category, categories: [basic, pro, enterprise], impute: missing_category}
rules:
  - {kind: min_rows, value: 1000}
  - {kind: max_null_fraction, column: monthly_spend, value: 0.05}
  - {kind: unique, column: id}
  - {kind: min_class_rows, value: 10}
promotion:
  min_metrics: {roc_auc: 0.75}
  max_regression: {roc_auc: 0.01}
";

    /// The error's (field, reason).
    fn invalid(yaml: &str) -> (String, String) {
        match parse_contract(yaml) {
            Err(TrainerError::Invalid { field, reason }) => (field, reason),
            other => panic!("expected INVALID_ARGUMENT for\n{yaml}\ngot {other:?}"),
        }
    }

    /// A valid binary contract (target `y`, bool) with these feature lines,
    /// the first on line 5.
    fn with(features: &str) -> String {
        format!("model: m\ntask: binary_classification\ntarget: {{name: y, type: bool}}\nfeatures:\n{features}\n")
    }

    fn num(v: &prost_types::Value) -> f64 {
        match v.kind {
            Some(Kind::NumberValue(x)) => x,
            ref other => panic!("not a number: {other:?}"),
        }
    }

    #[test]
    fn parses_the_example() {
        let c = parse_contract(EXAMPLE).unwrap();
        assert_eq!(c.model, "churn");
        assert_eq!(c.version, 0);
        assert_eq!(c.created_at, None);
        assert_eq!(c.yaml, EXAMPLE);
        assert_eq!(c.sha256, hex::encode(Sha256::digest(EXAMPLE.as_bytes())));
        assert_eq!(c.sha256.len(), 64);
        assert_eq!(c.task(), Task::BinaryClassification);
        let t = c.target.as_ref().unwrap();
        assert_eq!((t.name.as_str(), t.r#type(), t.classes.len()), ("churned", FeatureType::Bool, 0));

        assert_eq!(c.features.len(), 3);
        let tenure = &c.features[0];
        assert_eq!((tenure.name.as_str(), tenure.r#type(), tenure.nullable), ("tenure", FeatureType::Int, false));
        assert_eq!((tenure.min, tenure.max), (Some(0.0), Some(600.0)));
        assert_eq!(tenure.impute(), Imputation::Unspecified);
        assert_eq!(tenure.non_finite(), NonFinitePolicy::Refuse);
        let spend = &c.features[1];
        assert!(spend.nullable);
        assert_eq!((spend.min, spend.max), (None, None));
        assert_eq!(spend.impute(), Imputation::Median);
        assert_eq!(spend.non_finite(), NonFinitePolicy::AsNull);
        let plan = &c.features[2];
        assert_eq!(plan.r#type(), FeatureType::Category);
        assert_eq!(plan.categories, vec!["basic", "pro", "enterprise"]);
        assert_eq!(plan.impute(), Imputation::MissingCategory);

        let kinds: Vec<(&str, &str)> = c.rules.iter().map(|r| (r.kind.as_str(), r.column.as_str())).collect();
        assert_eq!(
            kinds,
            vec![("min_rows", ""), ("max_null_fraction", "monthly_spend"), ("unique", "id"), ("min_class_rows", "")]
        );
        let params = |i: usize| &c.rules[i].params.as_ref().unwrap().fields;
        assert_eq!(params(0).len(), 1);
        assert_eq!(num(&params(0)["value"]), 1000.0);
        assert_eq!(num(&params(1)["value"]), 0.05);
        assert!(params(2).is_empty());
        assert_eq!(num(&params(3)["value"]), 10.0);

        let p = c.promotion.as_ref().unwrap();
        assert_eq!(p.min_metrics.get("roc_auc"), Some(&0.75));
        assert_eq!(p.max_regression.get("roc_auc"), Some(&0.01));
    }

    #[test]
    fn the_hash_is_of_the_exact_bytes() {
        let a = parse_contract(EXAMPLE).unwrap();
        let b = parse_contract(&format!("{EXAMPLE}# a comment\n")).unwrap();
        assert_eq!(a.features, b.features);
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(a.sha256, parse_contract(EXAMPLE).unwrap().sha256);
    }

    #[test]
    fn block_style_regression_contract() {
        let yaml = "\
model: house-prices_2
task: regression
target:
  name: price
  type: float
features:
  - name: rooms
    type: int
  - name: area
    type: float
    impute: constant
    fill_value: 0.5
  - name: garden
    type: bool
    nullable: true
    impute: mode
  - name: zone
    type: category
    impute: constant
    fill_value: 3
promotion:
  min_metrics: {r2: 0.5, rmse: 100000}
";
        let c = parse_contract(yaml).unwrap();
        assert_eq!(c.task(), Task::Regression);
        assert_eq!(c.target.as_ref().unwrap().r#type(), FeatureType::Float);
        assert_eq!(c.features[1].impute(), Imputation::Constant);
        assert_eq!(c.features[1].fill_value, "0.5");
        assert_eq!(c.features[2].impute(), Imputation::Mode);
        assert_eq!(c.features[3].fill_value, "3");
        assert!(c.rules.is_empty());
        assert_eq!(c.promotion.unwrap().min_metrics.len(), 2);
    }

    #[test]
    fn classes_are_text_in_order() {
        let c = parse_contract(
            "model: m\ntask: multiclass_classification\ntarget: {name: y, type: int, classes: [3, 1, 2]}\n\
             features: [{name: x, type: float}]\n",
        )
        .unwrap();
        assert_eq!(c.target.unwrap().classes, vec!["3", "1", "2"]);
        let c = parse_contract(
            "model: m\ntask: binary_classification\ntarget: {name: y, type: bool, classes: [false, true]}\n\
             features: [{name: x, type: float}]\n",
        )
        .unwrap();
        assert_eq!(c.target.unwrap().classes, vec!["false", "true"]);
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let (field, reason) = invalid("model: m\ntask: [unclosed\nfeatures: x\n");
        assert_eq!(field, "yaml");
        assert!(reason.starts_with("malformed YAML"), "{reason}");
        assert!(reason.contains("(line "), "{reason}");
        let (field, reason) = invalid("model: m\ntask: [a,\n  b\nfeatures: x\n");
        assert_eq!(field, "yaml");
        // The parser's own position moves to the end; its context stays.
        assert_eq!(
            reason,
            "malformed YAML: did not find expected ',' or ']', while parsing a flow sequence at line 2 column 7 \
             (line 4, column 9)"
        );
    }

    #[test]
    fn duplicate_keys_name_the_repeat() {
        assert_eq!(invalid("model: m\nmodel: n\n"), ("model".into(), "duplicate key (line 2)".into()));
        let yaml = with("  - {name: a, type: int}\n  - name: b\n    type: int\n    type: float");
        assert_eq!(invalid(&yaml), ("features[1].type".into(), "duplicate key (line 8)".into()));
        let yaml = format!("{}promotion:\n  min_metrics: {{f1: 0.5, f1: 0.6}}\n", with("  - {name: a, type: int}"));
        assert_eq!(invalid(&yaml), ("promotion.min_metrics.f1".into(), "duplicate key (line 7)".into()));
    }

    #[test]
    fn the_document_must_be_a_mapping() {
        let (field, reason) = invalid("- a\n- b\n");
        assert_eq!(field, "yaml");
        assert!(reason.contains("found a list"), "{reason}");
        assert_eq!(invalid("").0, "yaml");
    }

    #[test]
    fn oversized_input_is_refused() {
        let yaml = format!("{EXAMPLE}#{}\n", "x".repeat(MAX_CONTRACT_BYTES));
        let (field, reason) = invalid(&yaml);
        assert_eq!(field, "yaml");
        assert!(reason.contains("1 MiB"), "{reason}");
    }

    #[test]
    fn errors_name_the_path_and_line() {
        // min > max on the third feature, line 7.
        let yaml =
            with("  - {name: a, type: int}\n  - {name: b, type: float}\n  - {name: c, type: float, min: 5, max: 1}");
        assert_eq!(invalid(&yaml), ("features[2].min".into(), "must be <= max (line 7)".into()));

        // Block style: the line of the key, not of the item.
        let yaml = with("  - name: a\n    type: int\n    colour: red");
        assert_eq!(invalid(&yaml).0, "features[0].colour");
        assert!(invalid(&yaml).1.ends_with("(line 7)"), "{:?}", invalid(&yaml));

        // A missing key points at its parent.
        let yaml = with("  - {name: a, type: int}\n  - {name: b}");
        assert_eq!(invalid(&yaml), ("features[1].type".into(), "is required (line 6)".into()));

        // A missing top-level key has no line worth giving.
        let (field, reason) = invalid("model: m\ntask: regression\nfeatures: [{name: a, type: int}]\n");
        assert_eq!((field.as_str(), reason.as_str()), ("target", "is required"));
    }

    /// Every refusal: (yaml, field, a piece of the reason).
    #[test]
    fn refusals() {
        let cases: Vec<(String, &str, &str)> = vec![
            // unknown keys at every level
            (format!("{EXAMPLE}owner: me\n"), "owner", "unknown key"),
            (with("  - {name: a, type: int, colour: red}"), "features[0].colour", "unknown key"),
            (
                "model: m\ntask: regression\ntarget: {name: y, type: float, label: z}\nfeatures: [{name: a, type: int}]"
                    .into(),
                "target.label",
                "unknown key",
            ),
            (format!("{}promotion: {{min: {{}}}}\n", with("  - {name: a, type: int}")), "promotion.min", "unknown key"),
            // model
            (EXAMPLE.replace("model: churn", "model: Churn"), "model", "a-z"),
            (EXAMPLE.replace("model: churn", "model: 9lives"), "model", "starting with a letter"),
            (EXAMPLE.replace("model: churn", "model: churn.v2"), "model", "a-z"),
            (EXAMPLE.replace("model: churn", &format!("model: a{}", "b".repeat(63))), "model", "63"),
            (EXAMPLE.replace("model: churn", "model: 12"), "model", "must be a string"),
            (EXAMPLE.replace("model: churn\n", ""), "model", "is required"),
            // task
            (EXAMPLE.replace("binary_classification", "clustering"), "task", "unknown task `clustering`"),
            // target
            (EXAMPLE.replace("target: {name: churned, type: bool}\n", ""), "target", "is required"),
            (EXAMPLE.replace("type: bool}", "type: float}"), "target.type", "classification target must be bool"),
            (
                EXAMPLE.replace("binary_classification", "regression").replace("min_class_rows", "min_rows_x"),
                "target.type",
                "regression target must be float or int",
            ),
            (EXAMPLE.replace("{name: churned, type: bool}", "{type: bool}"), "target.name", "is required"),
            (EXAMPLE.replace("type: bool}", "type: text}"), "target.type", "out of scope"),
            (
                EXAMPLE.replace("type: bool}", "type: bool, classes: [true, false, true]}"),
                "target.classes[2]",
                "duplicate class",
            ),
            (
                EXAMPLE.replace("{name: churned, type: bool}", "{name: churned, type: category, classes: [a, b, c]}"),
                "target.classes",
                "exactly 2 classes",
            ),
            (EXAMPLE.replace("type: bool}", "type: bool, classes: [yes, no]}"), "target.classes[0]", "true and false"),
            (
                "model: m\ntask: regression\ntarget: {name: y, type: float, classes: [a]}\nfeatures: [{name: a, type: int}]"
                    .into(),
                "target.classes",
                "classification targets only",
            ),
            // features
            ("model: m\ntask: regression\ntarget: {name: y, type: float}\nfeatures: []".into(), "features", "at least one"),
            ("model: m\ntask: regression\ntarget: {name: y, type: float}\n".into(), "features", "is required"),
            (with("  - {name: a, type: int}\n  - {name: b, type: int}\n  - {name: a, type: float}"), "features[2].name", "duplicate feature name `a` (also features[0])"),
            (with("  - {name: y, type: int}"), "features[0].name", "named like the target"),
            (with("  - {name: '', type: int}"), "features[0].name", "must not be empty"),
            (with("  - {name: a, type: text}"), "features[0].type", "text features are out of scope"),
            (with("  - {name: a, type: string}"), "features[0].type", "unknown type `string`"),
            (with("  - {name: a, type: int, nullable: maybe}"), "features[0].nullable", "true or false"),
            (with("  - {name: a, type: int, min: low}"), "features[0].min", "must be a number"),
            (with("  - {name: a, type: float, max: .nan}"), "features[0].max", "finite"),
            (with("  - {name: a, type: bool, min: 0}"), "features[0].min", "float and int features, not bool"),
            (with("  - {name: a, type: category, max: 3}"), "features[0].max", "not category"),
            (with("  - {name: a, type: int, categories: [1, 2]}"), "features[0].categories", "category features only"),
            (with("  - {name: a, type: category, categories: [x, y, x]}"), "features[0].categories[2]", "duplicate category `x`"),
            (with("  - {name: a, type: category, categories: [x, 1.5]}"), "features[0].categories[1]", "string, an integer or a bool"),
            (with("  - {name: a, type: category, impute: mean}"), "features[0].impute", "mean applies to float and int features only"),
            (with("  - {name: a, type: bool, impute: median}"), "features[0].impute", "median applies to float and int"),
            (with("  - {name: a, type: int, impute: missing_category}"), "features[0].impute", "category features only"),
            (with("  - {name: a, type: int, impute: constant}"), "features[0].impute", "constant needs fill_value"),
            (with("  - {name: a, type: int, impute: zero}"), "features[0].impute", "unknown imputation"),
            (with("  - {name: a, type: int, fill_value: 3}"), "features[0].fill_value", "impute: constant"),
            (with("  - {name: a, type: int, impute: constant, fill_value: 2.5}"), "features[0].fill_value", "integer"),
            (with("  - {name: a, type: bool, impute: constant, fill_value: 1}"), "features[0].fill_value", "true or false"),
            (with("  - {name: a, type: int, non_finite: refuse}"), "features[0].non_finite", "float features only"),
            (with("  - {name: a, type: float, non_finite: as_null}"), "features[0].non_finite", "nullable: true"),
            (with("  - {name: a, type: float, nullable: true, non_finite: skip}"), "features[0].non_finite", "unknown policy"),
            // rules
            (format!("{}rules: [{{kind: max_rows, value: 3}}]", with("  - {name: a, type: int}")), "rules[0].kind", "unknown rule kind `max_rows`"),
            (format!("{}rules: [{{value: 3}}]", with("  - {name: a, type: int}")), "rules[0].kind", "is required"),
            (format!("{}rules: [{{kind: min_rows, value: 0}}]", with("  - {name: a, type: int}")), "rules[0].value", "integer >= 1"),
            (format!("{}rules: [{{kind: min_rows, value: 1.5}}]", with("  - {name: a, type: int}")), "rules[0].value", "integer >= 1"),
            (format!("{}rules: [{{kind: min_rows}}]", with("  - {name: a, type: int}")), "rules[0].value", "is required"),
            (format!("{}rules: [{{kind: min_class_rows, value: -2}}]", with("  - {name: a, type: int}")), "rules[0].value", "integer >= 1"),
            (format!("{}rules: [{{kind: max_null_fraction, column: a, value: 1.5}}]", with("  - {name: a, type: int}")), "rules[0].value", "between 0 and 1"),
            (format!("{}rules: [{{kind: max_null_fraction, column: a}}]", with("  - {name: a, type: int}")), "rules[0].value", "is required"),
            (format!("{}rules: [{{kind: max_null_fraction, value: 0.1}}]", with("  - {name: a, type: int}")), "rules[0].column", "is required"),
            (format!("{}rules: [{{kind: unique}}]", with("  - {name: a, type: int}")), "rules[0].column", "is required"),
            (format!("{}rules: [{{kind: unique, column: a, value: 1}}]", with("  - {name: a, type: int}")), "rules[0].value", "only kind and column"),
            (format!("{}rules: [{{kind: min_rows, column: a, value: 1}}]", with("  - {name: a, type: int}")), "rules[0].column", "whole dataset"),
            (format!("{}rules: [{{kind: min_class_rows, column: y, value: 1}}]", with("  - {name: a, type: int}")), "rules[0].column", "takes no column"),
            (format!("{}rules: [{{kind: min_rows, value: 1, max: 2}}]", with("  - {name: a, type: int}")), "rules[0].max", "unknown key"),
            (format!("{}rules: [{{kind: unique, column: a}}, {{kind: unique, column: a}}]", with("  - {name: a, type: int}")), "rules[1]", "duplicate rule"),
            (
                "model: m\ntask: regression\ntarget: {name: y, type: float}\nfeatures: [{name: a, type: int}]\nrules: [{kind: min_class_rows, value: 5}]".into(),
                "rules[0].kind",
                "classification tasks only",
            ),
            // promotion
            (format!("{}promotion: {{min_metrics: {{auc: 0.7}}}}", with("  - {name: a, type: int}")), "promotion.min_metrics.auc", "unknown metric `auc`"),
            (format!("{}promotion: {{min_metrics: {{rmse: 3}}}}", with("  - {name: a, type: int}")), "promotion.min_metrics.rmse", "regression metric"),
            (
                "model: m\ntask: regression\ntarget: {name: y, type: float}\nfeatures: [{name: a, type: int}]\npromotion: {max_regression: {accuracy: 0.1}}".into(),
                "promotion.max_regression.accuracy",
                "classification metric",
            ),
            (format!("{}promotion: {{max_regression: {{f1: -0.01}}}}", with("  - {name: a, type: int}")), "promotion.max_regression.f1", ">= 0"),
            (format!("{}promotion: {{min_metrics: {{accuracy: 1.5}}}}", with("  - {name: a, type: int}")), "promotion.min_metrics.accuracy", "between 0 and 1"),
            (format!("{}promotion: {{min_metrics: {{log_loss: -1}}}}", with("  - {name: a, type: int}")), "promotion.min_metrics.log_loss", ">= 0"),
            (format!("{}promotion: {{min_metrics: {{f1: high}}}}", with("  - {name: a, type: int}")), "promotion.min_metrics.f1", "must be a number"),
        ];
        for (yaml, field, piece) in &cases {
            let (got_field, reason) = invalid(yaml);
            assert_eq!(got_field, *field, "field for\n{yaml}\nreason: {reason}");
            assert!(reason.contains(piece), "reason {reason:?} lacks {piece:?} for\n{yaml}");
        }
    }

    #[test]
    fn every_line_known_refusal_ends_with_its_line() {
        let yaml = format!(
            "{}rules:\n  - {{kind: min_rows, value: 1}}\n  - {{kind: nope}}\n",
            with("  - {name: a, type: int}")
        );
        assert_eq!(invalid(&yaml), ("rules[1].kind".into(), "unknown rule kind `nope`; expected one of: min_rows, max_null_fraction, unique, min_class_rows (line 8)".into()));
        let yaml = format!("{}promotion:\n  max_regression:\n    roc_auc: -1\n", with("  - {name: a, type: int}"));
        assert_eq!(invalid(&yaml), ("promotion.max_regression.roc_auc".into(), "must be >= 0 (line 8)".into()));
    }

    #[test]
    fn accepted_model_names() {
        for name in ["a", "churn", "churn-v2", "c_1", format!("a{}", "b".repeat(62)).as_str()] {
            assert!(valid_model_name(name), "{name}");
        }
        for name in ["", "A", "_a", "-a", "1a", "a b", "ä", format!("a{}", "b".repeat(63)).as_str()] {
            assert!(!valid_model_name(name), "{name}");
        }
    }

    #[test]
    fn mode_fits_every_type_and_non_finite_defaults_to_refuse() {
        let c = parse_contract(&with(
            "  - {name: a, type: int, impute: mode}\n  - {name: b, type: float, impute: mode}\n  - {name: c, type: category, impute: mode}\n  - {name: d, type: float, nullable: true, non_finite: refuse}",
        ))
        .unwrap();
        assert!(c.features[..3].iter().all(|f| f.impute() == Imputation::Mode));
        assert!(c.features.iter().all(|f| f.non_finite() == NonFinitePolicy::Refuse));
    }

    // ------------------------------------------------------------ validation

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn contract(body: &str) -> pb::Contract {
        parse_contract(body).unwrap()
    }

    fn find<'a>(o: &'a ValidationOutcome, column: &str, rule: &str) -> &'a pb::Violation {
        o.violations
            .iter()
            .find(|v| v.column == column && v.rule == rule)
            .unwrap_or_else(|| panic!("no {column}/{rule} violation in {:#?}", o.violations))
    }

    fn examples(v: &pb::Violation) -> Vec<(u64, &str)> {
        v.examples.iter().map(|e| (e.row, e.value.as_str())).collect()
    }

    fn churn_batch(
        tenure: Vec<Option<i64>>,
        spend: Vec<Option<f64>>,
        plan: Vec<Option<&str>>,
        y: Vec<Option<bool>>,
    ) -> RecordBatch {
        let ids: Vec<i64> = (0..tenure.len() as i64).collect();
        batch(vec![
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("tenure", Arc::new(Int64Array::from(tenure))),
            ("monthly_spend", Arc::new(Float64Array::from(spend))),
            ("plan", Arc::new(StringArray::from(plan))),
            ("churned", Arc::new(BooleanArray::from(y))),
        ])
    }

    const CHURN: &str = "\
model: churn
task: binary_classification
target: {name: churned, type: bool}
features:
  - {name: tenure, type: int, min: 0, max: 600}
  - {name: monthly_spend, type: float, nullable: true}
  - {name: plan, type: category, categories: [basic, pro, enterprise]}
";

    #[test]
    fn clean_rows_pass() {
        let c = contract(&format!(
            "{CHURN}rules: [{{kind: min_rows, value: 4}}, {{kind: unique, column: id}}, {{kind: min_class_rows, value: 2}}]\n"
        ));
        let b = churn_batch(
            vec![Some(0), Some(600), Some(12), Some(3)],
            vec![Some(1.5), None, Some(0.0), Some(9.0)],
            vec![Some("basic"), Some("pro"), Some("enterprise"), Some("pro")],
            vec![Some(true), Some(false), Some(true), Some(false)],
        );
        let o = validate_batches(&c, &[b], 0);
        assert_eq!(o.violations, vec![]);
        assert!(o.passed);
        assert_eq!(o.rows_checked, 4);
    }

    #[test]
    fn bounds_nulls_and_categories_across_batches() {
        let c = contract(CHURN);
        let b1 = churn_batch(
            vec![Some(-3), Some(5), None],
            vec![Some(f64::NAN), Some(1.0), Some(2.0)],
            vec![Some("basic"), Some("platinum"), None],
            vec![Some(true), Some(false), Some(true)],
        );
        let b2 = churn_batch(
            vec![Some(601), Some(-1), Some(7)],
            vec![Some(f64::INFINITY), Some(1.0), Some(f64::NEG_INFINITY)],
            vec![Some("pro"), Some("gold"), Some("basic")],
            vec![None, Some(false), Some(true)],
        );
        let o = validate_batches(&c, &[b1, b2], 0);
        assert!(!o.passed);
        assert_eq!(o.rows_checked, 6);

        let below = find(&o, "tenure", "min");
        assert_eq!(below.count, 2);
        assert_eq!(examples(below), vec![(0, "-3"), (4, "-1")]);
        assert_eq!(below.message, "tenure: 2 values below min 0");
        let above = find(&o, "tenure", "max");
        assert_eq!((above.count, examples(above)), (1, vec![(3, "601")]));
        assert_eq!(above.message, "tenure: 1 value above max 600");
        let nulls = find(&o, "tenure", "nullable");
        assert_eq!((nulls.count, examples(nulls)), (1, vec![(2, "null")]));

        let nf = find(&o, "monthly_spend", "non_finite");
        assert_eq!(nf.count, 3);
        assert_eq!(examples(nf), vec![(0, "NaN"), (3, "inf"), (5, "-inf")]);

        // Nulls in plan are fine (categories only judge values); plan is
        // not nullable though.
        let cats = find(&o, "plan", "categories");
        assert_eq!(examples(cats), vec![(1, "platinum"), (4, "gold")]);
        assert!(
            cats.message.starts_with("plan: 2 values not in the categories [basic, pro, enterprise]"),
            "{}",
            cats.message
        );
        assert_eq!(find(&o, "plan", "nullable").count, 1);

        let y = find(&o, "churned", "nullable");
        assert_eq!((y.count, examples(y)), (1, vec![(3, "null")]));

        // Exactly these, in contract order.
        let keys: Vec<(&str, &str)> = o.violations.iter().map(|v| (v.column.as_str(), v.rule.as_str())).collect();
        assert_eq!(
            keys,
            vec![
                ("tenure", "nullable"),
                ("tenure", "min"),
                ("tenure", "max"),
                ("monthly_spend", "non_finite"),
                ("plan", "nullable"),
                ("plan", "categories"),
                ("churned", "nullable"),
            ]
        );
    }

    #[test]
    fn as_null_turns_non_finite_values_into_nulls() {
        let c = contract(&format!(
            "{}rules: [{{kind: max_null_fraction, column: s, value: 0.25}}]\n",
            with("  - {name: s, type: float, nullable: true, non_finite: as_null, max: 10}")
        ));
        let b = batch(vec![
            ("s", Arc::new(Float64Array::from(vec![Some(f64::NAN), None, Some(1.0), Some(f64::INFINITY)])) as ArrayRef),
            ("y", Arc::new(BooleanArray::from(vec![true, false, true, false]))),
        ]);
        let o = validate_batches(&c, &[b], 0);
        // No non_finite and no max violation for +inf; three of four rows null.
        let keys: Vec<&str> = o.violations.iter().map(|v| v.rule.as_str()).collect();
        assert_eq!(keys, vec!["max_null_fraction"]);
        let v = &o.violations[0];
        assert_eq!(v.count, 3);
        assert_eq!(examples(v), vec![(0, "NaN"), (1, "null"), (3, "inf")]);
        assert!(v.message.contains("0.7500 (3 of 4)"), "{}", v.message);
    }

    #[test]
    fn missing_columns_and_types() {
        let c = contract(&format!(
            "{CHURN}rules: [{{kind: unique, column: id}}, {{kind: max_null_fraction, column: tenure, value: 0.1}}]\n"
        ));
        let b = batch(vec![
            ("tenure", Arc::new(StringArray::from(vec!["1", "2"])) as ArrayRef),
            ("monthly_spend", Arc::new(Float64Array::from(vec![1.0, 2.0]))),
            ("churned", Arc::new(Int64Array::from(vec![0, 1]))),
        ]);
        let o = validate_batches(&c, &[b], 0);
        let t = find(&o, "tenure", "type");
        assert_eq!((t.count, t.examples.len()), (1, 0));
        assert!(t.message.starts_with("tenure: Arrow type Utf8 does not fit the feature's type int"), "{}", t.message);
        let m = find(&o, "plan", "missing_column");
        assert_eq!((m.count, m.examples.len()), (1, 0));
        assert_eq!(m.message, "plan: column is missing from the dataset");
        assert_eq!(find(&o, "churned", "type").count, 1);
        assert_eq!(find(&o, "id", "missing_column").count, 1);
        // The max_null_fraction rule reads the column whatever its type.
        assert_eq!(o.violations.len(), 4, "{:#?}", o.violations);
    }

    #[test]
    fn a_column_missing_twice_is_reported_once() {
        let c = contract(&format!("{}rules: [{{kind: unique, column: a}}]\n", with("  - {name: a, type: int}")));
        let b = batch(vec![("y", Arc::new(BooleanArray::from(vec![true])) as ArrayRef)]);
        let o = validate_batches(&c, &[b], 0);
        assert_eq!(o.violations.len(), 1);
        assert_eq!((o.violations[0].column.as_str(), o.violations[0].rule.as_str()), ("a", "missing_column"));
        // A column missing from a later batch only is missing too.
        let b1 = batch(vec![
            ("a", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("y", Arc::new(BooleanArray::from(vec![true]))),
        ]);
        let b2 = batch(vec![("y", Arc::new(BooleanArray::from(vec![true])) as ArrayRef)]);
        let o = validate_batches(&c, &[b1, b2], 0);
        assert_eq!(find(&o, "a", "missing_column").count, 1);
    }

    #[test]
    fn accepted_arrow_types() {
        let c = contract(&with(
            "  - {name: f32, type: float, max: 1}\n  - {name: fi, type: float}\n  - {name: dec, type: float, min: 0}\n  - {name: u8, type: int, max: 200}\n  - {name: ci, type: category, categories: ['1', '2']}\n  - {name: cb, type: category, categories: ['true']}\n  - {name: cl, type: category, categories: [a]}",
        ));
        let b = batch(vec![
            ("f32", Arc::new(Float32Array::from(vec![0.5, 1.5])) as ArrayRef),
            ("fi", Arc::new(Int32Array::from(vec![1, 2]))),
            ("dec", Arc::new(Decimal128Array::from(vec![-150, 200]).with_precision_and_scale(10, 2).unwrap())),
            ("u8", Arc::new(UInt8Array::from(vec![255, 3]))),
            ("ci", Arc::new(Int64Array::from(vec![1, 3]))),
            ("cb", Arc::new(BooleanArray::from(vec![true, false]))),
            ("cl", Arc::new(LargeStringArray::from(vec!["a", "b"]))),
            ("y", Arc::new(BooleanArray::from(vec![true, false]))),
        ]);
        let o = validate_batches(&c, &[b], 0);
        assert!(o.violations.iter().all(|v| v.rule != "type"), "{:#?}", o.violations);
        assert_eq!(examples(find(&o, "f32", "max")), vec![(1, "1.5")]);
        assert_eq!(examples(find(&o, "dec", "min")), vec![(0, "-1.50")]);
        assert_eq!(examples(find(&o, "u8", "max")), vec![(0, "255")]);
        assert_eq!(examples(find(&o, "ci", "categories")), vec![(1, "3")]);
        assert_eq!(examples(find(&o, "cb", "categories")), vec![(1, "false")]);
        assert_eq!(examples(find(&o, "cl", "categories")), vec![(1, "b")]);
        assert_eq!(o.violations.len(), 6);

        // Types a feature does not take.
        let c = contract(&with("  - {name: i, type: int}\n  - {name: b, type: bool}\n  - {name: c, type: category}"));
        let b = batch(vec![
            ("i", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef),
            ("b", Arc::new(Int64Array::from(vec![1]))),
            ("c", Arc::new(Float64Array::from(vec![1.0]))),
            ("y", Arc::new(StringArray::from(vec!["true"]))),
        ]);
        let o = validate_batches(&c, &[b], 0);
        let keys: Vec<(&str, &str)> = o.violations.iter().map(|v| (v.column.as_str(), v.rule.as_str())).collect();
        assert_eq!(keys, vec![("i", "type"), ("b", "type"), ("c", "type"), ("y", "type")]);
    }

    #[test]
    fn target_classes_and_non_finite_targets() {
        let c = contract(
            "model: m\ntask: multiclass_classification\ntarget: {name: y, type: category, classes: [a, b, c]}\nfeatures: [{name: x, type: int}]\n",
        );
        let b = batch(vec![
            ("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            ("y", Arc::new(StringArray::from(vec![Some("a"), Some("d"), None]))),
        ]);
        let o = validate_batches(&c, &[b], 0);
        let v = find(&o, "y", "categories");
        assert_eq!(examples(v), vec![(1, "d")]);
        assert_eq!(v.message, "y: 1 label not in the classes [a, b, c]");
        assert_eq!(examples(find(&o, "y", "nullable")), vec![(2, "null")]);

        let c =
            contract("model: m\ntask: regression\ntarget: {name: y, type: float}\nfeatures: [{name: x, type: int}]\n");
        let b = batch(vec![
            ("x", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("y", Arc::new(Float64Array::from(vec![f64::NAN, 2.0]))),
        ]);
        let o = validate_batches(&c, &[b], 0);
        assert_eq!(examples(find(&o, "y", "non_finite")), vec![(0, "NaN")]);
        assert_eq!(o.violations.len(), 1);
    }

    #[test]
    fn dataset_rules() {
        let c = contract(&format!(
            "{}rules:\n  - {{kind: min_rows, value: 10}}\n  - {{kind: unique, column: id}}\n  - {{kind: max_null_fraction, column: x, value: 0.2}}\n  - {{kind: min_class_rows, value: 3}}\n",
            with("  - {name: x, type: float, nullable: true}")
        ));
        let b1 = batch(vec![
            ("id", Arc::new(StringArray::from(vec![Some("a"), Some("b"), Some("a"), None])) as ArrayRef),
            ("x", Arc::new(Float64Array::from(vec![None, Some(1.0), Some(2.0), None]))),
            ("y", Arc::new(BooleanArray::from(vec![true, true, true, false]))),
        ]);
        let b2 = batch(vec![
            ("id", Arc::new(StringArray::from(vec![Some("a"), Some("b"), None])) as ArrayRef),
            ("x", Arc::new(Float64Array::from(vec![Some(1.0), Some(1.0), None]))),
            ("y", Arc::new(BooleanArray::from(vec![true, false, true]))),
        ]);
        let o = validate_batches(&c, &[b1, b2], 0);

        let rows = find(&o, "", "min_rows");
        assert_eq!((rows.count, rows.examples.len()), (1, 0));
        assert_eq!(rows.message, "the dataset has 7 rows, fewer than min_rows 10");

        // "a" at rows 0, 2, 4 and "b" at 1, 5: three repeats; nulls don't count.
        let dup = find(&o, "id", "unique");
        assert_eq!(dup.count, 3);
        assert_eq!(examples(dup), vec![(2, "a"), (4, "a"), (5, "b")]);
        assert_eq!(dup.message, "id: 3 duplicate values");

        let nulls = find(&o, "x", "max_null_fraction");
        assert_eq!(nulls.count, 3);
        assert_eq!(examples(nulls), vec![(0, "null"), (3, "null"), (6, "null")]);
        assert!(nulls.message.contains("0.4286 (3 of 7)"), "{}", nulls.message);

        let classes = find(&o, "y", "min_class_rows");
        assert_eq!(classes.count, 1);
        assert_eq!(classes.message, "y: 1 class with fewer than 3 rows: false (2)");
        assert_eq!(o.violations.len(), 4);
    }

    #[test]
    fn min_class_rows_counts_declared_classes_without_rows() {
        let c = contract(
            "model: m\ntask: multiclass_classification\ntarget: {name: y, type: int, classes: [1, 2, 3]}\nfeatures: [{name: x, type: int}]\nrules: [{kind: min_class_rows, value: 2}]\n",
        );
        let b = batch(vec![
            ("x", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            ("y", Arc::new(Int32Array::from(vec![2, 2, 1]))),
        ]);
        let o = validate_batches(&c, &[b], 0);
        let v = find(&o, "y", "min_class_rows");
        assert_eq!(v.count, 2);
        assert_eq!(v.message, "y: 2 classes with fewer than 2 rows: 1 (1), 3 (0)");
        assert_eq!(o.violations.len(), 1);
    }

    #[test]
    fn max_null_fraction_at_the_limit_passes() {
        let c = contract(&format!(
            "{}rules: [{{kind: max_null_fraction, column: x, value: 0.5}}]\n",
            with("  - {name: x, type: int, nullable: true}")
        ));
        let b = batch(vec![
            ("x", Arc::new(Int64Array::from(vec![None, Some(1)])) as ArrayRef),
            ("y", Arc::new(BooleanArray::from(vec![true, false]))),
        ]);
        assert!(validate_batches(&c, &[b], 0).passed);
    }

    #[test]
    fn example_limits() {
        let c = contract(&with("  - {name: x, type: int, min: 0}"));
        let b = batch(vec![
            ("x", Arc::new(Int64Array::from(vec![-1; 300])) as ArrayRef),
            ("y", Arc::new(BooleanArray::from(vec![true; 300]))),
        ]);
        let batches = [b];
        let count = |max| {
            let o = validate_batches(&c, &batches, max);
            let v = find(&o, "x", "min");
            assert_eq!(v.count, 300);
            v.examples.len()
        };
        assert_eq!(count(0), 5);
        assert_eq!(count(2), 2);
        assert_eq!(count(100), 100);
        assert_eq!(count(1000), 100);
    }

    #[test]
    fn no_rows() {
        let c = contract(&format!("{}rules: [{{kind: min_rows, value: 1}}]\n", with("  - {name: x, type: int}")));
        let o = validate_batches(&c, &[], 0);
        assert_eq!(o.rows_checked, 0);
        let keys: Vec<&str> = o.violations.iter().map(|v| v.rule.as_str()).collect();
        assert_eq!(keys, vec!["min_rows"]);
    }

    #[test]
    fn label_text_of_cells() {
        let bools = BooleanArray::from(vec![Some(true), Some(false), None]);
        assert_eq!(label_text(&bools, 0).as_deref(), Some("true"));
        assert_eq!(label_text(&bools, 1).as_deref(), Some("false"));
        assert_eq!(label_text(&bools, 2), None);
        assert_eq!(label_text(&bools, 3), None);
        assert_eq!(label_text(&Int64Array::from(vec![-42]), 0).as_deref(), Some("-42"));
        assert_eq!(label_text(&Int32Array::from(vec![7]), 0).as_deref(), Some("7"));
        assert_eq!(label_text(&UInt8Array::from(vec![255]), 0).as_deref(), Some("255"));
        assert_eq!(label_text(&StringArray::from(vec!["pro"]), 0).as_deref(), Some("pro"));
        assert_eq!(label_text(&LargeStringArray::from(vec!["x y"]), 0).as_deref(), Some("x y"));
        let floats = Float64Array::from(vec![2.5, 3.0, f64::NAN, f64::NEG_INFINITY]);
        let texts: Vec<String> = (0..4).map(|i| label_text(&floats, i).unwrap()).collect();
        assert_eq!(texts, vec!["2.5", "3", "NaN", "-inf"]);
        assert_eq!(label_text(&Float32Array::from(vec![0.1f32]), 0).as_deref(), Some("0.1"));
        let dec = Decimal128Array::from(vec![12345]).with_precision_and_scale(10, 3).unwrap();
        assert_eq!(label_text(&dec, 0).as_deref(), Some("12.345"));
    }

    #[test]
    fn yaml_paths_display() {
        let p = YamlPath::default().key("features").index(2).key("min");
        assert_eq!(p.to_string(), "features[2].min");
        assert_eq!(
            YamlPath::default().key("promotion").key("min_metrics").key("f1").to_string(),
            "promotion.min_metrics.f1"
        );
    }
}
