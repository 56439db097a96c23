"""The notebook-facing client: a thin, documented layer over ``pulse._native``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Union

from pulse import _native
from pulse._datasets import DatasetsMixin
from pulse._drift import DriftMixin
from pulse._inference import InferenceMixin
from pulse._pipelines import PipelinesMixin
from pulse._training import TrainingMixin, WorkersMixin

if TYPE_CHECKING:
    from pulse._native import (
        ApiKey,
        AttributeValue,
        EdgeSpec,
        Export,
        Impact,
        NewApiKey,
        Node,
        NodePage,
        NodeSpec,
        RecordBatchResult,
        RecordEdgeResult,
        RecordNodeResult,
        Tenant,
        Trace,
        WhoAmI,
    )

DEFAULT_ENDPOINT: str = _native.DEFAULT_ENDPOINT
"""Where :func:`connect` looks when neither an endpoint nor ``PULSE_ENDPOINT`` is given."""


def connect(endpoint: str | None = None, api_key: str | None = None) -> Client:
    """Connect to a Pulse server.

    Args:
        endpoint: The server's address, e.g. ``"http://localhost:50051"``
            (``"localhost:50051"`` works too). Defaults to the environment
            variable ``PULSE_ENDPOINT``, then ``"http://127.0.0.1:50051"``.
        api_key: A tenant API key (``pk_…``). Defaults to the environment
            variable ``PULSE_API_KEY``; pass ``""`` to send no key at all.

    Returns:
        A :class:`Client`. Calls on it block until the server answers; other
        Python threads keep running meanwhile, and Ctrl-C interrupts a call.

    Raises:
        Unavailable: Nothing answers at ``endpoint`` (is ``pulse up`` running?).

    Example::

        >>> import pulse
        >>> c = pulse.connect("http://localhost:50051", api_key="pk_...")
        >>> c.who_am_i()
        {'tenant_id': 'ten_...', 'key_id': 'key_...', 'admin': False}
    """
    return Client(endpoint, api_key)


class Client(DatasetsMixin, TrainingMixin, WorkersMixin, InferenceMixin, DriftMixin, PipelinesMixin):
    """A connection to a Pulse server, authenticated by one API key.

    Create one with :func:`pulse.connect` (or ``pulse.Client(endpoint, api_key)``,
    which is the same). A client is cheap to share between threads; after
    ``os.fork()`` the child reconnects by itself on its first call.

    Every method returns plain Python values (dicts and lists) except
    :meth:`trace`, which returns a :class:`pulse.Trace` that prints as a tree.
    Errors are raised as :class:`pulse.PulseError` subclasses.
    """

    __slots__ = ("_native",)

    def __init__(self, endpoint: str | None = None, api_key: str | None = None) -> None:
        if endpoint is None:
            endpoint = os.environ.get("PULSE_ENDPOINT") or DEFAULT_ENDPOINT
        if api_key is None:
            api_key = os.environ.get("PULSE_API_KEY")
        self._native = _native.Client.connect(endpoint, api_key)

    @property
    def endpoint(self) -> str:
        """The server's URL."""
        return self._native.endpoint

    def __repr__(self) -> str:
        return repr(self._native)

    # ---- identity and administration --------------------------------------

    def who_am_i(self) -> WhoAmI:
        """Which tenant and key this client's API key maps to.

        Returns:
            ``{"tenant_id": str, "key_id": str, "admin": bool}``; ``tenant_id``
            is empty for the admin key.
        """
        return self._native.who_am_i()

    def create_tenant(self, name: str, idempotency_key: str | None = None) -> Tenant:
        """Create a tenant. Needs the admin key.

        Args:
            name: 1 to 63 characters of a-z, 0-9 and '-', starting with a letter.
            idempotency_key: Makes a retry return the first answer instead of
                creating twice (a fresh key is used when omitted).

        Returns:
            ``{"id": "ten_…", "name": str, "created_at": str}``.
        """
        return self._native.create_tenant(name, idempotency_key)

    def list_tenants(self) -> list[Tenant]:
        """Every tenant (all pages). Needs the admin key."""
        tenants: list[Tenant] = []
        token = ""
        while True:
            page = self._native.list_tenants(token)
            tenants.extend(page["tenants"])
            token = page["next_page_token"]
            if not token:
                return tenants

    def create_api_key(self, tenant_id: str, name: str = "") -> NewApiKey:
        """Create an API key for a tenant. Needs the admin key.

        Returns:
            ``{"key": {...}, "secret": "pk_…"}``. The secret is shown this once
            (keys are stored hashed): pass it as ``api_key`` to :func:`connect`.
        """
        return self._native.create_api_key(tenant_id, name)

    def list_api_keys(self, tenant_id: str) -> list[ApiKey]:
        """A tenant's API keys, without their secrets. Needs the admin key."""
        return self._native.list_api_keys(tenant_id)

    def revoke_api_key(self, key_id: str) -> ApiKey:
        """Revoke an API key (``key_…``); calls with it fail from then on. Needs the admin key."""
        return self._native.revoke_api_key(key_id)

    # ---- lineage -----------------------------------------------------------

    def record_lineage_node(
        self,
        id: str,
        kind: str,
        attributes: Mapping[str, AttributeValue] | None = None,
        idempotency_key: str | None = None,
    ) -> RecordNodeResult:
        """Record a node of the lineage graph, or merge attributes into it.

        Args:
            id: 1 to 128 characters of ``A-Z a-z 0-9 _ . : @ -``, starting with
                a letter or digit; unique within your tenant.
            kind: ``"datasource"``, ``"extraction"``, ``"dataset_version"``,
                ``"training_run"``, ``"model_version"``, ``"deployment"``,
                ``"prediction"``, ``"feedback"``, ``"drift_report"`` or
                ``"pipeline_run"``.
            attributes: Text attributes; numbers and booleans are written as
                text. The tree printer knows these:

                - datasource: ``name``, ``connector`` (both required)
                - extraction: ``mode``, ``rows``
                - dataset_version: ``dataset``, ``version`` (required), ``rows``, ``sha256``
                - training_run: ``started_at``, ``finished_at`` (RFC 3339),
                  ``algorithm``, ``metric.<name>``
                - model_version: ``model``, ``version`` (required), ``sha256``
                - deployment: ``model``, ``version``, ``stage``
                - prediction: ``model``, ``version``, ``input_sha256``, ``output_sha256``
                - feedback: ``label``; drift_report: ``status``, ``score``;
                  pipeline_run: ``pipeline``, ``status``
            idempotency_key: Same key and same request → the first answer;
                same key, different request → :class:`FailedPrecondition`.

        Returns:
            ``{"node": {...}, "created": bool}`` (``created`` is False when the
            node existed and its attributes were merged).

        Example::

            >>> c.record_lineage_node("ds_orders", "datasource",
            ...                       {"name": "orders-db", "connector": "postgres"})
        """
        return self._native.record_lineage_node(id, kind, attributes, idempotency_key)

    def record_lineage_edge(
        self,
        from_id: str,
        to_id: str,
        relation: str = "",
        idempotency_key: str | None = None,
    ) -> RecordEdgeResult:
        """Record that ``to_id`` was made from ``from_id``.

        Both nodes must exist and their kinds must be a pair the lineage model
        allows (e.g. datasource → extraction). An edge that would close a
        cycle raises :class:`FailedPrecondition`; recording an existing edge
        again changes nothing.

        Args:
            relation: An optional verb, e.g. ``"extracted"``, ``"trained_on"``.

        Returns:
            ``{"edge": {...}, "created": bool}``.
        """
        return self._native.record_lineage_edge(from_id, to_id, relation, idempotency_key)

    def record_lineage(
        self,
        nodes: Iterable[Union[NodeSpec, Mapping[str, Any]]] = (),
        edges: Iterable[Union[EdgeSpec, Mapping[str, Any]]] = (),
        idempotency_key: str | None = None,
    ) -> RecordBatchResult:
        """Record many nodes and edges in one atomic call: all or none.

        Args:
            nodes: Dicts ``{"id": str, "kind": str, "attributes": {...}}``
                (``attributes`` optional).
            edges: Dicts ``{"from_id": str, "to_id": str, "relation": str}``
                (``relation`` optional). Edges may point at nodes of the same call.

        Returns:
            ``{"nodes_created": int, "nodes_updated": int, "edges_created": int}``.
        """
        return self._native.record_lineage(list(nodes), list(edges), idempotency_key)

    def get_lineage_node(self, id: str) -> Node:
        """One node: ``{"id", "kind", "attributes", "created_at"}``.

        Raises:
            NotFound: No such node in your tenant.
        """
        return self._native.get_lineage_node(id)

    def list_lineage_nodes(
        self, kind: str | None = None, page_token: str = "", page_size: int = 0
    ) -> NodePage:
        """One page of nodes, of one ``kind`` or of every kind.

        Args:
            page_token: ``next_page_token`` from the previous page.
            page_size: 0 means the server default (100); at most 1000.

        Returns:
            ``{"nodes": [...], "next_page_token": str}``; the token is empty on
            the last page. :meth:`iter_lineage_nodes` walks every page.
        """
        return self._native.list_lineage_nodes(kind, page_token, page_size)

    def iter_lineage_nodes(self, kind: str | None = None) -> Iterator[Node]:
        """Every node of ``kind`` (or of every kind), fetching pages as needed."""
        token = ""
        while True:
            page = self._native.list_lineage_nodes(kind, token, 0)
            yield from page["nodes"]
            token = page["next_page_token"]
            if not token:
                return

    def trace(
        self, id: str, direction: str = "upstream", max_depth: int = 0, max_nodes: int = 0
    ) -> Trace:
        """Where a node came from (``"upstream"``) or what was made from it (``"downstream"``).

        Args:
            max_depth: 0 means the server default (25); at most 100.
            max_nodes: 0 means the server default (1000); at most 10000.

        Returns:
            A :class:`pulse.Trace`: ``print()`` it to see the tree the
            ``pulse lineage`` command prints; ``.nodes``, ``.edges``,
            ``.truncated`` and ``.truncation_reason`` hold the data.

        Example::

            >>> print(c.trace(p["id"]))
            Prediction: pred_abc123
            ├── Model: fraud-detector@3 (sha256:def456…)
            │   ├── Training run: run_xyz789  started 2026-01-15T02:00:00Z  duration 4m32s
            │   │   └── Metrics: accuracy 0.9847, f1 0.9621
            │   └── Snapshot: orders@7  rows 1,247,832  sha256:e3b0c4…
            │       └── Datasource: transactions-db (postgres)
            ├── Input sha256:a9f2d4…
            └── Output sha256:7c8b1a…
        """
        return self._native.trace(id, direction, max_depth, max_nodes)

    def impact(self, id: str, max_depth: int = 0, max_nodes: int = 0) -> Impact:
        """Everything downstream of a node (typically a datasource or a dataset version).

        Returns:
            A dict: ``root`` (the node), ``affected`` (downstream nodes other
            than predictions and feedback, breadth-first), ``counts`` (every
            downstream node by kind), ``model_versions`` (``[{"model", "version"}]``),
            ``deployments``, ``truncated`` and ``truncation_reason``.
        """
        return self._native.impact(id, max_depth, max_nodes)

    def export_lineage(self, root_id: str = "", max_nodes: int = 0) -> Export:
        """Your tenant's whole lineage graph, or the part connected to ``root_id``.

        Args:
            max_nodes: 0 means no limit for the whole graph, 10000 with a root.

        Returns:
            ``{"nodes": [...], "edges": [...]}``.
        """
        return self._native.export_lineage(root_id, max_nodes)

