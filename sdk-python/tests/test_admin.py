"""Identity, tenants and keys, tenant isolation and idempotency."""

from __future__ import annotations

import uuid

import pytest
from conftest import Server
from graph import record_chain

import pulse


def test_connect_and_who_am_i_is_the_default_tenant(client: pulse.Client, admin: pulse.Client, server: Server) -> None:
    me = client.who_am_i()
    assert me["admin"] is False
    assert me["key_id"].startswith("key_")
    default = [t for t in admin.list_tenants() if t["name"] == "default"]
    assert len(default) == 1
    assert me["tenant_id"] == default[0]["id"]
    assert me["tenant_id"].startswith("ten_")
    assert client.endpoint == server.endpoint
    assert server.tenant_key not in repr(client)

    whoami_admin = admin.who_am_i()
    assert whoami_admin["admin"] is True
    assert whoami_admin["tenant_id"] == ""


def new_tenant(admin: pulse.Client, server: Server) -> tuple[dict, pulse.Client]:
    name = "t-" + uuid.uuid4().hex[:12]
    tenant = admin.create_tenant(name)
    assert tenant["name"] == name and tenant["id"].startswith("ten_")
    created = admin.create_api_key(tenant["id"], "pytest")
    assert created["key"]["tenant_id"] == tenant["id"]
    assert created["key"]["revoked_at"] is None
    assert created["secret"].startswith("pk_")
    return tenant, pulse.connect(server.endpoint, api_key=created["secret"])


def test_tenants_are_isolated(client: pulse.Client, admin: pulse.Client, server: Server, uid: str) -> None:
    g = record_chain(client, uid)
    tenant_b, b = new_tenant(admin, server)
    assert b.who_am_i()["tenant_id"] == tenant_b["id"]

    # Another tenant's node answers NOT_FOUND, never its data.
    with pytest.raises(pulse.NotFound):
        b.get_lineage_node(g.pred)
    with pytest.raises(pulse.NotFound):
        b.trace(g.pred)
    with pytest.raises(pulse.NotFound):
        b.impact(g.ds)
    assert not {n["id"] for n in b.iter_lineage_nodes()} & set(g.ids)
    assert b.export_lineage()["nodes"] == []

    # The same id is free in tenant B, and stays separate from A's node.
    b.record_lineage_node(g.ds, "datasource", {"name": "b-db", "connector": "mysql"})
    assert b.get_lineage_node(g.ds)["attributes"]["name"] == "b-db"
    assert client.get_lineage_node(g.ds)["attributes"]["name"] == "orders-db"
    # B cannot link to A's nodes either.
    b.record_lineage_node(f"ex_b_{uid}", "extraction")
    with pytest.raises(pulse.NotFound):
        b.record_lineage_edge(g.ex, f"ex_b_{uid}")


def test_revoked_key_is_unauthenticated(admin: pulse.Client, server: Server) -> None:
    tenant = admin.create_tenant("r-" + uuid.uuid4().hex[:12])
    created = admin.create_api_key(tenant["id"], "to-revoke")
    assert [k["id"] for k in admin.list_api_keys(tenant["id"])] == [created["key"]["id"]]
    revoked = admin.revoke_api_key(created["key"]["id"])
    assert revoked["id"] == created["key"]["id"] and revoked["revoked_at"]
    with pytest.raises(pulse.Unauthenticated):
        pulse.connect(server.endpoint, api_key=created["secret"]).who_am_i()


def test_same_idempotency_key_and_request_returns_the_first_answer(client: pulse.Client, uid: str) -> None:
    key = f"idem-{uid}"
    node = f"ds_idem_{uid}"
    # Several attributes: the retry must be recognised as the same request
    # however the map happens to be laid out on the wire.
    attrs = {"name": "orders-db", "connector": "postgres", "owner": "sales", "region": "eu", "tier": "gold"}
    first = client.record_lineage_node(node, "datasource", attrs, idempotency_key=key)
    assert first["created"] is True
    # A retry with the same key replays the first answer (`created` stays
    # True, the timestamp is the first one)...
    for _ in range(5):
        assert client.record_lineage_node(node, "datasource", dict(attrs), idempotency_key=key) == first
    # ...whereas a new call without the key runs again and merges.
    assert client.record_lineage_node(node, "datasource", attrs)["created"] is False

    batch_key = f"idem-batch-{uid}"
    nodes = [{"id": f"ex_idem_{uid}", "kind": "extraction"}]
    edges = [{"from_id": node, "to_id": f"ex_idem_{uid}"}]
    once = client.record_lineage(nodes, edges, idempotency_key=batch_key)
    assert once == {"nodes_created": 1, "nodes_updated": 0, "edges_created": 1}
    assert client.record_lineage(nodes, edges, idempotency_key=batch_key) == once


def test_same_idempotency_key_with_another_request_is_refused(client: pulse.Client, uid: str) -> None:
    key = f"idem2-{uid}"
    node = f"ds_idem2_{uid}"
    client.record_lineage_node(node, "datasource", {"name": "a", "connector": "postgres"}, idempotency_key=key)
    with pytest.raises(pulse.FailedPrecondition) as e:
        client.record_lineage_node(node, "datasource", {"name": "b", "connector": "postgres"}, idempotency_key=key)
    assert e.value.code == "FAILED_PRECONDITION"
    # The refused request changed nothing.
    assert client.get_lineage_node(node)["attributes"]["name"] == "a"


def test_create_tenant_is_idempotent_by_key(admin: pulse.Client) -> None:
    name = "i-" + uuid.uuid4().hex[:12]
    key = str(uuid.uuid4())
    first = admin.create_tenant(name, idempotency_key=key)
    assert admin.create_tenant(name, idempotency_key=key) == first
    with pytest.raises(pulse.AlreadyExists):
        admin.create_tenant(name)
