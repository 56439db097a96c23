"""The notebook journey on datasources and snapshots, against a live
`pulse up` and a real PostgreSQL: register a view, validate, inspect,
snapshot fully then incrementally after inserts and updates, read both
versions back as pyarrow tables; the same with a CSV file; and bad input."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pytest

import pulse

PG = os.environ.get("PULSE_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def psql(db_url: str, sql: str) -> str:
    out = subprocess.run(["psql", db_url, "-v", "ON_ERROR_STOP=1", "-Atc", sql], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return out.stdout


@pytest.fixture
def shop() -> Iterator[str]:
    """A fresh PostgreSQL database with `orders` and the view `ai_orders_v1`."""
    name = f"pulse_sdk_{uuid.uuid4().hex[:10]}"
    psql(PG, f"CREATE DATABASE {name}")
    url = PG.rsplit("/", 1)[0] + "/" + name
    psql(
        url,
        """
        CREATE TABLE orders (id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2),
                             updated_at timestamptz NOT NULL, card_number text);
        INSERT INTO orders SELECT g, 'c' || (g % 5), g * 2.5, timestamptz '2024-01-01' + g * interval '1 hour', 'secret'
        FROM generate_series(1, 400) g;
        CREATE VIEW ai_orders_v1 AS SELECT id, customer, amount, updated_at FROM orders;
        """,
    )
    try:
        yield url
    finally:
        psql(PG, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def source_rows(url: str) -> list[tuple[int, str, str]]:
    rows = psql(url, "SELECT id, customer, amount::text FROM orders ORDER BY id").splitlines()
    return [(int(i), c, a) for i, c, a in (r.split("|") for r in rows)]


def table_rows(t: pa.Table) -> list[tuple[int, str, str]]:
    d = t.sort_by("id").to_pydict()
    return [(i, c, str(a)) for i, c, a in zip(d["id"], d["customer"], d["amount"])]


def test_postgres_view_full_then_incremental(client: pulse.Client, shop: str) -> None:
    name = f"shop-{uuid.uuid4().hex[:6]}"
    ds = client.register_datasource(name, kind="postgres", dsn=shop, allowed_views=["ai_orders_v1"])
    assert ds.id.startswith("dsrc_") and ds.connector == "postgres"
    assert ds.connection.sql.dsn_redacted.startswith("postgres://") and not ds.secret.set

    v = client.validate_datasource(ds.id)
    assert v.ok, v
    assert [c.name for c in v.checks][:3] == ["reachable", "authenticated", "read_only"]
    assert any(c.name == "object:public.ai_orders_v1" and c.status == "passed" for c in v.checks)

    (obj,) = client.inspect_schema(ds.id)
    assert [(c.name, c.data_type) for c in obj.schema.columns] == [
        ("id", "int"), ("customer", "string"), ("amount", "decimal"), ("updated_at", "timestamp"),
    ]
    size = client.estimate_size(ds.id, exact=True)
    assert size.total_rows == 400

    dataset = f"orders-{uuid.uuid4().hex[:6]}"
    job = client.create_snapshot(ds.id, source="ai_orders_v1", dataset=dataset,
                                 cursor_field="updated_at", primary_key=["id"], chunk_rows=150)
    v1 = job.wait(timeout=120, progress=False)
    assert (v1.version, v1.rows) == (1, 400)
    assert len(v1.manifest.chunks) == 3 and len(v1.sha256) == 64
    stats = {s.column: s for s in v1.manifest.statistics}
    assert stats["amount"].count == 400 and abs(stats["amount"].mean - 501.25) < 1e-9
    t1 = client.read_snapshot(dataset, 1)
    assert isinstance(t1, pa.Table) and t1.num_rows == 400
    assert t1.schema.field("amount").type == pa.decimal128(12, 2)
    assert t1.schema.metadata[b"pulse.sha256"].decode() == v1.sha256
    before = source_rows(shop)
    assert table_rows(t1) == before

    psql(shop, """
        INSERT INTO orders SELECT g, 'new', 1.00, now(), 'x' FROM generate_series(401, 420) g;
        UPDATE orders SET customer = 'changed', updated_at = now() WHERE id IN (1, 200, 400);
    """)
    v2 = client.create_snapshot(ds.id, source="ai_orders_v1", dataset=dataset, mode="incremental").wait(
        timeout=120, progress=False)
    assert (v2.version, v2.rows) == (2, 420)
    assert v2.manifest.source.base_version == 1
    assert table_rows(client.read_snapshot(dataset)) == source_rows(shop)
    assert table_rows(client.read_snapshot(dataset, 1)) == before, "version 1 never changes"
    assert client.read_snapshot(dataset, 2, columns=["id"], limit=5).num_rows == 5

    listed = {d.id: d for d in client.list_datasets()}
    assert listed[dataset].current_version == 2 and listed[dataset].latest_version == 2
    assert [v.version for v in client.list_dataset_versions(dataset)] == [2, 1]


def test_a_csv_file_snapshots_like_a_table(client: pulse.Client, tmp_path: Path) -> None:
    csv = tmp_path / "sales.csv"
    csv.write_text("id,region,amount,sold_at\n" + "".join(
        f"{i},{'north' if i % 2 else 'south'},{i * 1.5},2024-03-0{1 + i % 9}T10:00:00\n" for i in range(1, 101)))
    ds = client.register_datasource(f"sales-{uuid.uuid4().hex[:6]}", kind="object_storage", uri=f"file://{csv}")
    assert ds.allowlist.paths == ["sales.csv"]
    assert client.validate_datasource(ds.id).ok
    dataset = f"sales-{uuid.uuid4().hex[:6]}"
    ver = client.create_snapshot(ds.id, source="sales.csv", dataset=dataset).wait(timeout=120, progress=False)
    assert ver.rows == 100
    t = client.read_snapshot(dataset)
    assert t.num_rows == 100
    assert sorted(t.column("id").to_pylist()) == list(range(1, 101))
    assert t.schema.field("sold_at").type == pa.timestamp("us", tz="+00:00")


def test_bad_input_is_refused_with_the_reason(client: pulse.Client, shop: str) -> None:
    ds = client.register_datasource(f"shop-{uuid.uuid4().hex[:6]}", kind="postgres", dsn=shop,
                                    allowed_views=["ai_orders_v1"])
    with pytest.raises(pulse.PermissionDenied):
        client.create_snapshot(ds.id, source="orders", dataset="x-not-allowed")
    for bad in ["ai_orders_v1; DROP TABLE orders", 'ai_orders_v1"', "ai_orders_v1 --"]:
        with pytest.raises(pulse.InvalidArgument) as e:
            client.create_snapshot(ds.id, source=bad, dataset="x-bad")
        assert "object" in str(e.value)
    with pytest.raises(pulse.NotFound):
        client.read_snapshot("no-such-dataset")
    with pytest.raises(pulse.Unimplemented):
        client.register_datasource(f"web-{uuid.uuid4().hex[:6]}", kind="http", uri="https://example.com/api")

    # A wrong password: validation reports the cause, never the password.
    wrong = client.register_datasource(f"wrong-{uuid.uuid4().hex[:6]}", kind="postgres",
                                       dsn="postgres://nobody_here@127.0.0.1:5432/postgres", password="hunter2-secret",
                                       allowed_tables=["orders"])
    assert "hunter2" not in repr(wrong) and wrong.secret.set
    v = client.validate_datasource(wrong.id)
    assert not v.ok and v.reachable and not v.authenticated
    assert "hunter2" not in repr(v)

    # The same idempotency key twice starts one job.
    dataset = f"once-{uuid.uuid4().hex[:6]}"
    key = uuid.uuid4().hex
    a = client.create_snapshot(ds.id, source="ai_orders_v1", dataset=dataset, idempotency_key=key)
    b = client.create_snapshot(ds.id, source="ai_orders_v1", dataset=dataset, idempotency_key=key)
    assert a.id == b.id
    a.wait(timeout=120, progress=False)
    assert len(client.list_dataset_versions(dataset)) == 1


def test_other_tenants_see_nothing(client: pulse.Client, admin: pulse.Client, server, shop: str) -> None:
    ds = client.register_datasource(f"shop-{uuid.uuid4().hex[:6]}", kind="postgres", dsn=shop,
                                    allowed_views=["ai_orders_v1"])
    dataset = f"private-{uuid.uuid4().hex[:6]}"
    client.create_snapshot(ds.id, source="ai_orders_v1", dataset=dataset).wait(timeout=120, progress=False)
    tenant = admin.create_tenant(f"other-{uuid.uuid4().hex[:6]}")
    other = pulse.connect(server.endpoint, api_key=admin.create_api_key(tenant["id"], "tests")["secret"])
    with pytest.raises(pulse.NotFound):
        other.get_datasource(ds.id)
    with pytest.raises(pulse.NotFound):
        other.read_snapshot(dataset)
    with pytest.raises(pulse.NotFound):
        other.create_snapshot(ds.id, source="ai_orders_v1", dataset="stolen")
    assert all(d.id != dataset for d in other.list_datasets())
