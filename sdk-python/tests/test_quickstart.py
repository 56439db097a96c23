"""The quick-start notebook (examples/quickstart.ipynb) runs top to bottom
against a live `pulse up`, so the README's journey never goes stale."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_and_exports_every_dashboard_metric(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat", reason="make test installs nbformat, nbclient and ipykernel")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PULSE_ENDPOINT", server.endpoint)
    monkeypatch.setenv("PULSE_API_KEY", server.tenant_key)
    monkeypatch.setenv("QUICKSTART_DATA_DIR", str(tmp_path / "data"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
    )
    # The drift cell printed a drifted tenure; the trace reached the datasource.
    assert "DRIFT" in outputs and "tenure" in outputs, outputs[-2000:]
    assert "datasource" in outputs.lower(), outputs[-2000:]
    # The drift fired the policy; its retraining run finished.
    assert "SUCCEEDED [('extract', 'COMPLETED')" in outputs, outputs[-3000:]
    # After the whole journey, every metric a dashboard or an alert queries is exported.
    check_dashboard_metrics(server, tmp_path)


# Metrics no flow of this suite's `pulse up` can export yet, and why.
NOT_EXPORTED_HERE = {
    # Only with TLS configured: services/pulse/tests/split.rs checks it.
    "pulse_tls_certificate_expiry_timestamp_seconds",
}


def check_dashboard_metrics(server, tmp_path: Path) -> None:
    """`/metrics` holds every metric the Grafana dashboards and the
    Prometheus alert rules query."""
    import subprocess
    import sys
    import urllib.request

    page = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    scrape = tmp_path / "metrics.txt"
    scrape.write_text(page)
    script = Path(__file__).resolve().parents[2] / "scripts" / "observability_metrics.py"
    out = subprocess.run([sys.executable, str(script), "check", str(scrape)], capture_output=True, text=True)
    missing = {line.split()[1] for line in out.stdout.splitlines() if line.startswith("missing:")}
    assert missing <= NOT_EXPORTED_HERE, out.stdout
