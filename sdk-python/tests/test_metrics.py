"""`/metrics` counts the SDK's calls per RPC."""

from __future__ import annotations

import re
import urllib.request

from conftest import Server
from graph import record_chain

import pulse

SAMPLE = re.compile(r"^pulse_grpc_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.MULTILINE)


def requests_total(server: Server, method: str, code: str) -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        assert r.status == 200
        text = r.read().decode()
    total = 0.0
    for m in SAMPLE.finditer(text):
        labels = m.group("labels")
        if f'method="{method}"' in labels and f'code="{code}"' in labels:
            total += float(m.group("value"))
    return total


def test_trace_is_counted(client: pulse.Client, server: Server, uid: str) -> None:
    g = record_chain(client, uid)
    before = requests_total(server, "Trace", "OK")
    client.trace(g.pred)
    client.trace(g.ds, direction="downstream")
    assert requests_total(server, "Trace", "OK") == before + 2

    failed_before = requests_total(server, "GetNode", "NOT_FOUND")
    try:
        client.get_lineage_node(f"missing_{uid}")
    except pulse.NotFound:
        pass
    assert requests_total(server, "GetNode", "NOT_FOUND") == failed_before + 1
