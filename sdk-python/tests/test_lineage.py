"""Lineage through the SDK against a real `pulse up`."""

from __future__ import annotations

import datetime

import pytest
from graph import record_chain

import pulse


def edge_set(edges: list[dict]) -> set[tuple[str, str, str]]:
    return {(e["from_id"], e["to_id"], e["relation"]) for e in edges}


def test_trace_prints_the_same_tree_as_the_cli(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    trace = client.trace(g.pred)
    assert isinstance(trace, pulse.Trace)
    expected = (
        f"Prediction: {g.pred}\n"
        "├── Model: churn@3 (sha256:def456…)\n"
        f"│   └── Training run: {g.run}  started 2026-01-15T02:00:00Z  duration 4m32s\n"
        "│       ├── Metrics: accuracy 0.9847, f1 0.9621\n"
        "│       └── Snapshot: orders@7  rows 1,247,832  sha256:e3b0c4…\n"
        f"│           └── Extraction: {g.ex}  full  rows 1,247,832\n"
        "│               └── Datasource: orders-db (postgres)\n"
        "├── Input sha256:a9f2d4…\n"
        "└── Output sha256:7c8b1a…\n"
    )
    assert str(trace) == expected


def test_downstream_tree(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    trace = client.trace(g.ds, direction="downstream")
    expected = (
        "Datasource: orders-db (postgres)\n"
        f"└── Extraction: {g.ex}  full  rows 1,247,832\n"
        "    └── Snapshot: orders@7  rows 1,247,832  sha256:e3b0c4…\n"
        f"        └── Training run: {g.run}  started 2026-01-15T02:00:00Z  duration 4m32s\n"
        "            ├── Metrics: accuracy 0.9847, f1 0.9621\n"
        "            └── Model: churn@3 (sha256:def456…)\n"
        f"                └── Prediction: {g.pred}\n"
        "                    ├── Input sha256:a9f2d4…\n"
        "                    └── Output sha256:7c8b1a…\n"
    )
    assert str(trace) == expected


def test_upstream_trace_contents(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    t = client.trace(g.pred)
    assert t.root_id == g.pred
    assert t.direction == "upstream"
    # The root first, then breadth-first: along a chain that is one order.
    assert [n["id"] for n in t.nodes] == list(reversed(g.ids))
    assert len(t) == 6
    by_id = {n["id"]: n for n in t.nodes}
    for spec in g.nodes:
        node = by_id[spec["id"]]
        assert node["kind"] == spec["kind"]
        assert node["attributes"] == spec["attributes"]
        created = datetime.datetime.fromisoformat(node["created_at"].replace("Z", "+00:00"))
        assert abs(datetime.datetime.now(datetime.timezone.utc) - created) < datetime.timedelta(minutes=10)
    assert edge_set(t.edges) == edge_set(g.edges)
    assert t.depth_reached == 5
    assert t.truncated is False
    assert t.truncation_reason is None
    d = t.to_dict()
    assert d["root_id"] == g.pred and d["nodes"] == t.nodes and d["edges"] == t.edges
    assert repr(t) == f"<Trace upstream of '{g.pred}': 6 nodes, 5 edges>"

    # Jupyter/IPython show the tree when a trace is a cell's value.
    class Printer:
        def __init__(self) -> None:
            self.texts: list[str] = []

        def text(self, s: str) -> None:
            self.texts.append(s)

    p = Printer()
    t._repr_pretty_(p, False)
    assert p.texts == [str(t).rstrip("\n")]


def test_downstream_trace_contents(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    t = client.trace(g.dsv, direction="downstream")
    assert t.direction == "downstream"
    assert [n["id"] for n in t.nodes] == [g.dsv, g.run, g.mv, g.pred]
    assert edge_set(t.edges) == edge_set(g.edges[2:])
    assert t.depth_reached == 3
    # ...and upstream from the same node sees the other half.
    up = client.trace(g.dsv, direction="upstream")
    assert [n["id"] for n in up.nodes] == [g.dsv, g.ex, g.ds]


def test_trace_depth_limit_is_said(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    t = client.trace(g.pred, max_depth=2)
    assert [n["id"] for n in t.nodes] == [g.pred, g.mv, g.run]
    assert t.depth_reached == 2
    assert t.truncated is True
    assert "depth" in t.truncation_reason and "max_depth" in t.truncation_reason
    assert str(t).endswith(f"… truncated: {t.truncation_reason}\n")
    assert ", truncated>" in repr(t)


def test_trace_node_limit_is_said(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    t = client.trace(g.pred, max_nodes=3)
    assert len(t.nodes) <= 3
    assert t.truncated is True
    assert "max_nodes" in t.truncation_reason


def test_impact(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    dep, fb = f"dep_{uid}", f"fb_{uid}"
    client.record_lineage(
        nodes=[
            {"id": dep, "kind": "deployment", "attributes": {"model": "churn", "version": "3", "stage": "production"}},
            {"id": fb, "kind": "feedback", "attributes": {"label": "1"}},
        ],
        edges=[{"from_id": g.mv, "to_id": dep}, {"from_id": g.pred, "to_id": fb}],
    )
    impact = client.impact(g.ds)
    assert impact["root"]["id"] == g.ds
    # Predictions and feedback are counted but not listed as affected.
    assert [n["id"] for n in impact["affected"]] == [g.ex, g.dsv, g.run, g.mv, dep]
    assert {k: v for k, v in impact["counts"].items() if v} == {
        "extraction": 1,
        "dataset_version": 1,
        "training_run": 1,
        "model_version": 1,
        "deployment": 1,
        "prediction": 1,
        "feedback": 1,
    }
    assert impact["model_versions"] == [{"model": "churn", "version": 3}]
    assert [d["id"] for d in impact["deployments"]] == [dep]
    assert impact["deployments"][0]["attributes"]["stage"] == "production"
    assert impact["truncated"] is False and impact["truncation_reason"] is None

    # From the model version only what was made from it is affected.
    below = client.impact(g.mv)
    assert [n["id"] for n in below["affected"]] == [dep]
    assert below["counts"].get("dataset_version", 0) == 0


def test_record_node_and_edge_one_by_one(client: pulse.Client, uid: str) -> None:
    ds, ex = f"ds1_{uid}", f"ex1_{uid}"
    first = client.record_lineage_node(ds, "datasource", {"name": "crm", "connector": "mysql", "owner": "sales"})
    assert first["created"] is True
    assert first["node"]["id"] == ds and first["node"]["kind"] == "datasource"
    assert first["node"]["attributes"] == {"name": "crm", "connector": "mysql", "owner": "sales"}

    # Recording again merges attributes (`owner` stays); numbers and
    # booleans are sent as text.
    again = client.record_lineage_node(ds, "DATASOURCE", {"name": "crm", "connector": "mysql", "rows_hint": 1200, "pii": True})
    assert again["created"] is False
    assert client.get_lineage_node(ds)["attributes"] == {
        "name": "crm",
        "connector": "mysql",
        "owner": "sales",
        "rows_hint": "1200",
        "pii": "true",
    }

    client.record_lineage_node(ex, "extraction", {"mode": "incremental"})
    edge = client.record_lineage_edge(ds, ex, "extracted")
    assert edge["created"] is True
    assert (edge["edge"]["from_id"], edge["edge"]["to_id"], edge["edge"]["relation"]) == (ds, ex, "extracted")
    assert client.record_lineage_edge(ds, ex, "extracted")["created"] is False
    assert str(client.trace(ex)) == (
        f"Extraction: {ex}  incremental\n"
        "└── Datasource: crm (mysql)\n"
    )


def test_batch_is_all_or_nothing(client: pulse.Client, uid: str) -> None:
    ds, pred = f"ds2_{uid}", f"pred2_{uid}"
    with pytest.raises(pulse.PulseError):
        client.record_lineage(
            nodes=[
                {"id": ds, "kind": "datasource", "attributes": {"name": "a", "connector": "postgres"}},
                {"id": pred, "kind": "prediction"},
            ],
            # Valid nodes, but an edge to a node that exists nowhere.
            edges=[{"from_id": ds, "to_id": f"missing_{uid}"}],
        )
    with pytest.raises(pulse.NotFound):
        client.get_lineage_node(ds)
    with pytest.raises(pulse.NotFound):
        client.get_lineage_node(pred)


def test_list_nodes_by_kind_and_pages(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    record_chain(client, uid + "b")
    models = list(client.iter_lineage_nodes("model_version"))
    assert {g.mv, f"mv_{uid}b"} <= {n["id"] for n in models}
    assert {n["kind"] for n in models} == {"model_version"}

    first = client.list_lineage_nodes(kind="model_version", page_size=1)
    assert len(first["nodes"]) == 1 and first["next_page_token"]
    second = client.list_lineage_nodes(kind="model_version", page_token=first["next_page_token"], page_size=1)
    assert len(second["nodes"]) == 1 and second["nodes"][0]["id"] != first["nodes"][0]["id"]

    every = {n["id"] for n in client.iter_lineage_nodes()}
    assert set(g.ids) <= every


def test_export_around_a_root(client: pulse.Client, uid: str) -> None:
    g = record_chain(client, uid)
    other = record_chain(client, uid + "x")
    exported = client.export_lineage(root_id=g.dsv)
    assert {n["id"] for n in exported["nodes"]} == set(g.ids)
    assert edge_set(exported["edges"]) == edge_set(g.edges)

    everything = client.export_lineage()
    ids = {n["id"] for n in everything["nodes"]}
    assert set(g.ids) | set(other.ids) <= ids
    assert edge_set(g.edges) | edge_set(other.edges) <= edge_set(everything["edges"])

