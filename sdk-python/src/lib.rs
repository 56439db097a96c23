//! `pulse._native`: the Python SDK's native module, a thin PyO3 layer over
//! [`pulse_client::Client`] (the same client the `pulse` CLI uses).
//!
//! - One tokio runtime per process, created on first use and re-created in a
//!   forked child (a runtime's threads do not survive `fork`).
//! - Every call blocks the calling Python thread, never the interpreter: the
//!   GIL is released while the call runs, and Ctrl-C (SIGINT) interrupts it.
//! - Errors are typed Python exceptions rooted at `pulse.PulseError`, carrying
//!   the gRPC code name (`.code`, e.g. `"NOT_FOUND"`) and the message.
//! - Answers are plain Python values (dicts, lists, strings) or the `Trace`
//!   class, whose `str()` is the tree `pulse lineage <id>` prints.
//!
//! The pure-Python package `pulse` wraps this module; users import `pulse`.

mod datasets;
mod pipelines;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use pulse_client::pulse_proto::admin::v1 as admin;
use pulse_client::pulse_proto::lineage::v1 as lineage;
use pulse_client::pulse_proto::lineage::v1::{Direction, NodeKind};
use pulse_client::pulse_proto::prost_types::Timestamp;
use pulse_client::pulse_proto::tonic::Code;
use pulse_client::{ClientError, LineageTree, code_name, kind_name, parse_kind};
use pyo3::exceptions::{PyException, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString};
use tokio::runtime::Runtime;

// ---- exceptions ------------------------------------------------------------

pyo3::create_exception!(
    pulse,
    PulseError,
    PyException,
    "Base class of every Pulse error. `code` is the gRPC status name (e.g. \"NOT_FOUND\") and `message` the server's explanation."
);
pyo3::create_exception!(
    pulse,
    InvalidArgument,
    PulseError,
    "A request field is missing or malformed; the message names it."
);
pyo3::create_exception!(pulse, NotFound, PulseError, "The entity does not exist (or belongs to another tenant).");
pyo3::create_exception!(pulse, AlreadyExists, PulseError, "An entity with this id or name already exists.");
pyo3::create_exception!(
    pulse,
    PermissionDenied,
    PulseError,
    "The API key may not call this (e.g. a tenant key on an admin call)."
);
pyo3::create_exception!(pulse, Unauthenticated, PulseError, "The API key is missing, unknown or revoked.");
pyo3::create_exception!(
    pulse,
    FailedPrecondition,
    PulseError,
    "The request conflicts with the current state (e.g. an edge closing a cycle, an idempotency key reused for another request)."
);
pyo3::create_exception!(
    pulse,
    Aborted,
    PulseError,
    "The call raced another one (e.g. the same idempotency key still running); retry it."
);
pyo3::create_exception!(pulse, ResourceExhausted, PulseError, "A size or rate limit was hit; the message says which.");
pyo3::create_exception!(
    pulse,
    Unavailable,
    PulseError,
    "The server cannot be reached or a dependency is down; retry later."
);
pyo3::create_exception!(pulse, Unimplemented, PulseError, "The server does not implement this call yet.");
pyo3::create_exception!(pulse, Internal, PulseError, "A fault inside the server; its log has the details.");

/// The exception for `code`, with `str(e)` = `text` and the attributes
/// `code` and `message`.
fn pulse_error(py: Python<'_>, code: Code, message: String, text: String) -> PyErr {
    let err = match code {
        Code::InvalidArgument => InvalidArgument::new_err(text),
        Code::NotFound => NotFound::new_err(text),
        Code::AlreadyExists => AlreadyExists::new_err(text),
        Code::PermissionDenied => PermissionDenied::new_err(text),
        Code::Unauthenticated => Unauthenticated::new_err(text),
        Code::FailedPrecondition => FailedPrecondition::new_err(text),
        Code::Aborted => Aborted::new_err(text),
        Code::ResourceExhausted => ResourceExhausted::new_err(text),
        Code::Unavailable => Unavailable::new_err(text),
        Code::Unimplemented => Unimplemented::new_err(text),
        Code::Internal => Internal::new_err(text),
        _ => PulseError::new_err(text),
    };
    let value = err.value(py);
    if let Err(e) = value.setattr("code", code_name(code)).and_then(|()| value.setattr("message", message)) {
        return e;
    }
    err
}

fn client_error(py: Python<'_>, e: ClientError) -> PyErr {
    pulse_error(py, e.code(), e.message(), e.to_string())
}

/// An INVALID_ARGUMENT found before anything was sent; `message` starts with
/// the field, as the server's do.
fn invalid(py: Python<'_>, message: String) -> PyErr {
    pulse_error(py, Code::InvalidArgument, message.clone(), message)
}

// ---- the runtime -------------------------------------------------------------

/// The process's runtime and the pid that made it. After `fork` the child has
/// the parent's memory but none of its threads, so the child builds its own;
/// the parent's is leaked there (dropping it would wait for threads that do
/// not exist).
static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

fn runtime() -> PyResult<&'static Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, rt)) = *slot
        && owner == pid
    {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pulse-sdk")
        .build()
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the Pulse SDK's I/O runtime: {e}")))?;
    let rt: &'static Runtime = Box::leak(Box::new(rt));
    *slot = Some((pid, rt));
    Ok(rt)
}

/// How often a blocked call looks for Ctrl-C.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// Runs `fut` to completion on the runtime with the GIL released. Every
/// [`SIGNAL_POLL`] the calling thread briefly re-attaches to run Python's
/// signal handlers: if one raises (KeyboardInterrupt on Ctrl-C), the call is
/// dropped (cancelling the RPC) and that exception is returned.
fn block_on<T, Fut>(py: Python<'_>, fut: Fut) -> PyResult<T>
where
    Fut: Future<Output = pulse_client::Result<T>> + Send,
    T: Send,
{
    let rt = runtime()?;
    let outcome: Result<pulse_client::Result<T>, PyErr> = py.detach(|| {
        rt.block_on(async {
            tokio::pin!(fut);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + SIGNAL_POLL, SIGNAL_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    out = &mut fut => return Ok(out),
                    _ = tick.tick() => Python::attach(|py| py.check_signals())?,
                }
            }
        })
    });
    outcome?.map_err(|e| client_error(py, e))
}

// ---- proto → Python ------------------------------------------------------------

fn iso(ts: Option<&Timestamp>) -> Option<String> {
    let ts = ts?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp(ts.seconds, nanos)?;
    Some(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

fn node_dict<'py>(py: Python<'py>, node: &lineage::Node) -> PyResult<Bound<'py, PyDict>> {
    let lineage::Node { id, kind: _, attributes, created_at } = node;
    let d = PyDict::new(py);
    d.set_item("id", id)?;
    d.set_item("kind", kind_name(node.kind()))?;
    let attrs = PyDict::new(py);
    for (k, v) in attributes.iter().collect::<BTreeMap<_, _>>() {
        attrs.set_item(k, v)?;
    }
    d.set_item("attributes", attrs)?;
    d.set_item("created_at", iso(created_at.as_ref()))?;
    Ok(d)
}

fn edge_dict<'py>(py: Python<'py>, edge: &lineage::Edge) -> PyResult<Bound<'py, PyDict>> {
    let lineage::Edge { from_id, to_id, relation, created_at } = edge;
    let d = PyDict::new(py);
    d.set_item("from_id", from_id)?;
    d.set_item("to_id", to_id)?;
    d.set_item("relation", relation)?;
    d.set_item("created_at", iso(created_at.as_ref()))?;
    Ok(d)
}

fn node_list<'py>(py: Python<'py>, nodes: &[lineage::Node]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for n in nodes {
        list.append(node_dict(py, n)?)?;
    }
    Ok(list)
}

fn edge_list<'py>(py: Python<'py>, edges: &[lineage::Edge]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for e in edges {
        list.append(edge_dict(py, e)?)?;
    }
    Ok(list)
}

fn truncation(t: Option<&lineage::Truncation>) -> (bool, Option<String>) {
    match t {
        Some(t) if t.truncated => (true, Some(t.reason.clone())),
        _ => (false, None),
    }
}

fn tenant_dict<'py>(py: Python<'py>, tenant: &admin::Tenant) -> PyResult<Bound<'py, PyDict>> {
    let admin::Tenant { id, name, created_at } = tenant;
    let d = PyDict::new(py);
    d.set_item("id", id)?;
    d.set_item("name", name)?;
    d.set_item("created_at", iso(created_at.as_ref()))?;
    Ok(d)
}

fn api_key_dict<'py>(py: Python<'py>, key: &admin::ApiKey) -> PyResult<Bound<'py, PyDict>> {
    let admin::ApiKey { id, tenant_id, name, created_at, revoked_at } = key;
    let d = PyDict::new(py);
    d.set_item("id", id)?;
    d.set_item("tenant_id", tenant_id)?;
    d.set_item("name", name)?;
    d.set_item("created_at", iso(created_at.as_ref()))?;
    d.set_item("revoked_at", iso(revoked_at.as_ref()))?;
    Ok(d)
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Downstream => "downstream",
        // The server treats unspecified as upstream.
        Direction::Upstream | Direction::Unspecified => "upstream",
    }
}

// ---- Python → proto ---------------------------------------------------------------

fn kind_names() -> String {
    (1..=10).filter_map(|i| NodeKind::try_from(i).ok()).map(kind_name).collect::<Vec<_>>().join(", ")
}

fn kind_arg(py: Python<'_>, field: &str, kind: &str) -> PyResult<NodeKind> {
    parse_kind(kind)
        .ok_or_else(|| invalid(py, format!("{field}: unknown node kind '{kind}'; expected one of {}", kind_names())))
}

fn direction_arg(py: Python<'_>, direction: &str) -> PyResult<Direction> {
    let d = direction.trim().to_ascii_lowercase();
    match d.strip_prefix("direction_").unwrap_or(&d) {
        "upstream" | "up" => Ok(Direction::Upstream),
        "downstream" | "down" => Ok(Direction::Downstream),
        _ => {
            Err(invalid(py, format!("direction: '{direction}' is not a direction; use \"upstream\" or \"downstream\"")))
        }
    }
}

/// Attributes in key order. They are collected into whatever map type the
/// generated `Node` uses (`HashMap` today).
type Attributes = BTreeMap<String, String>;

/// A `dict[str, str]` of attributes. Numbers and booleans are accepted and
/// written as text (`True` → "true"), since attributes are strings on the wire.
fn attributes_arg(py: Python<'_>, field: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Attributes> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(Attributes::new());
    };
    let dict = value
        .cast::<PyDict>()
        .map_err(|_| invalid(py, format!("{field}: expected a dict of str to str, got {}", type_name(value))))?;
    let mut out = Attributes::new();
    for (k, v) in dict.iter() {
        let key = k
            .cast::<PyString>()
            .map_err(|_| invalid(py, format!("{field}: keys must be str, got {}", type_name(&k))))?
            .to_cow()?
            .into_owned();
        let text = if let Ok(s) = v.cast::<PyString>() {
            s.to_cow()?.into_owned()
        } else if let Ok(b) = v.cast::<PyBool>() {
            if b.is_true() { "true" } else { "false" }.to_string()
        } else if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>() {
            v.str()?.to_cow()?.into_owned()
        } else {
            return Err(invalid(
                py,
                format!("{field}['{key}']: expected str, int, float or bool, got {}", type_name(&v)),
            ));
        };
        out.insert(key, text);
    }
    Ok(out)
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// Reads `{"id", "kind", "attributes"}` (or `{"from_id", "to_id", "relation"}`)
/// from a dict, refusing unknown keys so that a typo is not silently dropped.
struct Fields<'a, 'py> {
    py: Python<'py>,
    field: String,
    dict: &'a Bound<'py, PyDict>,
}

impl<'a, 'py> Fields<'a, 'py> {
    fn new(py: Python<'py>, field: String, item: &'a Bound<'py, PyAny>, allowed: &[&str]) -> PyResult<Self> {
        let dict = item
            .cast::<PyDict>()
            .map_err(|_| invalid(py, format!("{field}: expected a dict, got {}", type_name(item))))?;
        for k in dict.keys() {
            let known = k.cast::<PyString>().ok().and_then(|s| s.to_cow().ok().map(|s| allowed.contains(&s.as_ref())));
            if known != Some(true) {
                return Err(invalid(
                    py,
                    format!("{field}: unknown key {}; expected {}", k.repr()?, allowed.join(", ")),
                ));
            }
        }
        Ok(Self { py, field, dict })
    }

    fn string(&self, key: &str, required: bool) -> PyResult<String> {
        match self.dict.get_item(key)? {
            Some(v) if !v.is_none() => Ok(v
                .cast::<PyString>()
                .map_err(|_| invalid(self.py, format!("{}.{key}: expected str, got {}", self.field, type_name(&v))))?
                .to_cow()?
                .into_owned()),
            _ if required => Err(invalid(self.py, format!("{}.{key}: required", self.field))),
            _ => Ok(String::new()),
        }
    }

    fn attributes(&self) -> PyResult<Attributes> {
        let value = self.dict.get_item("attributes")?;
        attributes_arg(self.py, &format!("{}.attributes", self.field), value.as_ref())
    }
}

fn node_arg(py: Python<'_>, index: usize, item: &Bound<'_, PyAny>) -> PyResult<lineage::Node> {
    let f = Fields::new(py, format!("nodes[{index}]"), item, &["id", "kind", "attributes"])?;
    let kind = kind_arg(py, &format!("nodes[{index}].kind"), &f.string("kind", true)?)?;
    Ok(lineage::Node {
        id: f.string("id", true)?,
        kind: kind as i32,
        attributes: f.attributes()?.into_iter().collect(),
        created_at: None,
    })
}

fn edge_arg(py: Python<'_>, index: usize, item: &Bound<'_, PyAny>) -> PyResult<lineage::Edge> {
    let f = Fields::new(py, format!("edges[{index}]"), item, &["from_id", "to_id", "relation"])?;
    Ok(lineage::Edge {
        from_id: f.string("from_id", true)?,
        to_id: f.string("to_id", true)?,
        relation: f.string("relation", false)?,
        created_at: None,
    })
}

fn list_arg<'py, T>(
    py: Python<'py>,
    field: &str,
    value: Option<&Bound<'py, PyAny>>,
    each: impl Fn(Python<'py>, usize, &Bound<'py, PyAny>) -> PyResult<T>,
) -> PyResult<Vec<T>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(Vec::new());
    };
    if value.is_instance_of::<PyString>() || value.is_instance_of::<PyDict>() {
        return Err(invalid(py, format!("{field}: expected a list of dicts, got {}", type_name(value))));
    }
    let iter = value
        .try_iter()
        .map_err(|_| invalid(py, format!("{field}: expected a list of dicts, got {}", type_name(value))))?;
    iter.enumerate().map(|(i, item)| each(py, i, &item?)).collect()
}

// ---- Trace -------------------------------------------------------------------------

/// The answer of `Client.trace`: the nodes and edges reachable from
/// `root_id`, and `str(trace)` — the tree `pulse lineage <id>` prints.
#[pyclass(frozen, module = "pulse._native", name = "Trace")]
struct Trace {
    response: lineage::TraceResponse,
    text: String,
}

#[pymethods]
impl Trace {
    /// The node the walk started from.
    #[getter]
    fn root_id(&self) -> &str {
        &self.response.root_id
    }

    /// "upstream" (where the root came from) or "downstream" (what was made from it).
    #[getter]
    fn direction(&self) -> &'static str {
        direction_name(self.response.direction())
    }

    /// The nodes seen, root first, then breadth-first: dicts with `id`,
    /// `kind`, `attributes` and `created_at` (ISO 8601).
    #[getter]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        node_list(py, &self.response.nodes)
    }

    /// The edges between those nodes: dicts with `from_id`, `to_id`,
    /// `relation` and `created_at`. Edges point downstream.
    #[getter]
    fn edges<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        edge_list(py, &self.response.edges)
    }

    /// True when a depth or node limit stopped the walk early.
    #[getter]
    fn truncated(&self) -> bool {
        truncation(self.response.truncation.as_ref()).0
    }

    /// Why the walk stopped early (and how to see more), or None.
    #[getter]
    fn truncation_reason(&self) -> Option<String> {
        truncation(self.response.truncation.as_ref()).1
    }

    /// How many edges away from the root the walk went.
    #[getter]
    fn depth_reached(&self) -> u32 {
        self.response.depth_reached
    }

    /// Everything above as one dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("root_id", self.root_id())?;
        d.set_item("direction", self.direction())?;
        d.set_item("nodes", self.nodes(py)?)?;
        d.set_item("edges", self.edges(py)?)?;
        d.set_item("truncated", self.truncated())?;
        d.set_item("truncation_reason", self.truncation_reason())?;
        d.set_item("depth_reached", self.depth_reached())?;
        Ok(d)
    }

    fn __len__(&self) -> usize {
        self.response.nodes.len()
    }

    fn __str__(&self) -> &str {
        &self.text
    }

    fn __repr__(&self) -> String {
        let r = &self.response;
        let cut = if self.truncated() { ", truncated" } else { "" };
        format!(
            "<Trace {} of '{}': {} nodes, {} edges{cut}>",
            self.direction(),
            r.root_id,
            r.nodes.len(),
            r.edges.len()
        )
    }

    /// IPython/Jupyter show the tree when a trace is a cell's value.
    fn _repr_pretty_(&self, p: &Bound<'_, PyAny>, cycle: bool) -> PyResult<()> {
        let _ = cycle; // a trace never contains itself
        p.call_method1("text", (self.text.trim_end_matches('\n'),))?;
        Ok(())
    }
}

// ---- Client ----------------------------------------------------------------------------

/// A connection to a Pulse server, authenticated by one API key.
#[pyclass(frozen, module = "pulse._native", name = "Client")]
struct PyClient {
    endpoint: String,
    api_key: Option<String>,
    /// The connection and the pid that opened it: a forked child reconnects
    /// (the connection's I/O task lives on the parent's runtime).
    inner: Mutex<(u32, pulse_client::Client)>,
}

impl PyClient {
    async fn client(&self) -> pulse_client::Result<pulse_client::Client> {
        let pid = std::process::id();
        {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.0 == pid {
                return Ok(inner.1.clone());
            }
        }
        let fresh = pulse_client::Client::connect(&self.endpoint, self.api_key.as_deref()).await?;
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = (pid, fresh.clone());
        Ok(fresh)
    }

    /// Runs one client call with the GIL released.
    fn run<T, F, Fut>(&self, py: Python<'_>, call: F) -> PyResult<T>
    where
        F: FnOnce(pulse_client::Client) -> Fut + Send,
        Fut: Future<Output = pulse_client::Result<T>> + Send,
        T: Send,
    {
        block_on(py, async move {
            let client = self.client().await?;
            call(client).await
        })
    }
}

#[pymethods]
impl PyClient {
    /// Connects to `endpoint` (e.g. "http://127.0.0.1:50051"); `api_key` is
    /// sent as `authorization: Bearer <key>` on every call.
    #[staticmethod]
    #[pyo3(signature = (endpoint, api_key=None))]
    fn connect(py: Python<'_>, endpoint: String, api_key: Option<String>) -> PyResult<Self> {
        let api_key = api_key.filter(|k| !k.is_empty());
        let client = block_on(py, pulse_client::Client::connect(&endpoint, api_key.as_deref()))?;
        Ok(Self { endpoint: client.endpoint().to_string(), api_key, inner: Mutex::new((std::process::id(), client)) })
    }

    /// The server's URL.
    #[getter]
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn __repr__(&self) -> String {
        let key = if self.api_key.is_some() { "with an API key" } else { "without an API key" };
        format!("<pulse Client {} {key}>", self.endpoint)
    }

    // ---- admin ----

    /// Which tenant and key this client's API key maps to.
    fn who_am_i<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let admin::WhoAmIResponse { tenant_id, key_id, admin } = self.run(py, |c| async move { c.who_am_i().await })?;
        let d = PyDict::new(py);
        d.set_item("tenant_id", tenant_id)?;
        d.set_item("key_id", key_id)?;
        d.set_item("admin", admin)?;
        Ok(d)
    }

    /// Creates a tenant (admin key).
    #[pyo3(signature = (name, idempotency_key=None))]
    fn create_tenant<'py>(
        &self,
        py: Python<'py>,
        name: String,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let tenant = self.run(py, |c| async move { c.create_tenant(&name, idempotency_key.as_deref()).await })?;
        tenant_dict(py, &tenant)
    }

    /// One page of tenants (admin key).
    #[pyo3(signature = (page_token=String::new(), page_size=0), text_signature = "($self, page_token='', page_size=0)")]
    fn list_tenants<'py>(&self, py: Python<'py>, page_token: String, page_size: u32) -> PyResult<Bound<'py, PyDict>> {
        let admin::ListTenantsResponse { tenants, page } =
            self.run(py, |c| async move { c.list_tenants(&page_token, page_size).await })?;
        let list = PyList::empty(py);
        for t in &tenants {
            list.append(tenant_dict(py, t)?)?;
        }
        let d = PyDict::new(py);
        d.set_item("tenants", list)?;
        d.set_item("next_page_token", page.map(|p| p.next_page_token).unwrap_or_default())?;
        Ok(d)
    }

    /// Creates an API key for a tenant (admin key). The secret is in this
    /// answer only.
    #[pyo3(signature = (tenant_id, name=String::new()), text_signature = "($self, tenant_id, name='')")]
    fn create_api_key<'py>(&self, py: Python<'py>, tenant_id: String, name: String) -> PyResult<Bound<'py, PyDict>> {
        let admin::CreateApiKeyResponse { key, secret } =
            self.run(py, |c| async move { c.create_api_key(&tenant_id, &name).await })?;
        let d = PyDict::new(py);
        d.set_item("key", key.as_ref().map(|k| api_key_dict(py, k)).transpose()?)?;
        d.set_item("secret", secret)?;
        Ok(d)
    }

    /// A tenant's API keys, without their secrets (admin key).
    fn list_api_keys<'py>(&self, py: Python<'py>, tenant_id: String) -> PyResult<Bound<'py, PyList>> {
        let admin::ListApiKeysResponse { keys, page: _ } =
            self.run(py, |c| async move { c.list_api_keys(&tenant_id).await })?;
        let list = PyList::empty(py);
        for k in &keys {
            list.append(api_key_dict(py, k)?)?;
        }
        Ok(list)
    }

    /// Revokes an API key (admin key).
    fn revoke_api_key<'py>(&self, py: Python<'py>, key_id: String) -> PyResult<Bound<'py, PyDict>> {
        let key = self.run(py, |c| async move { c.revoke_api_key(&key_id).await })?;
        api_key_dict(py, &key)
    }

    // ---- lineage ----

    /// Records a node, or merges attributes into the existing node.
    #[pyo3(signature = (id, kind, attributes=None, idempotency_key=None))]
    fn record_lineage_node<'py>(
        &self,
        py: Python<'py>,
        id: String,
        kind: String,
        attributes: Option<Bound<'py, PyAny>>,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let kind = kind_arg(py, "kind", &kind)?;
        let attributes = attributes_arg(py, "attributes", attributes.as_ref())?;
        let node =
            lineage::Node { id, kind: kind as i32, attributes: attributes.into_iter().collect(), created_at: None };
        let lineage::RecordNodeResponse { node, created } =
            self.run(py, |c| async move { c.record_node(node, idempotency_key.as_deref()).await })?;
        let d = PyDict::new(py);
        d.set_item("node", node.as_ref().map(|n| node_dict(py, n)).transpose()?)?;
        d.set_item("created", created)?;
        Ok(d)
    }

    /// Records an edge from an input to what was made from it.
    #[pyo3(
        signature = (from_id, to_id, relation=String::new(), idempotency_key=None),
        text_signature = "($self, from_id, to_id, relation='', idempotency_key=None)"
    )]
    fn record_lineage_edge<'py>(
        &self,
        py: Python<'py>,
        from_id: String,
        to_id: String,
        relation: String,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let edge = lineage::Edge { from_id, to_id, relation, created_at: None };
        let lineage::RecordEdgeResponse { edge, created } =
            self.run(py, |c| async move { c.record_edge(edge, idempotency_key.as_deref()).await })?;
        let d = PyDict::new(py);
        d.set_item("edge", edge.as_ref().map(|e| edge_dict(py, e)).transpose()?)?;
        d.set_item("created", created)?;
        Ok(d)
    }

    /// Records nodes and edges atomically: all or none.
    #[pyo3(signature = (nodes=None, edges=None, idempotency_key=None))]
    fn record_lineage<'py>(
        &self,
        py: Python<'py>,
        nodes: Option<Bound<'py, PyAny>>,
        edges: Option<Bound<'py, PyAny>>,
        idempotency_key: Option<String>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let nodes = list_arg(py, "nodes", nodes.as_ref(), node_arg)?;
        let edges = list_arg(py, "edges", edges.as_ref(), edge_arg)?;
        let lineage::RecordBatchResponse { nodes_created, nodes_updated, edges_created } =
            self.run(py, |c| async move { c.record_batch(nodes, edges, idempotency_key.as_deref()).await })?;
        let d = PyDict::new(py);
        d.set_item("nodes_created", nodes_created)?;
        d.set_item("nodes_updated", nodes_updated)?;
        d.set_item("edges_created", edges_created)?;
        Ok(d)
    }

    /// One node by id.
    fn get_lineage_node<'py>(&self, py: Python<'py>, id: String) -> PyResult<Bound<'py, PyDict>> {
        let node = self.run(py, |c| async move { c.get_node(&id).await })?;
        node_dict(py, &node)
    }

    /// One page of nodes, of one kind or all.
    #[pyo3(
        signature = (kind=None, page_token=String::new(), page_size=0),
        text_signature = "($self, kind=None, page_token='', page_size=0)"
    )]
    fn list_lineage_nodes<'py>(
        &self,
        py: Python<'py>,
        kind: Option<String>,
        page_token: String,
        page_size: u32,
    ) -> PyResult<Bound<'py, PyDict>> {
        let kind = match kind.as_deref().filter(|k| !k.is_empty()) {
            Some(k) => kind_arg(py, "kind", k)?,
            None => NodeKind::Unspecified,
        };
        let lineage::ListNodesResponse { nodes, page } =
            self.run(py, |c| async move { c.list_nodes(kind, &page_token, page_size).await })?;
        let d = PyDict::new(py);
        d.set_item("nodes", node_list(py, &nodes)?)?;
        d.set_item("next_page_token", page.map(|p| p.next_page_token).unwrap_or_default())?;
        Ok(d)
    }

    /// The subgraph reachable from a node, upstream or downstream.
    #[pyo3(
        signature = (id, direction="upstream".to_string(), max_depth=0, max_nodes=0),
        text_signature = "($self, id, direction='upstream', max_depth=0, max_nodes=0)"
    )]
    fn trace(&self, py: Python<'_>, id: String, direction: String, max_depth: u32, max_nodes: u32) -> PyResult<Trace> {
        let direction = direction_arg(py, &direction)?;
        let response = self.run(py, |c| async move { c.trace(&id, direction, max_depth, max_nodes).await })?;
        let text = LineageTree::new(&response).to_string();
        Ok(Trace { response, text })
    }

    /// Everything downstream of a node: affected runs, models, deployments.
    #[pyo3(signature = (id, max_depth=0, max_nodes=0))]
    fn impact<'py>(&self, py: Python<'py>, id: String, max_depth: u32, max_nodes: u32) -> PyResult<Bound<'py, PyDict>> {
        let lineage::ImpactResponse { root, affected, counts, model_versions, deployments, truncation: cut } =
            self.run(py, |c| async move { c.impact(&id, max_depth, max_nodes).await })?;
        let d = PyDict::new(py);
        d.set_item("root", root.as_ref().map(|n| node_dict(py, n)).transpose()?)?;
        d.set_item("affected", node_list(py, &affected)?)?;
        let counts_dict = PyDict::new(py);
        for (k, v) in counts.iter().collect::<BTreeMap<_, _>>() {
            counts_dict.set_item(k, v)?;
        }
        d.set_item("counts", counts_dict)?;
        let models = PyList::empty(py);
        for m in &model_versions {
            let entry = PyDict::new(py);
            entry.set_item("model", &m.model)?;
            entry.set_item("version", m.version)?;
            models.append(entry)?;
        }
        d.set_item("model_versions", models)?;
        d.set_item("deployments", node_list(py, &deployments)?)?;
        let (truncated, reason) = truncation(cut.as_ref());
        d.set_item("truncated", truncated)?;
        d.set_item("truncation_reason", reason)?;
        Ok(d)
    }

    /// One unary call (datasource, snapshot, trainer, inference, drift): the
    /// request and the answer are proto3 JSON (the Python layer builds and
    /// reads them).
    #[pyo3(signature = (method, request, idempotency_key=String::new()))]
    fn call_json(&self, py: Python<'_>, method: String, request: String, idempotency_key: String) -> PyResult<String> {
        // Policies, pipelines, runs and events: the request is checked
        // against its contract before anything is sent (`InvalidSpec`).
        if let Some(prepared) = pipelines::prepare(&method, &request) {
            let prepared = prepared.map_err(|e| pipelines::spec_error(py, e))?;
            return self.run(py, |c| pipelines::call(c, prepared, idempotency_key));
        }
        self.run(py, |c| datasets::call(c, method, request, idempotency_key))
    }

    /// Opens `WatchEvents` (a `WatchEventsRequest` as JSON): an iterator of
    /// events as JSON, from `after_message_id` or from now.
    fn watch_events(&self, py: Python<'_>, request_json: String) -> PyResult<pipelines::EventStream> {
        let prepared = match pipelines::prepare("watch_events", &request_json) {
            Some(p) => p.map_err(|e| pipelines::spec_error(py, e))?,
            None => unreachable!("watch_events is one of the pipeline calls"),
        };
        let stream = self.run(py, |c| pipelines::watch(c, prepared))?;
        Ok(pipelines::EventStream::new(stream))
    }

    /// A dataset version as one Arrow IPC stream (the server verified every
    /// chunk's SHA-256): `(dataset_id, version, version_sha256, ipc_bytes)`.
    #[pyo3(signature = (dataset_id, version=0, columns=Vec::new(), limit=0))]
    fn read_dataset_version<'py>(
        &self,
        py: Python<'py>,
        dataset_id: String,
        version: u64,
        columns: Vec<String>,
        limit: u64,
    ) -> PyResult<(String, u64, String, Bound<'py, pyo3::types::PyBytes>)> {
        let (r, sha, ipc) =
            self.run(py, |c| async move { c.read_dataset_version(&dataset_id, version, &columns, limit).await })?;
        Ok((r.dataset_id, r.version, sha, pyo3::types::PyBytes::new(py, &ipc)))
    }

    /// The prediction log of a window (request as JSON) as Arrow IPC bytes.
    fn export_predictions<'py>(
        &self,
        py: Python<'py>,
        request_json: String,
    ) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let ipc = self.run(py, |c| datasets::export_predictions(c, request_json))?;
        Ok(pyo3::types::PyBytes::new(py, &ipc))
    }

    /// Saves a checkpoint streamed from `path` or `data`; answers its JSON.
    #[pyo3(signature = (header_json, path=None, data=None, idempotency_key=String::new()))]
    fn save_checkpoint(
        &self,
        py: Python<'_>,
        header_json: String,
        path: Option<String>,
        data: Option<Vec<u8>>,
        idempotency_key: String,
    ) -> PyResult<String> {
        self.run(py, |c| datasets::save_checkpoint(c, header_json, path, data, idempotency_key))
    }

    /// Loads a checkpoint into `path` (or memory): `(checkpoint_json, bytes or None)`.
    #[pyo3(signature = (request_json, path=None))]
    fn load_checkpoint<'py>(
        &self,
        py: Python<'py>,
        request_json: String,
        path: Option<String>,
    ) -> PyResult<(String, Option<Bound<'py, pyo3::types::PyBytes>>)> {
        let (json, bytes) = self.run(py, |c| datasets::load_checkpoint(c, request_json, path))?;
        Ok((json, bytes.map(|b| pyo3::types::PyBytes::new(py, &b))))
    }

    /// The tenant's graph, or the part connected to `root_id`.
    #[pyo3(signature = (root_id=String::new(), max_nodes=0), text_signature = "($self, root_id='', max_nodes=0)")]
    fn export_lineage<'py>(&self, py: Python<'py>, root_id: String, max_nodes: u32) -> PyResult<Bound<'py, PyDict>> {
        let lineage::ExportChunk { nodes, edges } =
            self.run(py, |c| async move { c.export(&root_id, max_nodes).await })?;
        let d = PyDict::new(py);
        d.set_item("nodes", node_list(py, &nodes)?)?;
        d.set_item("edges", edge_list(py, &edges)?)?;
        Ok(d)
    }
}

/// The Pulse SDK's native module; import `pulse` instead.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_ENDPOINT", pulse_client::DEFAULT_ENDPOINT)?;
    m.add_class::<PyClient>()?;
    m.add_class::<Trace>()?;
    m.add_class::<pipelines::EventStream>()?;
    m.add("PulseError", py.get_type::<PulseError>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("AlreadyExists", py.get_type::<AlreadyExists>())?;
    m.add("PermissionDenied", py.get_type::<PermissionDenied>())?;
    m.add("Unauthenticated", py.get_type::<Unauthenticated>())?;
    m.add("FailedPrecondition", py.get_type::<FailedPrecondition>())?;
    m.add("Aborted", py.get_type::<Aborted>())?;
    m.add("ResourceExhausted", py.get_type::<ResourceExhausted>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("Unimplemented", py.get_type::<Unimplemented>())?;
    m.add("Internal", py.get_type::<Internal>())?;
    m.add("InvalidSpec", pipelines::invalid_spec_type(py)?)?;
    Ok(())
}
