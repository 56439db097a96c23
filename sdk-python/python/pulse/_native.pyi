"""Type stubs for ``pulse._native``, the Rust extension under the ``pulse`` package.

Import ``pulse`` rather than this module: ``pulse.Client`` wraps
``_native.Client`` with the same methods and fuller documentation.
"""

from typing import Any, Iterable, Mapping, Optional, TypedDict, Union, final, type_check_only

__all__ = [
    "__version__",
    "DEFAULT_ENDPOINT",
    "Client",
    "Trace",
    "EventStream",
    "PulseError",
    "InvalidArgument",
    "InvalidSpec",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "Unauthenticated",
    "FailedPrecondition",
    "Aborted",
    "ResourceExhausted",
    "Unavailable",
    "Unimplemented",
    "Internal",
]

__version__: str
DEFAULT_ENDPOINT: str

AttributeValue = Union[str, int, float, bool]  # typing only, not at runtime
"""Attribute values are text on the wire; numbers and booleans are converted
(``True`` → ``"true"``)."""

# ---- answers -------------------------------------------------------------------

@type_check_only
class Node(TypedDict):
    """A lineage node."""

    id: str
    kind: str
    """e.g. ``"model_version"``."""
    attributes: dict[str, str]
    created_at: Optional[str]
    """RFC 3339 / ISO 8601, UTC."""

@type_check_only
class Edge(TypedDict):
    """A lineage edge; it points downstream, from the input to what was made from it."""

    from_id: str
    to_id: str
    relation: str
    created_at: Optional[str]

@type_check_only
class RecordNodeResult(TypedDict):
    node: Node
    created: bool
    """False when the node existed and its attributes were merged."""

@type_check_only
class RecordEdgeResult(TypedDict):
    edge: Edge
    created: bool
    """False when the edge already existed."""

@type_check_only
class RecordBatchResult(TypedDict):
    nodes_created: int
    nodes_updated: int
    edges_created: int

@type_check_only
class NodePage(TypedDict):
    nodes: list[Node]
    next_page_token: str
    """Empty on the last page."""

@type_check_only
class ModelVersionRef(TypedDict):
    model: str
    version: int

@type_check_only
class Impact(TypedDict):
    root: Optional[Node]
    affected: list[Node]
    """Downstream nodes other than predictions and feedback, breadth-first."""
    counts: dict[str, int]
    """Every downstream node seen, by kind name."""
    model_versions: list[ModelVersionRef]
    deployments: list[Node]
    truncated: bool
    truncation_reason: Optional[str]

@type_check_only
class Export(TypedDict):
    nodes: list[Node]
    edges: list[Edge]

@type_check_only
class WhoAmI(TypedDict):
    tenant_id: str
    """Empty for the admin key."""
    key_id: str
    admin: bool

@type_check_only
class Tenant(TypedDict):
    id: str
    name: str
    created_at: Optional[str]

@type_check_only
class TenantPage(TypedDict):
    tenants: list[Tenant]
    next_page_token: str

@type_check_only
class ApiKey(TypedDict):
    id: str
    tenant_id: str
    name: str
    created_at: Optional[str]
    revoked_at: Optional[str]
    """None while the key is valid."""

@type_check_only
class NewApiKey(TypedDict):
    key: ApiKey
    secret: str
    """``pk_<key id>_<secret>``; shown once, send it as the API key."""

# ---- requests -------------------------------------------------------------------

@type_check_only
class _NodeSpecRequired(TypedDict):
    id: str
    kind: str

@type_check_only
class NodeSpec(_NodeSpecRequired, total=False):
    """A node to record: ``{"id", "kind", "attributes"}``."""

    attributes: Mapping[str, AttributeValue]

@type_check_only
class _EdgeSpecRequired(TypedDict):
    from_id: str
    to_id: str

@type_check_only
class EdgeSpec(_EdgeSpecRequired, total=False):
    """An edge to record: ``{"from_id", "to_id", "relation"}``."""

    relation: str

# ---- classes ------------------------------------------------------------------------

@final
class Trace:
    """The answer of :meth:`Client.trace`.

    ``str(trace)`` (or ``print(trace)``) is the lineage tree exactly as
    ``pulse lineage <id>`` prints it.
    """

    @property
    def root_id(self) -> str:
        """The node the walk started from."""
    @property
    def direction(self) -> str:
        """``"upstream"`` or ``"downstream"``."""
    @property
    def nodes(self) -> list[Node]:
        """The nodes seen: the root first, then breadth-first."""
    @property
    def edges(self) -> list[Edge]:
        """The edges between those nodes."""
    @property
    def truncated(self) -> bool:
        """True when a depth or node limit stopped the walk early."""
    @property
    def truncation_reason(self) -> Optional[str]:
        """Why the walk stopped early and how to see more, or None."""
    @property
    def depth_reached(self) -> int:
        """How many edges away from the root the walk went."""
    def to_dict(self) -> dict[str, object]:
        """All of the above as one dict."""
    def __len__(self) -> int:
        """The number of nodes."""
    def __str__(self) -> str:
        """The tree, one line per node, ending with a newline."""
    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        """IPython/Jupyter display: the tree."""

@final
class EventStream:
    """Events of ``WatchEvents`` as they arrive, one JSON text each.

    ``next()`` blocks with the GIL released (Ctrl-C interrupts the wait and
    leaves the stream usable); the end of the stream or :meth:`close` stops
    the iteration.
    """

    def __iter__(self) -> EventStream: ...
    def __next__(self) -> str: ...
    def close(self) -> None:
        """Ends the call, also while another thread waits in ``next()``."""
    @property
    def closed(self) -> bool:
        """True once the stream ended or was closed."""

@final
class Client:
    """A connection to a Pulse server, authenticated by one API key.

    Every call blocks the calling thread (with the GIL released) until the
    server answers, and raises a :class:`PulseError` subclass on failure.
    Ctrl-C interrupts a call.
    """

    @staticmethod
    def connect(endpoint: str, api_key: Optional[str] = None) -> Client:
        """Connects to ``endpoint`` (``"http://host:port"`` or ``"host:port"``).

        ``api_key`` is sent as ``authorization: Bearer <key>``; None or ``""``
        sends none. Raises :class:`Unavailable` when nothing answers.
        """
    @property
    def endpoint(self) -> str:
        """The server's URL."""

    # admin
    def who_am_i(self) -> WhoAmI:
        """Which tenant and key this client's API key maps to."""
    def create_tenant(self, name: str, idempotency_key: Optional[str] = None) -> Tenant:
        """Creates a tenant (admin key)."""
    def list_tenants(self, page_token: str = "", page_size: int = 0) -> TenantPage:
        """One page of tenants (admin key)."""
    def create_api_key(self, tenant_id: str, name: str = "") -> NewApiKey:
        """Creates an API key; the secret is in this answer only (admin key)."""
    def list_api_keys(self, tenant_id: str) -> list[ApiKey]:
        """A tenant's keys, without secrets (admin key)."""
    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revokes an API key (admin key)."""

    # lineage
    def record_lineage_node(
        self,
        id: str,
        kind: str,
        attributes: Optional[Mapping[str, AttributeValue]] = None,
        idempotency_key: Optional[str] = None,
    ) -> RecordNodeResult:
        """Records a node, or merges attributes into the existing node.

        An unknown ``kind`` raises :class:`InvalidArgument` before anything is sent.
        """
    def record_lineage_edge(
        self,
        from_id: str,
        to_id: str,
        relation: str = "",
        idempotency_key: Optional[str] = None,
    ) -> RecordEdgeResult:
        """Records an edge; one that would close a cycle raises :class:`FailedPrecondition`."""
    def record_lineage(
        self,
        nodes: Optional[Iterable[Union[NodeSpec, Mapping[str, Any]]]] = None,
        edges: Optional[Iterable[Union[EdgeSpec, Mapping[str, Any]]]] = None,
        idempotency_key: Optional[str] = None,
    ) -> RecordBatchResult:
        """Records nodes and edges atomically: all or none."""
    def get_lineage_node(self, id: str) -> Node:
        """One node by id; :class:`NotFound` when it is not in your tenant."""
    def list_lineage_nodes(
        self, kind: Optional[str] = None, page_token: str = "", page_size: int = 0
    ) -> NodePage:
        """One page of nodes, of one kind or all."""
    def trace(
        self, id: str, direction: str = "upstream", max_depth: int = 0, max_nodes: int = 0
    ) -> Trace:
        """The subgraph reachable from a node, upstream or downstream."""
    def impact(self, id: str, max_depth: int = 0, max_nodes: int = 0) -> Impact:
        """Everything downstream of a node: affected runs, models, deployments."""
    def export_lineage(self, root_id: str = "", max_nodes: int = 0) -> Export:
        """The tenant's graph, or the part connected to ``root_id``."""
    def call_json(self, method: str, request: str, idempotency_key: str = "") -> str:
        """One unary call by its SDK name (e.g. ``"check_drift"``), request and answer as proto3 JSON.

        The policy, pipeline, run and event calls (``set_retraining_policy``,
        ``create_pipeline``, ``start_pipeline_run``, ``get_run_timeline``,
        ``publish_events``, ``replay_events``, …) check the request against
        the contract first and raise :class:`InvalidSpec` naming the field
        (unknown keys, enum values, durations); they read enum values in any
        case with or without prefix and durations such as ``"24h"``, and
        answer enum values short and upper case (``"SUCCEEDED"``).
        """
    def watch_events(self, request_json: str) -> EventStream:
        """Opens ``WatchEvents`` (a ``WatchEventsRequest`` as JSON); raises
        at once when the server refuses it."""
    def read_dataset_version(
        self, dataset_id: str, version: int = 0, columns: list[str] = ..., limit: int = 0
    ) -> tuple[str, int, str, bytes]:
        """``(dataset_id, version, version_sha256, arrow_ipc_stream_bytes)``."""
    def save_checkpoint(
        self, header_json: str, path: str | None = None, data: bytes | None = None, idempotency_key: str = ""
    ) -> str:
        """Streams a checkpoint from ``path`` or ``data``; the ``Checkpoint`` as JSON."""
    def export_predictions(self, request_json: str) -> bytes: ...
    def load_checkpoint(self, request_json: str, path: str | None = None) -> tuple[str, bytes | None]:
        """``(checkpoint_json, bytes)``, or ``(checkpoint_json, None)`` when written to ``path``."""

# ---- exceptions ---------------------------------------------------------------------

class PulseError(Exception):
    """Base class of every Pulse error."""

    code: str
    """The gRPC status name, e.g. ``"NOT_FOUND"``."""
    message: str
    """The server's explanation (what went wrong and what to do)."""

class InvalidArgument(PulseError):
    """A request field is missing or malformed; the message names it."""

class InvalidSpec(InvalidArgument, ValueError):
    """A policy, pipeline, step, trigger or event given to the SDK is
    malformed (an unknown key, enum value or duration); raised before
    anything is sent. The message starts with the field's path, e.g.
    ``steps[1].action: unknown key 'methd'; did you mean 'method'? ...``."""

class NotFound(PulseError):
    """The entity does not exist (or belongs to another tenant)."""

class AlreadyExists(PulseError):
    """An entity with this id or name already exists."""

class PermissionDenied(PulseError):
    """The API key may not call this (e.g. a tenant key on an admin call)."""

class Unauthenticated(PulseError):
    """The API key is missing, unknown or revoked."""

class FailedPrecondition(PulseError):
    """The request conflicts with the current state (a cycle, a reused idempotency key)."""

class Aborted(PulseError):
    """The call raced another one; retry it."""

class ResourceExhausted(PulseError):
    """A size or rate limit was hit; the message says which."""

class Unavailable(PulseError):
    """The server cannot be reached or a dependency is down; retry later."""

class Unimplemented(PulseError):
    """The server does not implement this call yet."""

class Internal(PulseError):
    """A fault inside the server; its log has the details."""
