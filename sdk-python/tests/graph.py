"""A small lineage graph with the well-known attributes (see lineage.proto):

    datasource → extraction → dataset_version → training_run → model_version → prediction
"""

from __future__ import annotations

import dataclasses

import pulse


@dataclasses.dataclass(frozen=True)
class Chain:
    ds: str
    ex: str
    dsv: str
    run: str
    mv: str
    pred: str

    @property
    def ids(self) -> list[str]:
        """Upstream to downstream."""
        return [self.ds, self.ex, self.dsv, self.run, self.mv, self.pred]

    @property
    def nodes(self) -> list[dict]:
        return [
            {"id": self.ds, "kind": "datasource", "attributes": {"name": "orders-db", "connector": "postgres"}},
            {"id": self.ex, "kind": "extraction", "attributes": {"mode": "full", "rows": "1247832"}},
            {
                "id": self.dsv,
                "kind": "dataset_version",
                "attributes": {
                    "dataset": "orders",
                    "version": "7",
                    "rows": "1247832",
                    "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                },
            },
            {
                "id": self.run,
                "kind": "training_run",
                "attributes": {
                    "started_at": "2026-01-15T02:00:00Z",
                    "finished_at": "2026-01-15T02:04:32Z",
                    "algorithm": "mlp",
                    "metric.f1": "0.9621",
                    "metric.accuracy": "0.9847",
                },
            },
            {
                "id": self.mv,
                "kind": "model_version",
                "attributes": {"model": "churn", "version": "3", "sha256": "def4567890abcdef"},
            },
            {
                "id": self.pred,
                "kind": "prediction",
                "attributes": {
                    "model": "churn",
                    "version": "3",
                    "input_sha256": "a9f2d4c1e0b7",
                    "output_sha256": "7c8b1a9f0042",
                },
            },
        ]

    @property
    def edges(self) -> list[dict]:
        return [
            {"from_id": self.ds, "to_id": self.ex, "relation": "extracted"},
            {"from_id": self.ex, "to_id": self.dsv, "relation": "committed"},
            {"from_id": self.dsv, "to_id": self.run, "relation": "trained_on"},
            {"from_id": self.run, "to_id": self.mv, "relation": "produced"},
            {"from_id": self.mv, "to_id": self.pred, "relation": "predicted"},
        ]


def chain(uid: str) -> Chain:
    return Chain(
        ds=f"ds_{uid}",
        ex=f"ex_{uid}",
        dsv=f"dsv_{uid}",
        run=f"run_{uid}",
        mv=f"mv_{uid}",
        pred=f"pred_{uid}",
    )


def record_chain(c: pulse.Client, uid: str) -> Chain:
    g = chain(uid)
    result = c.record_lineage(g.nodes, g.edges)
    assert result == {"nodes_created": 6, "nodes_updated": 0, "edges_created": 5}
    return g
