//! Reference substitution and condition expressions of pipeline steps.
//!
//! References name a value of a run's context:
//!
//! | reference                        | context value                    |
//! |----------------------------------|----------------------------------|
//! | `inputs.<name>[.<path>]`         | `ctx.inputs.<name>…`             |
//! | `trigger.name`                   | `ctx.trigger.name`               |
//! | `trigger.payload[.<path>]`       | `ctx.trigger.payload…`           |
//! | `trigger.metadata.<key>`         | `ctx.trigger.metadata["<key>"]`  |
//! | `steps.<id>.output[.<path>]`     | `ctx.steps.<id>.output…`         |
//! | `run.id`                         | `ctx.run.id`                     |
//!
//! Paths are dotted; a segment of digits indexes an array (`a.0.b`). In
//! strings of an action's request they are written `${…}` ([`substitute`],
//! `$${` is a literal `${`); in a condition ([`Expression`]) they are written
//! bare. The context is one JSON object:
//! `{"inputs":{…},"trigger":{"name":…,"payload":{…},"metadata":{…}},
//! "steps":{"<id>":{"output":{…}}},"run":{"id":…}}`.
//!
//! Pure: std and serde_json only.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

// ---------------------------------------------------------------- references

/// What a reference starts from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Root {
    Inputs,
    Trigger,
    Steps { step_id: String },
    Run,
}

/// One reference, e.g. `steps.train.output.metrics.f1`.
///
/// `path` is what follows the root: the input's name and below for
/// `inputs`; `["name"]`, `["payload", …]` or `["metadata", key]` for
/// `trigger` (a metadata key is one segment even when it holds dots);
/// `["output", …]` for `steps.<id>`; `["id"]` for `run`. `text` is the
/// reference as written, without `${}` and surrounding blanks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub root: Root,
    pub path: Vec<String>,
    pub text: String,
}

const REFERENCE_FORMS: &str =
    "inputs.<name>, trigger.name, trigger.payload.<path>, trigger.metadata.<key>, steps.<id>.output.<path> or run.id";

impl Reference {
    /// Parses a reference written without `${}`.
    pub fn parse(text: &str) -> Result<Reference, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err(format!("empty reference: use {REFERENCE_FORMS}"));
        }
        let segments: Vec<&str> = text.split('.').collect();
        if let Some(i) = segments.iter().position(|s| s.is_empty()) {
            let what = if i == 0 {
                "starts with '.'"
            } else if i == segments.len() - 1 {
                "ends with '.'"
            } else {
                "has an empty segment ('..')"
            };
            return Err(format!("reference '{text}' {what}"));
        }
        if let Some(s) = segments.iter().find(|s| s.chars().any(|c| c.is_whitespace() || matches!(c, '$' | '{' | '}')))
        {
            return Err(format!("reference '{text}': segment '{s}' holds a blank, '$', '{{' or '}}'"));
        }
        let owned = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let reference = |root, path| Ok(Reference { root, path, text: text.to_string() });
        match segments.as_slice() {
            ["inputs"] => Err(format!("reference '{text}' names no input: use inputs.<name>")),
            ["inputs", rest @ ..] => reference(Root::Inputs, owned(rest)),
            ["trigger", "name"] => reference(Root::Trigger, owned(&["name"])),
            ["trigger", "payload", ..] => reference(Root::Trigger, owned(&segments[1..])),
            ["trigger", "metadata"] => Err(format!("reference '{text}' names no key: use trigger.metadata.<key>")),
            ["trigger", "metadata", key @ ..] => reference(Root::Trigger, vec!["metadata".to_string(), key.join(".")]),
            ["trigger", ..] => Err(format!(
                "reference '{text}': a trigger has name, payload.<path> and metadata.<key> (e.g. trigger.payload.model)"
            )),
            ["steps", id, "output", rest @ ..] => {
                let mut path = vec!["output".to_string()];
                path.extend(owned(rest));
                reference(Root::Steps { step_id: id.to_string() }, path)
            }
            ["steps", id, ..] => {
                Err(format!("reference '{text}': a step's value is its output: use steps.{id}.output.<path>"))
            }
            ["steps"] => Err(format!("reference '{text}' names no step: use steps.<id>.output.<path>")),
            ["run", "id"] => reference(Root::Run, owned(&["id"])),
            ["run", ..] => Err(format!("reference '{text}': a run has only run.id")),
            [first, ..] => Err(format!("unknown reference '{text}': '{first}' is not one of {REFERENCE_FORMS}")),
            [] => unreachable!("split yields at least one segment"),
        }
    }

    /// The referenced value in `ctx`, if there is one (a JSON null that is
    /// there is found).
    pub fn lookup<'a>(&self, ctx: &'a Value) -> Option<&'a Value> {
        let mut v = match &self.root {
            Root::Inputs => ctx.get("inputs")?,
            Root::Trigger => ctx.get("trigger")?,
            Root::Steps { step_id } => ctx.get("steps")?.get(step_id)?,
            Root::Run => ctx.get("run")?,
        };
        for segment in &self.path {
            v = match v {
                Value::Object(m) => m.get(segment)?,
                Value::Array(a) => a.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(v)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A piece of a string holding `${…}` references.
#[derive(Debug)]
enum Piece<'a> {
    Text(std::borrow::Cow<'a, str>),
    Ref(Reference),
}

/// Splits a string into literal text and references. `$${` is a literal
/// `${`; a `$` followed by anything else is kept as it is.
fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut rest = s;
    let mut offset = 0;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            literal.push_str(&rest[..i]);
            literal.push_str("${");
            rest = escaped;
            offset += i + 3;
        } else if let Some(body) = after.strip_prefix('{') {
            literal.push_str(&rest[..i]);
            let Some(end) = body.find('}') else {
                let at = s[..offset + i].chars().count() + 1;
                return Err(format!("'${{' at position {at} of \"{}\" is not closed with '}}'", shorten(s)));
            };
            let reference = Reference::parse(&body[..end]).map_err(|e| format!("\"{}\": {e}", shorten(s)))?;
            if !literal.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut literal).into()));
            }
            out.push(Piece::Ref(reference));
            rest = &body[end + 1..];
            offset += i + 2 + end + 1;
        } else {
            literal.push_str(&rest[..=i]);
            rest = after;
            offset += i + 1;
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        out.push(Piece::Text(literal.into()));
    }
    Ok(out)
}

fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX { s.to_string() } else { format!("{}…", s.chars().take(MAX).collect::<String>()) }
}

/// Every `${…}` reference in every string of `value` (object keys are not
/// read): arrays in order, object members in the map's order. A malformed
/// reference or an unclosed `${` is an error naming it.
pub fn references_in(value: &Value) -> Result<Vec<Reference>, String> {
    fn walk(v: &Value, out: &mut Vec<Reference>) -> Result<(), String> {
        match v {
            Value::String(s) => {
                for p in pieces(s)? {
                    if let Piece::Ref(r) = p {
                        out.push(r);
                    }
                }
            }
            Value::Array(a) => a.iter().try_for_each(|v| walk(v, out))?,
            Value::Object(m) => m.values().try_for_each(|v| walk(v, out))?,
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(value, &mut out)?;
    Ok(out)
}

/// The text form of a value inside a longer string: strings unquoted,
/// everything else as compact JSON.
fn text_form(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn not_found(r: &Reference) -> String {
    format!("${{{}}}: not found", r.text)
}

/// `value` with every reference replaced from `ctx`. A string that is
/// exactly one reference becomes the referenced value, with its type;
/// references inside longer strings are replaced by their text form. A
/// reference `ctx` does not hold is an error: `${steps.train.output.x}: not
/// found`.
pub fn substitute(value: &Value, ctx: &Value) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => {
            if !s.contains('$') {
                return Ok(value.clone());
            }
            let mut ps = pieces(s)?;
            if let [Piece::Ref(r)] = ps.as_slice() {
                return r.lookup(ctx).cloned().ok_or_else(|| not_found(r));
            }
            let mut out = String::with_capacity(s.len());
            for p in ps.drain(..) {
                match p {
                    Piece::Text(t) => out.push_str(&t),
                    Piece::Ref(r) => out.push_str(&text_form(r.lookup(ctx).ok_or_else(|| not_found(&r))?)),
                }
            }
            Value::String(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| substitute(v, ctx)).collect::<Result<_, _>>()?),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| Ok((k.clone(), substitute(v, ctx)?))).collect::<Result<_, String>>()?)
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => value.clone(),
    })
}

// ---------------------------------------------------------------- expressions

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Literal(Value),
    Ref(Reference),
    Not(Box<Node>, usize),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    /// The operator's position (1-based) for errors.
    Cmp(CmpOp, Box<Node>, Box<Node>, usize),
}

/// A parsed condition, e.g. `steps.promote.output.promoted == true &&
/// inputs.force != true`.
///
/// Grammar (loosest first): `||`, `&&`, one comparison (`== != < <= > >=`,
/// not chained), `!`, then a literal (number, `"string"`, `'string'`,
/// `true`, `false`, `null`), a bare reference or a parenthesised
/// expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    text: String,
    root: Node,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Lit(Value),
    Ref(Reference),
    Cmp(CmpOp),
    And,
    Or,
    Not,
    Open,
    Close,
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Lit(Value::String(s)) => format!("the string \"{}\"", shorten(s)),
        Tok::Lit(v) => format!("'{v}'"),
        Tok::Ref(r) => format!("the reference '{}'", r.text),
        Tok::Cmp(op) => format!("'{}'", op.symbol()),
        Tok::And => "'&&'".into(),
        Tok::Or => "'||'".into(),
        Tok::Not => "'!'".into(),
        Tok::Open => "'('".into(),
        Tok::Close => "')'".into(),
        Tok::End => "the end".into(),
    }
}

/// Tokens with their 1-based character positions.
fn tokenize(text: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |at: usize, msg: String| Err(format!("at position {}: {msg}", at + 1));
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let next = chars.get(i + 1).copied();
        let tok = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => {
                i += 1;
                Tok::Open
            }
            ')' => {
                i += 1;
                Tok::Close
            }
            '&' if next == Some('&') => {
                i += 2;
                Tok::And
            }
            '|' if next == Some('|') => {
                i += 2;
                Tok::Or
            }
            '&' => return err(i, "expected '&&'".into()),
            '|' => return err(i, "expected '||'".into()),
            '=' if next == Some('=') => {
                i += 2;
                Tok::Cmp(CmpOp::Eq)
            }
            '=' => return err(i, "expected '==' (a single '=' is not an operator)".into()),
            '!' if next == Some('=') => {
                i += 2;
                Tok::Cmp(CmpOp::Ne)
            }
            '!' => {
                i += 1;
                Tok::Not
            }
            '<' | '>' => {
                let eq = next == Some('=');
                i += 1 + usize::from(eq);
                Tok::Cmp(match (c, eq) {
                    ('<', false) => CmpOp::Lt,
                    ('<', true) => CmpOp::Le,
                    ('>', false) => CmpOp::Gt,
                    _ => CmpOp::Ge,
                })
            }
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return err(start, format!("the string is not closed with {quote}")),
                        Some(&q) if q == quote => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            let escaped = match chars.get(i + 1) {
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                Some(&e @ ('\\' | '"' | '\'')) => e,
                                Some(e) => {
                                    return err(
                                        i,
                                        format!("unknown escape '\\{e}' (use \\\\, \\\", \\', \\n, \\t or \\r)"),
                                    );
                                }
                                None => return err(start, format!("the string is not closed with {quote}")),
                            };
                            s.push(escaped);
                            i += 2;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                Tok::Lit(Value::String(s))
            }
            '$' => {
                return err(i, "references in conditions are written without ${}, e.g. inputs.force == true".into());
            }
            c if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit() || n == '.')) => {
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '_')) {
                    // An exponent's sign.
                    i += 1;
                    if matches!(chars[i - 1], 'e' | 'E') && i < chars.len() && matches!(chars[i], '+' | '-') {
                        i += 1;
                    }
                }
                let literal: String = chars[start..i].iter().collect();
                Tok::Lit(Value::Number(
                    number(&literal)
                        .ok_or_else(|| format!("at position {}: '{literal}' is not a number", start + 1))?,
                ))
            }
            c if c.is_alphabetic() || c == '_' => {
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | '.')) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                match word.as_str() {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "null" => Tok::Lit(Value::Null),
                    "and" | "AND" => return err(start, "expected '&&' instead of 'and'".into()),
                    "or" | "OR" => return err(start, "expected '||' instead of 'or'".into()),
                    "not" | "NOT" => return err(start, "expected '!' instead of 'not'".into()),
                    _ => Tok::Ref(Reference::parse(&word).map_err(|e| format!("at position {}: {e}", start + 1))?),
                }
            }
            other => {
                return err(
                    i,
                    format!(
                        "unexpected '{other}': expected a reference, a literal, an operator (== != < <= > >= && || !) \
                         or a parenthesis"
                    ),
                );
            }
        };
        out.push((tok, start + 1));
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

/// A JSON number from a literal: integers stay integers.
fn number(s: &str) -> Option<serde_json::Number> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(i.into());
    }
    if let Ok(u) = s.parse::<u64>() {
        return Some(u.into());
    }
    // Rust accepts "inf", "nan", "1." and ".5"; JSON-like literals only.
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.starts_with(|c: char| c.is_ascii_digit()) || s.ends_with('.') || s.contains(".e") || s.contains(".E") {
        return None;
    }
    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
}

const A_VALUE: &str = "a value (a reference, number, string, true, false, null, '!' or '(')";

impl Parser {
    fn peek(&self) -> &(Tok, usize) {
        &self.toks[self.at]
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.at].clone();
        if self.at + 1 < self.toks.len() {
            self.at += 1;
        }
        t
    }

    fn expected<T>(&self, what: &str) -> Result<T, String> {
        let (tok, pos) = self.peek();
        Err(format!("at position {pos}: expected {what}, found {}", describe(tok)))
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut left = self.and()?;
        while self.peek().0 == Tok::Or {
            self.bump();
            left = Node::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut left = self.comparison()?;
        while self.peek().0 == Tok::And {
            self.bump();
            left = Node::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Node, String> {
        let left = self.unary()?;
        if let (Tok::Cmp(op), pos) = self.peek().clone() {
            self.bump();
            let right = self.unary()?;
            if let (Tok::Cmp(_), _) = self.peek() {
                return self.expected("'&&', '||', ')' or the end (comparisons do not chain; use &&)");
            }
            return Ok(Node::Cmp(op, Box::new(left), Box::new(right), pos));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, String> {
        if self.peek().0 == Tok::Not {
            let (_, pos) = self.bump();
            return Ok(Node::Not(Box::new(self.unary()?), pos));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, String> {
        match self.peek().0.clone() {
            Tok::Lit(v) => {
                self.bump();
                Ok(Node::Literal(v))
            }
            Tok::Ref(r) => {
                self.bump();
                Ok(Node::Ref(r))
            }
            Tok::Open => {
                let (_, open) = self.bump();
                let inner = self.or()?;
                if self.peek().0 != Tok::Close {
                    return self.expected(&format!("')' closing the '(' at position {open}"));
                }
                self.bump();
                Ok(inner)
            }
            _ => self.expected(A_VALUE),
        }
    }
}

/// "a number", "a string", … for errors.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// JSON equality with numbers compared by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_cmp(x, y) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn num_cmp(x: &serde_json::Number, y: &serde_json::Number) -> Option<Ordering> {
    // Exact for integers, by value otherwise.
    if let (Some(a), Some(b)) = (x.as_i64(), y.as_i64()) {
        return Some(a.cmp(&b));
    }
    if let (Some(a), Some(b)) = (x.as_u64(), y.as_u64()) {
        return Some(a.cmp(&b));
    }
    x.as_f64()?.partial_cmp(&y.as_f64()?)
}

/// How an operand is named in errors: the reference, or the literal.
fn operand(n: &Node) -> String {
    match n {
        Node::Ref(r) => r.text.clone(),
        Node::Literal(v) => v.to_string(),
        _ => "the expression".into(),
    }
}

impl Expression {
    /// Parses a condition; errors give the 1-based character position and
    /// what was expected there.
    pub fn parse(text: &str) -> Result<Expression, String> {
        if text.trim().is_empty() {
            return Err("the expression is empty: write a condition, e.g. inputs.force == true".into());
        }
        let mut p = Parser { toks: tokenize(text)?, at: 0 };
        let root = p.or()?;
        if p.peek().0 != Tok::End {
            let what =
                if p.peek().0 == Tok::Close { "the end (this ')' closes nothing)" } else { "'&&', '||' or the end" };
            return p.expected(what);
        }
        Ok(Expression { text: text.to_string(), root })
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every reference, in the order written.
    pub fn references(&self) -> Vec<Reference> {
        fn walk(n: &Node, out: &mut Vec<Reference>) {
            match n {
                Node::Literal(_) => {}
                Node::Ref(r) => out.push(r.clone()),
                Node::Not(a, _) => walk(a, out),
                Node::And(a, b) | Node::Or(a, b) | Node::Cmp(_, a, b, _) => {
                    walk(a, out);
                    walk(b, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }

    /// Evaluates against a run's context. A reference `ctx` does not hold
    /// is null; `&&`, `||` and `!` take only true/false; `<` and friends
    /// compare two numbers or two strings; the result must be true/false.
    pub fn eval(&self, ctx: &Value) -> Result<bool, String> {
        match eval(&self.root, ctx)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("expression is {}, not true/false", type_name(&other))),
        }
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn boolean(n: &Node, ctx: &Value, op: &str) -> Result<bool, String> {
    match eval(n, ctx)? {
        Value::Bool(b) => Ok(b),
        other => Err(format!("'{op}' needs true/false, but {} is {}", operand(n), type_name(&other))),
    }
}

fn eval(n: &Node, ctx: &Value) -> Result<Value, String> {
    Ok(match n {
        Node::Literal(v) => v.clone(),
        Node::Ref(r) => r.lookup(ctx).cloned().unwrap_or(Value::Null),
        Node::Not(a, _) => Value::Bool(!boolean(a, ctx, "!")?),
        Node::And(a, b) => Value::Bool(boolean(a, ctx, "&&")? && boolean(b, ctx, "&&")?),
        Node::Or(a, b) => Value::Bool(boolean(a, ctx, "||")? || boolean(b, ctx, "||")?),
        Node::Cmp(op, a, b, pos) => {
            let (x, y) = (eval(a, ctx)?, eval(b, ctx)?);
            let ordering = || -> Result<Ordering, String> {
                let o = match (&x, &y) {
                    (Value::Number(p), Value::Number(q)) => num_cmp(p, q),
                    (Value::String(p), Value::String(q)) => Some(p.cmp(q)),
                    _ => None,
                };
                o.ok_or_else(|| {
                    format!(
                        "at position {pos}: '{}' compares two numbers or two strings, but {} is {} and {} is {}",
                        op.symbol(),
                        operand(a),
                        type_name(&x),
                        operand(b),
                        type_name(&y)
                    )
                })
            };
            Value::Bool(match op {
                CmpOp::Eq => json_eq(&x, &y),
                CmpOp::Ne => !json_eq(&x, &y),
                CmpOp::Lt => ordering()? == Ordering::Less,
                CmpOp::Le => ordering()? != Ordering::Greater,
                CmpOp::Gt => ordering()? == Ordering::Greater,
                CmpOp::Ge => ordering()? != Ordering::Less,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> Value {
        json!({
            "inputs": {"model": "churn", "threshold": 0.8, "force": false, "tags": ["a", "b"], "n": 3,
                       "nested": {"list": [{"x": 1}, {"x": 2}]}},
            "trigger": {"name": "pulse.drift.detected.v1", "payload": {"model": "churn", "score": 0.4},
                        "metadata": {"entity_id": "drf_1", "a.b": "dotted"}},
            "steps": {"train": {"output": {"run_id": "trn_1", "metrics": {"f1": 0.91}, "ok": true,
                                           "none": null}}},
            "run": {"id": "run_1"}
        })
    }

    #[test]
    fn references_parse_into_root_and_path() {
        let r = Reference::parse("steps.train.output.metrics.f1").unwrap();
        assert_eq!(r.root, Root::Steps { step_id: "train".into() });
        assert_eq!(r.path, ["output", "metrics", "f1"]);
        assert_eq!(r.text, "steps.train.output.metrics.f1");
        let r = Reference::parse(" inputs.tags.1 ").unwrap();
        assert_eq!((r.root, r.path, r.text.as_str()), (Root::Inputs, vec!["tags".into(), "1".into()], "inputs.tags.1"));
        assert_eq!(Reference::parse("trigger.name").unwrap().path, ["name"]);
        assert_eq!(Reference::parse("trigger.payload").unwrap().path, ["payload"]);
        assert_eq!(Reference::parse("trigger.metadata.a.b").unwrap().path, ["metadata", "a.b"]);
        assert_eq!(Reference::parse("run.id").unwrap().root, Root::Run);
        assert_eq!(Reference::parse("steps.train.output").unwrap().path, ["output"]);
    }

    #[test]
    fn malformed_references_say_why() {
        let err = |t: &str| Reference::parse(t).unwrap_err();
        assert!(err("").contains("empty reference"));
        assert!(err("inputs").contains("names no input"));
        assert!(err("inputs..x").contains("empty segment"));
        assert!(err("inputs.x.").contains("ends with '.'"));
        assert!(err("trigger.kind").contains("trigger has name"));
        assert!(err("trigger.metadata").contains("names no key"));
        assert!(err("steps.train.metrics").contains("use steps.train.output"));
        assert!(err("steps").contains("names no step"));
        assert!(err("run.name").contains("only run.id"));
        assert!(err("input.x").contains("unknown reference 'input.x'"));
        assert!(err("inputs.a b").contains("blank"));
    }

    #[test]
    fn lookups_follow_objects_and_array_indexes() {
        let c = ctx();
        let get = |t: &str| Reference::parse(t).unwrap().lookup(&c).cloned();
        assert_eq!(get("inputs.tags.1"), Some(json!("b")));
        assert_eq!(get("inputs.nested.list.1.x"), Some(json!(2)));
        assert_eq!(get("inputs.nested.list.9.x"), None);
        assert_eq!(get("inputs.tags.x"), None);
        assert_eq!(get("inputs.model.deeper"), None);
        assert_eq!(get("trigger.metadata.a.b"), Some(json!("dotted")));
        assert_eq!(get("steps.train.output.none"), Some(Value::Null));
        assert_eq!(get("steps.eval.output"), None);
        assert_eq!(get("run.id"), Some(json!("run_1")));
        assert_eq!(Reference::parse("run.id").unwrap().lookup(&json!({})), None);
    }

    #[test]
    fn references_in_collects_every_string_in_order() {
        let v = json!([
            {"model": "${inputs.model}"},
            {"name": "v-${run.id}-${steps.train.output.run_id}"},
            [1, "${trigger.payload.score}", {"deep": "x ${trigger.metadata.entity_id}"}],
            {"plain": "no refs $ here, $${not.a.ref}", "n": 3}
        ]);
        let texts: Vec<String> = references_in(&v).unwrap().into_iter().map(|r| r.text).collect();
        assert_eq!(
            texts,
            [
                "inputs.model",
                "run.id",
                "steps.train.output.run_id",
                "trigger.payload.score",
                "trigger.metadata.entity_id"
            ]
        );
        assert!(references_in(&json!(42)).unwrap().is_empty());
    }

    #[test]
    fn references_in_rejects_unclosed_and_malformed() {
        let e = references_in(&json!({"a": ["ok", "x ${inputs.model"]})).unwrap_err();
        assert!(e.contains("'${' at position 3"), "{e}");
        assert!(e.contains("not closed"), "{e}");
        let e = references_in(&json!("${steps.train}")).unwrap_err();
        assert!(e.contains("steps.train.output"), "{e}");
        let e = references_in(&json!("${}")).unwrap_err();
        assert!(e.contains("empty reference"), "{e}");
    }

    #[test]
    fn a_whole_reference_keeps_its_type() {
        let c = ctx();
        assert_eq!(substitute(&json!("${inputs.threshold}"), &c).unwrap(), json!(0.8));
        assert_eq!(substitute(&json!("${inputs.force}"), &c).unwrap(), json!(false));
        assert_eq!(substitute(&json!("${inputs.tags}"), &c).unwrap(), json!(["a", "b"]));
        assert_eq!(substitute(&json!("${steps.train.output.metrics}"), &c).unwrap(), json!({"f1": 0.91}));
        assert_eq!(substitute(&json!("${steps.train.output.none}"), &c).unwrap(), Value::Null);
        assert_eq!(substitute(&json!(" ${ run.id } "), &c).unwrap(), json!(" run_1 "));
    }

    #[test]
    fn references_in_longer_strings_become_text() {
        let c = ctx();
        let v = json!({
            "request": {
                "model": "${inputs.model}",
                "note": "retrain ${inputs.model} at ${inputs.threshold}, n=${inputs.n}, force=${inputs.force}",
                "tags": "${inputs.tags}!",
                "keep": "$5 and $${literal}",
                "list": ["${trigger.payload.score}", 7, null]
            }
        });
        let out = substitute(&v, &c).unwrap();
        assert_eq!(
            out,
            json!({
                "request": {
                    "model": "churn",
                    "note": "retrain churn at 0.8, n=3, force=false",
                    "tags": "[\"a\",\"b\"]!",
                    "keep": "$5 and ${literal}",
                    "list": [0.4, 7, null]
                }
            })
        );
    }

    #[test]
    fn a_missing_reference_is_an_error_naming_it() {
        let c = ctx();
        assert_eq!(
            substitute(&json!({"a": "${steps.train.output.x}"}), &c).unwrap_err(),
            "${steps.train.output.x}: not found"
        );
        assert_eq!(substitute(&json!(["id: ${run.id} ${inputs.nope}"]), &c).unwrap_err(), "${inputs.nope}: not found");
        assert!(substitute(&json!("${inputs.x"), &c).unwrap_err().contains("not closed"));
    }

    fn eval(text: &str) -> Result<bool, String> {
        Expression::parse(text)?.eval(&ctx())
    }

    #[test]
    fn conditions_evaluate() {
        assert_eq!(eval("steps.train.output.ok == true && inputs.force != true"), Ok(true));
        assert_eq!(eval("steps.train.output.metrics.f1 >= 0.9"), Ok(true));
        assert_eq!(eval("steps.train.output.metrics.f1 > 0.95 || inputs.n == 3"), Ok(true));
        assert_eq!(eval("!(inputs.n < 3)"), Ok(true));
        assert_eq!(eval("!inputs.force"), Ok(true));
        assert_eq!(eval("inputs.model == 'churn' && trigger.payload.model == \"churn\""), Ok(true));
        assert_eq!(eval("inputs.model < \"d\""), Ok(true));
        assert_eq!(eval("inputs.n == 3.0"), Ok(true));
        assert_eq!(eval("inputs.n != 3"), Ok(false));
        assert_eq!(eval("inputs.n <= -1.5e1"), Ok(false));
        assert_eq!(eval("inputs.tags.0 == 'a'"), Ok(true));
        assert_eq!(eval("true"), Ok(true));
        assert_eq!(eval("(((false)))"), Ok(false));
        assert_eq!(eval("steps.train.output.none == null"), Ok(true));
    }

    #[test]
    fn precedence_is_or_then_and_then_comparison_then_not() {
        // true || (false && false)
        assert_eq!(eval("true || false && false"), Ok(true));
        // (true || false) && false
        assert_eq!(eval("(true || false) && false"), Ok(false));
        // !true == false  ->  (!true) == false
        assert_eq!(eval("!true == false"), Ok(true));
    }

    #[test]
    fn missing_references_are_null() {
        assert_eq!(eval("inputs.absent != true"), Ok(true));
        assert_eq!(eval("inputs.absent == null"), Ok(true));
        assert_eq!(eval("steps.later.output.x == null"), Ok(true));
        assert!(eval("!inputs.absent").unwrap_err().contains("inputs.absent is null"));
    }

    #[test]
    fn logic_short_circuits() {
        // The right side would fail (ordering a string with a number).
        assert_eq!(eval("false && inputs.model < 3"), Ok(false));
        assert_eq!(eval("true || inputs.model < 3"), Ok(true));
        assert!(eval("true && inputs.model < 3").is_err());
    }

    #[test]
    fn ordering_needs_two_numbers_or_two_strings() {
        let e = eval("inputs.model < 3").unwrap_err();
        assert!(e.contains("at position 14"), "{e}");
        assert!(e.contains("inputs.model is a string and 3 is a number"), "{e}");
        assert!(eval("inputs.absent > 1").unwrap_err().contains("null"));
        assert!(eval("inputs.tags >= inputs.tags").is_err());
        // Equality works across types: simply unequal.
        assert_eq!(eval("inputs.model == 3"), Ok(false));
        assert_eq!(eval("inputs.tags == inputs.tags"), Ok(true));
    }

    #[test]
    fn the_result_must_be_a_boolean() {
        assert_eq!(eval("inputs.n"), Err("expression is a number, not true/false".into()));
        assert_eq!(eval("'yes'"), Err("expression is a string, not true/false".into()));
        assert_eq!(eval("inputs.absent"), Err("expression is null, not true/false".into()));
        assert!(eval("inputs.n && true").unwrap_err().contains("'&&' needs true/false, but inputs.n is a number"));
        assert!(eval("false || 1").unwrap_err().contains("'||' needs true/false, but 1 is a number"));
    }

    #[test]
    fn parse_errors_give_the_position_and_what_was_expected() {
        let err = |t: &str| Expression::parse(t).unwrap_err();
        assert_eq!(
            err("inputs.n == "),
            "at position 13: expected a value (a reference, number, string, true, false, null, '!' or '('), found the end"
        );
        assert_eq!(err("inputs.n = 3"), "at position 10: expected '==' (a single '=' is not an operator)");
        assert_eq!(err("(inputs.n == 3"), "at position 15: expected ')' closing the '(' at position 1, found the end");
        assert_eq!(err("inputs.n == 3)"), "at position 14: expected the end (this ')' closes nothing), found ')'");
        assert!(err("inputs.n == 3 true").starts_with("at position 15: expected '&&', '||' or the end"));
        assert!(err("1 < 2 < 3").contains("comparisons do not chain"));
        assert!(err("true & false").starts_with("at position 6: expected '&&'"));
        assert!(err("inputs.a | b").starts_with("at position 10: expected '||'"));
        assert!(err("'abc").contains("not closed"));
        assert!(err("${inputs.force} == true").contains("without ${}"));
        assert!(err("inputs.n == 1.").contains("'1.' is not a number"));
        assert!(err("foo.bar == 1").starts_with("at position 1: unknown reference 'foo.bar'"));
        assert!(err("inputs.x and true").contains("instead of 'and'"));
        assert!(err("inputs.x # 1").contains("unexpected '#'"));
        assert!(err("  ").contains("empty"));
        assert!(err("steps.train == 1").contains("steps.train.output"));
    }

    #[test]
    fn literals_parse() {
        let lit = |t: &str| match Expression::parse(t).unwrap().root {
            Node::Literal(v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(lit("42"), json!(42));
        assert_eq!(lit("-7"), json!(-7));
        assert_eq!(lit("0.25"), json!(0.25));
        assert_eq!(lit("1e3"), json!(1000.0));
        assert_eq!(lit("2.5E-1"), json!(0.25));
        assert_eq!(lit("'it\\'s'"), json!("it's"));
        assert_eq!(lit("\"a\\\"b\\n\""), json!("a\"b\n"));
        assert_eq!(lit("'ünï'"), json!("ünï"));
        assert_eq!(lit("null"), Value::Null);
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let e = Expression::parse("'ünï' == ").unwrap_err();
        assert!(e.starts_with("at position 10:"), "{e}");
    }

    #[test]
    fn expressions_list_their_references() {
        let e = Expression::parse("steps.promote.output.promoted == true && (inputs.force != true || run.id == 'x')")
            .unwrap();
        let refs = e.references();
        assert_eq!(
            refs.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["steps.promote.output.promoted", "inputs.force", "run.id"]
        );
        assert_eq!(refs[0].root, Root::Steps { step_id: "promote".into() });
        assert_eq!(e.to_string(), e.text());
        // Step ids may hold '-' and digits.
        let e = Expression::parse("steps.train-2.output.ok == true").unwrap();
        assert_eq!(e.references()[0].root, Root::Steps { step_id: "train-2".into() });
    }
}
