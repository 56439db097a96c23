"""Typed exceptions carrying the gRPC code, for each way a call can fail."""

from __future__ import annotations

import socket

import pytest
from conftest import Server

import pulse
import pulse.exceptions

CODES = {
    "InvalidArgument": "INVALID_ARGUMENT",
    "NotFound": "NOT_FOUND",
    "AlreadyExists": "ALREADY_EXISTS",
    "PermissionDenied": "PERMISSION_DENIED",
    "Unauthenticated": "UNAUTHENTICATED",
    "FailedPrecondition": "FAILED_PRECONDITION",
    "Aborted": "ABORTED",
    "ResourceExhausted": "RESOURCE_EXHAUSTED",
    "Unavailable": "UNAVAILABLE",
    "Unimplemented": "UNIMPLEMENTED",
    "Internal": "INTERNAL",
}


def test_exception_tree() -> None:
    assert issubclass(pulse.PulseError, Exception)
    assert pulse.exceptions.__all__ == ["PulseError", *CODES]
    for name in CODES:
        cls = getattr(pulse, name)
        assert cls is getattr(pulse.exceptions, name) is getattr(pulse._native, name)
        assert issubclass(cls, pulse.PulseError) and cls is not pulse.PulseError
        assert cls.__module__ == "pulse"
        assert cls.__doc__
    assert set(CODES) | {"PulseError"} <= set(pulse.__all__)


def test_missing_api_key_is_unauthenticated(server: Server) -> None:
    c = pulse.connect(server.endpoint, api_key="")
    with pytest.raises(pulse.Unauthenticated) as e:
        c.who_am_i()
    assert e.value.code == "UNAUTHENTICATED"
    assert "API key" in e.value.message
    with pytest.raises(pulse.Unauthenticated):
        c.get_lineage_node("anything")


def test_api_key_defaults_to_the_environment(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULSE_ENDPOINT", server.endpoint)
    monkeypatch.setenv("PULSE_API_KEY", server.tenant_key)
    assert pulse.connect().who_am_i()["admin"] is False
    # An explicit empty key overrides the environment: no key is sent.
    with pytest.raises(pulse.Unauthenticated):
        pulse.connect(api_key="").who_am_i()


def test_bad_api_key_is_unauthenticated(server: Server) -> None:
    for key in ["not-a-key", "pk_01aaaaaaaaaaaaaaaaaaaaaaaa_bogussecret", server.tenant_key + "x"]:
        c = pulse.connect(server.endpoint, api_key=key)
        with pytest.raises(pulse.Unauthenticated) as e:
            c.who_am_i()
        assert e.value.code == "UNAUTHENTICATED"


def test_unknown_node_is_not_found(client: pulse.Client, uid: str) -> None:
    missing = f"nope_{uid}"
    for call in (
        lambda: client.get_lineage_node(missing),
        lambda: client.trace(missing),
        lambda: client.impact(missing),
    ):
        with pytest.raises(pulse.NotFound) as e:
            call()
        assert isinstance(e.value, pulse.PulseError)
        assert e.value.code == "NOT_FOUND"
        assert missing in e.value.message
        assert missing in str(e.value)


def test_bad_kind_is_invalid_argument_naming_the_field(client: pulse.Client, uid: str) -> None:
    with pytest.raises(pulse.InvalidArgument) as e:
        client.record_lineage_node(f"x_{uid}", "model", {"model": "m", "version": "1"})
    assert e.value.code == "INVALID_ARGUMENT"
    assert e.value.message.startswith("kind:")
    assert "model_version" in e.value.message  # says what would be valid

    with pytest.raises(pulse.InvalidArgument) as e:
        client.record_lineage(nodes=[{"id": f"a_{uid}", "kind": "datasource"}, {"id": f"b_{uid}", "kind": "modle"}])
    assert e.value.message.startswith("nodes[1].kind:")

    with pytest.raises(pulse.InvalidArgument) as e:
        client.list_lineage_nodes(kind="nodes")
    assert e.value.message.startswith("kind:")

    with pytest.raises(pulse.InvalidArgument) as e:
        client.trace(f"x_{uid}", direction="sideways")
    assert e.value.message.startswith("direction:")


def test_malformed_input_is_invalid_argument_naming_the_field(client: pulse.Client, uid: str) -> None:
    # Checked by the server.
    with pytest.raises(pulse.InvalidArgument) as e:
        client.record_lineage_node("bad id!", "datasource", {"name": "x", "connector": "postgres"})
    assert e.value.code == "INVALID_ARGUMENT"
    assert "id" in e.value.message and "bad id!" in e.value.message

    with pytest.raises(pulse.InvalidArgument) as e:
        client.get_lineage_node("a/b")
    assert "id" in e.value.message

    with pytest.raises(pulse.InvalidArgument) as e:
        client.record_lineage_node(f"mv_{uid}", "model_version", {"version": "1"})
    assert "attributes.model" in e.value.message

    with pytest.raises(pulse.InvalidArgument) as e:
        client.trace(f"x_{uid}", max_depth=1000)
    assert "max_depth" in e.value.message

    # Checked by the SDK before sending.
    with pytest.raises(pulse.InvalidArgument) as e:
        client.record_lineage_node(f"x_{uid}", "datasource", {"name": ["a"]})
    assert "attributes['name']" in e.value.message
    with pytest.raises(pulse.InvalidArgument) as e:
        client.record_lineage(nodes=[{"id": f"x_{uid}", "kind": "datasource", "attrs": {}}])
    assert e.value.message.startswith("nodes[0]: unknown key 'attrs'")
    with pytest.raises(pulse.InvalidArgument) as e:
        client.record_lineage(edges=[{"from_id": f"x_{uid}"}])
    assert e.value.message.startswith("edges[0].to_id: required")


def test_link_between_unrelated_kinds_is_refused(client: pulse.Client, uid: str) -> None:
    pred, ds = f"p_{uid}", f"d_{uid}"
    client.record_lineage_node(pred, "prediction")
    client.record_lineage_node(ds, "datasource", {"name": "n", "connector": "postgres"})
    with pytest.raises(pulse.InvalidArgument) as e:
        client.record_lineage_edge(pred, ds)
    assert "prediction" in e.value.message and "datasource" in e.value.message


def test_node_id_reused_with_another_kind_already_exists(client: pulse.Client, uid: str) -> None:
    node = f"n_{uid}"
    client.record_lineage_node(node, "prediction")
    with pytest.raises(pulse.AlreadyExists) as e:
        client.record_lineage_node(node, "feedback")
    assert e.value.code == "ALREADY_EXISTS"


def test_cycle_closing_edge_is_failed_precondition(client: pulse.Client, uid: str) -> None:
    # Dataset versions may derive from dataset versions (incremental
    # snapshots), so a → b → c is allowed and c → a would close a cycle.
    a, b, c, d = (f"dsv{i}_{uid}" for i in "abcd")
    client.record_lineage(
        nodes=[{"id": n, "kind": "dataset_version", "attributes": {"dataset": "d", "version": str(i)}} for i, n in enumerate([a, b, c, d])],
        edges=[{"from_id": a, "to_id": b}, {"from_id": b, "to_id": c}],
    )
    with pytest.raises(pulse.FailedPrecondition) as e:
        client.record_lineage_edge(c, a)
    assert e.value.code == "FAILED_PRECONDITION"
    assert "cycle" in e.value.message
    # The same pair of kinds is fine when it closes nothing.
    assert client.record_lineage_edge(c, d)["created"] is True
    # And the refused edge was not recorded.
    assert [n["id"] for n in client.trace(a).nodes] == [a]


def test_admin_key_cannot_call_tenant_services(admin: pulse.Client) -> None:
    with pytest.raises(pulse.PermissionDenied) as e:
        admin.get_lineage_node("anything")
    assert e.value.code == "PERMISSION_DENIED"


def test_tenant_key_cannot_call_admin_methods(client: pulse.Client) -> None:
    with pytest.raises(pulse.PermissionDenied):
        client.create_tenant("sneaky")
    with pytest.raises(pulse.PermissionDenied):
        client.list_tenants()


def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The port is closed now: nothing answers there.
    with pytest.raises(pulse.Unavailable) as e:
        pulse.connect(f"http://127.0.0.1:{port}", api_key="x")
    assert e.value.code == "UNAVAILABLE"
    assert "pulse up" in e.value.message
