#!/usr/bin/env python3
"""Writes the Grafana dashboards in observability/grafana/dashboards/.

The JSON files are generated so that the eight dashboards share one layout,
one datasource reference and one set of PromQL idioms. Edit this file, then:

    python3 observability/grafana/build_dashboards.py          # rewrite the JSON
    python3 observability/grafana/build_dashboards.py --check  # exit 1 if stale

Python 3 standard library only.
"""

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dashboards"
DS = {"type": "prometheus", "uid": "prometheus"}
RI = "$__rate_interval"

# gRPC codes that mean the server (or something behind it) failed; client
# mistakes (INVALID_ARGUMENT, NOT_FOUND, ...) are not errors of the service.
SERVER_ERRORS = "INTERNAL|UNAVAILABLE|UNKNOWN|DEADLINE_EXCEEDED|DATA_LOSS"
# Streaming RPCs: their "latency" is the life of the stream, so latency
# percentiles across a whole service leave them out.
STREAMING = (
    "StreamData|WatchEvents|PredictStream|ExportPredictions|Export|WatchExtractionJob|"
    "ReadDatasetVersion|WatchTrainingJob|SaveCheckpoint|LoadCheckpoint|Watch"
)

SERVICES = {
    "datasource": "pulse.datasource.v1.DatasourceService",
    "snapshot": "pulse.snapshot.v1.SnapshotService",
    "trainer": "pulse.trainer.v1.TrainerService",
    "inference": "pulse.inference.v1.InferenceService",
    "lineage": "pulse.lineage.v1.LineageService",
    "drift": "pulse.drift.v1.DriftService",
}


# --- panels -----------------------------------------------------------------


def target(expr, legend="__auto", ref="A", fmt=None, instant=False):
    t = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend,
        "range": not instant,
        "instant": instant,
        "refId": ref,
    }
    if fmt:
        t["format"] = fmt
    return t


def targets(*pairs, **kw):
    """targets(("expr", "legend"), ...) with refIds A, B, ..."""
    return [target(e, l, ref=chr(ord("A") + i), **kw) for i, (e, l) in enumerate(pairs)]


def thresholds(*steps):
    """thresholds("green", (1, "red")) -> Grafana absolute thresholds."""
    out = [{"color": steps[0], "value": None}]
    out += [{"color": c, "value": v} for v, c in steps[1:]]
    return {"mode": "absolute", "steps": out}


def timeseries(title, tgts, unit="short", desc="", stack=False, minimum=None, maximum=None, bars=False, mappings=None):
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    defaults = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if minimum is not None:
        defaults["min"] = minimum
    if maximum is not None:
        defaults["max"] = maximum
    if mappings:
        defaults["mappings"] = mappings
    return {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": tgts,
    }


def stat(title, expr, unit="short", desc="", thr=None, decimals=None, legend="", mappings=None):
    defaults = {
        "unit": unit,
        "color": {"mode": "thresholds"},
        "thresholds": thr or thresholds("green"),
        "mappings": mappings or [],
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
        "targets": [target(expr, legend)],
    }


def bargauge(title, expr, legend, unit="short", desc="", thr=None):
    return {
        "type": "bargauge",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {"unit": unit, "color": {"mode": "thresholds"}, "thresholds": thr or thresholds("green")},
            "overrides": [],
        },
        "options": {
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
        "targets": [target(expr, legend, instant=True)],
    }


def heatmap(title, expr, desc="", unit="short"):
    return {
        "type": "heatmap",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "yAxis": {"axisPlacement": "left", "unit": unit},
            "tooltip": {"show": True, "yHistogram": False},
            "legend": {"show": True},
        },
        "targets": [target(expr, "{{le}}", fmt="heatmap")],
    }


BREAKER_MAPPINGS = [
    {
        "type": "value",
        "options": {
            "0": {"text": "closed", "color": "green", "index": 0},
            "1": {"text": "open", "color": "red", "index": 1},
            "2": {"text": "half-open", "color": "orange", "index": 2},
        },
    }
]


def state_timeline(title, expr, legend, mappings, desc=""):
    return {
        "type": "state-timeline",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {"mappings": mappings, "color": {"mode": "thresholds"}, "thresholds": thresholds("green")},
            "overrides": [],
        },
        "options": {
            "showValue": "auto",
            "mergeValues": True,
            "rowHeight": 0.8,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "single"},
        },
        "targets": [target(expr, legend)],
    }


# --- dashboards -------------------------------------------------------------


def variable(name, label, query, multi=True, include_all=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "allValue": ".*" if include_all else None,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
        "hide": 0,
        "options": [],
        "regex": "",
        "skipUrlSync": False,
    }


class Board:
    """Places panels left to right, wrapping at 24 columns."""

    def __init__(self, uid, title, description, variables=()):
        self.uid, self.title, self.description = uid, title, description
        self.variables = list(variables)
        self.panels = []
        self.x = self.y = self.line_h = 0

    def _newline(self):
        self.y += self.line_h
        self.x = self.line_h = 0

    def row(self, title):
        if self.x:
            self._newline()
        self.panels.append(
            {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}}
        )
        self.y += 1

    def add(self, panel, w=12, h=8):
        if self.x + w > 24:
            self._newline()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.line_h = max(self.line_h, h)
        if self.x >= 24:
            self._newline()

    def json(self):
        for i, p in enumerate(self.panels, start=1):
            p["id"] = i
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["pulse"],
            "schemaVersion": 39,
            "version": 1,
            "editable": True,
            "graphTooltip": 1,
            "timezone": "browser",
            "time": {"from": "now-1h", "to": "now"},
            "refresh": "30s",
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "links": [
                {
                    "type": "dashboards",
                    "title": "Pulse dashboards",
                    "tags": ["pulse"],
                    "asDropdown": True,
                    "includeVars": False,
                    "keepTime": True,
                    "icon": "external link",
                    "targetBlank": False,
                    "tooltip": "",
                    "url": "",
                }
            ],
            "templating": {"list": self.variables},
            "panels": self.panels,
        }


def overview():
    sel = 'service=~"$service"'
    b = Board(
        "pulse-overview",
        "Pulse / Overview",
        "All six Pulse services: health, firing alerts, request rate, server errors, latency.",
        [variable("service", "gRPC service", "label_values(pulse_grpc_requests_total, service)")],
    )
    b.row("Status")
    red_if_any = thresholds("green", (1, "red"))
    orange_if_any = thresholds("green", (1, "orange"))
    b.add(stat("Targets up", 'sum(up{job!="prometheus"})', desc="Pulse metrics endpoints Prometheus scrapes successfully.",
               thr=thresholds("blue")), 3, 4)
    b.add(stat("Targets down", 'count(up{job!="prometheus"} == 0) or vector(0)', thr=red_if_any,
               desc="Scrape targets not answering (alert PulseTargetDown after 2m)."), 3, 4)
    b.add(stat("Critical alerts", 'count(ALERTS{alertstate="firing",severity="critical"}) or vector(0)', thr=red_if_any,
               desc="Pulse alerts firing now with severity critical (see Prometheus /alerts)."), 3, 4)
    b.add(stat("Warning alerts", 'count(ALERTS{alertstate="firing",severity="warning"}) or vector(0)', thr=orange_if_any,
               desc="Pulse alerts firing now with severity warning."), 3, 4)
    b.add(stat("Open breakers", "count(pulse_inference_breaker_state == 1) or vector(0)", thr=red_if_any,
               desc="Models whose circuit breaker is open (predictions rejected or sent to the fallback)."), 3, 4)
    b.add(stat("Jobs queued", "sum(max by (kind) (pulse_jobs_queued)) or vector(0)",
               thr=thresholds("green", (10, "orange"), (20, "red")),
               desc="Extraction, training and pipeline jobs waiting for a worker."), 3, 4)
    b.add(stat("Failed jobs", 'sum(increase(pulse_jobs_finished_total{status="failed"}[$__range])) or vector(0)',
               thr=orange_if_any, decimals=0, desc="Jobs that ended failed in the selected time range."), 3, 4)
    b.add(stat("Lost workers", "sum(increase(pulse_jobs_taken_over_total[$__range])) or vector(0)", thr=orange_if_any,
               decimals=0, desc="Jobs taken over after their worker stopped renewing its lease, in the time range."), 3, 4)
    b.add(stat("Requests / s", f"sum(rate(pulse_grpc_requests_total{{{sel}}}[{RI}]))", unit="reqps"), 4, 4)
    b.add(stat("Server error ratio",
               f'sum(rate(pulse_grpc_requests_total{{{sel},code=~"{SERVER_ERRORS}"}}[{RI}])) / sum(rate(pulse_grpc_requests_total{{{sel}}}[{RI}]))',
               unit="percentunit", thr=thresholds("green", (0.01, "orange"), (0.05, "red")),
               desc=f"Share of RPCs ending {SERVER_ERRORS.replace('|', ', ')}."), 4, 4)
    b.add(stat("Predictions / s", f"sum(rate(pulse_predictions_total[{RI}]))", unit="short"), 4, 4)
    b.add(stat("Drift detections", "sum(increase(pulse_drift_detected_total[$__range])) or vector(0)", thr=orange_if_any,
               decimals=0, desc="Drift checks that found drift, in the selected time range."), 4, 4)
    b.add(stat("Training workers", "max(pulse_training_workers_active) or vector(0)",
               desc="Registered training workers heartbeating in time."), 4, 4)
    b.add(stat("TLS certificate expires in", "min(pulse_tls_certificate_expiry_timestamp_seconds) - time()", unit="s",
               thr=thresholds("red", (3 * 86400, "orange"), (14 * 86400, "green")),
               desc="Earliest expiry of the gRPC TLS certificates (no value when TLS is not configured)."), 4, 4)

    b.row("RPC")
    b.add(timeseries("Request rate by service", targets((f"sum by (service) (rate(pulse_grpc_requests_total{{{sel}}}[{RI}]))", "{{service}}")),
                     unit="reqps"))
    b.add(timeseries("Server error ratio by service", targets((
        f'sum by (service) (rate(pulse_grpc_requests_total{{{sel},code=~"{SERVER_ERRORS}"}}[{RI}])) / sum by (service) (rate(pulse_grpc_requests_total{{{sel}}}[{RI}]))',
        "{{service}}")), unit="percentunit", minimum=0,
        desc="Alert PulseGrpcHighErrorRate fires above 5% for 5 minutes."))
    b.add(timeseries("p99 latency by service (unary RPCs)", targets((
        f'histogram_quantile(0.99, sum by (le, service) (rate(pulse_grpc_request_duration_seconds_bucket{{{sel},method!~"{STREAMING}"}}[{RI}])))',
        "{{service}}")), unit="s", desc="Streaming RPCs are left out: their duration is the life of the stream."))
    b.add(timeseries("In-flight requests by service", targets((f"sum by (service) (pulse_grpc_requests_in_flight{{{sel}}})", "{{service}}")),
                     stack=True))
    b.add(timeseries("Non-OK responses by code", targets((
        f'sum by (code) (rate(pulse_grpc_requests_total{{{sel},code!="OK"}}[{RI}]))', "{{code}}")), unit="reqps", stack=True))
    b.add(timeseries("Targets up", targets(("sum by (job) (up)", "{{job}}")), minimum=0, desc="1 per healthy scrape target.",
                     stack=True))
    return b


def rpc_section(b, svc, sel):
    b.row("RPC")
    b.add(stat("Requests / s", f"sum(rate(pulse_grpc_requests_total{{{sel}}}[{RI}]))", unit="reqps"), 6, 4)
    b.add(stat("Server error ratio",
               f'sum(rate(pulse_grpc_requests_total{{{sel},code=~"{SERVER_ERRORS}"}}[{RI}])) / sum(rate(pulse_grpc_requests_total{{{sel}}}[{RI}]))',
               unit="percentunit", thr=thresholds("green", (0.01, "orange"), (0.05, "red"))), 6, 4)
    b.add(stat("p99 latency (unary)",
               f'histogram_quantile(0.99, sum by (le) (rate(pulse_grpc_request_duration_seconds_bucket{{{sel},method!~"{STREAMING}"}}[{RI}])))',
               unit="s"), 6, 4)
    b.add(stat("In flight", f"sum(pulse_grpc_requests_in_flight{{{sel}}})"), 6, 4)
    b.add(timeseries("Request rate by method", targets((f"sum by (method) (rate(pulse_grpc_requests_total{{{sel}}}[{RI}]))", "{{method}}")),
                     unit="reqps"))
    b.add(timeseries("Responses by code", targets((f"sum by (code) (rate(pulse_grpc_requests_total{{{sel}}}[{RI}]))", "{{code}}")),
                     unit="reqps", stack=True))
    b.add(timeseries("Server error ratio by method", targets((
        f'sum by (method) (rate(pulse_grpc_requests_total{{{sel},code=~"{SERVER_ERRORS}"}}[{RI}])) / sum by (method) (rate(pulse_grpc_requests_total{{{sel}}}[{RI}]))',
        "{{method}}")), unit="percentunit", minimum=0))
    b.add(timeseries("Latency p50 / p99 by method", targets(
        (f"histogram_quantile(0.5, sum by (le, method) (rate(pulse_grpc_request_duration_seconds_bucket{{{sel}}}[{RI}])))", "p50 {{method}}"),
        (f"histogram_quantile(0.99, sum by (le, method) (rate(pulse_grpc_request_duration_seconds_bucket{{{sel}}}[{RI}])))", "p99 {{method}}"),
    ), unit="s", desc="For streaming methods this is the duration of the whole stream."))
    b.add(timeseries("In-flight requests by method", targets((f"sum by (method) (pulse_grpc_requests_in_flight{{{sel}}})", "{{method}}")),
                     stack=True), 24, 7)


def jobs_section(b, kind, inst):
    k = f'kind="{kind}",{inst}'
    b.add(stat(f"{kind.capitalize()} jobs queued", f"max(pulse_jobs_queued{{{k}}}) or vector(0)",
               thr=thresholds("green", (10, "orange"), (20, "red"))), 6, 4)
    b.add(stat("Succeeded", f'sum(increase(pulse_jobs_finished_total{{{k},status="succeeded"}}[$__range])) or vector(0)', decimals=0,
               desc="In the selected time range."), 6, 4)
    b.add(stat("Failed", f'sum(increase(pulse_jobs_finished_total{{{k},status="failed"}}[$__range])) or vector(0)', decimals=0,
               thr=thresholds("green", (1, "orange")), desc="In the selected time range."), 6, 4)
    b.add(stat("Taken over (lost workers)", f"sum(increase(pulse_jobs_taken_over_total{{{k}}}[$__range])) or vector(0)", decimals=0,
               thr=thresholds("green", (1, "orange")),
               desc="Jobs whose worker stopped renewing its lease and that another worker took over, in the time range."), 6, 4)
    b.add(timeseries(f"{kind.capitalize()} jobs queued", targets((f"max(pulse_jobs_queued{{{k}}})", "queued")), minimum=0,
                     desc="Alert PulseJobQueueBacklog fires above 20 for 15 minutes."), 8)
    b.add(timeseries("Jobs finished by status", targets((
        f"sum by (status) (increase(pulse_jobs_finished_total{{{k}}}[{RI}]))", "{{status}}")), bars=True, stack=True), 8)
    b.add(timeseries("Jobs taken over", targets((f"sum(increase(pulse_jobs_taken_over_total{{{k}}}[{RI}]))", "taken over")), bars=True), 8)


def service_board(name):
    svc = SERVICES[name]
    sel = f'service="{svc}",instance=~"$instance"'
    inst = 'instance=~"$instance"'
    variables = [variable("instance", "Instance", f'label_values(pulse_grpc_requests_total{{service="{svc}"}}, instance)')]
    if name in ("inference", "trainer", "drift"):
        variables.append(variable("model", "Model", "label_values(model)"))
    if name == "snapshot":
        variables.append(variable("dataset", "Dataset", "label_values(pulse_extraction_rows_total, dataset)"))
    b = Board(f"pulse-{name}", f"Pulse / {name.capitalize()}", f"The {name} service ({svc}): RPCs and its domain metrics.", variables)

    if name == "datasource":
        b.row("Source access")
        m = f'service="{svc}",{inst}'
        b.add(timeseries("Active data streams (StreamData)", targets((f'sum(pulse_grpc_requests_in_flight{{{m},method="StreamData"}})', "streams")),
                         minimum=0, desc="Arrow streams from an allowlisted source to snapshot extraction workers."), 8)
        b.add(timeseries("StreamData duration p50 / p99", targets(
            (f'histogram_quantile(0.5, sum by (le) (rate(pulse_grpc_request_duration_seconds_bucket{{{m},method="StreamData"}}[{RI}])))', "p50"),
            (f'histogram_quantile(0.99, sum by (le) (rate(pulse_grpc_request_duration_seconds_bucket{{{m},method="StreamData"}}[{RI}])))', "p99"),
        ), unit="s"), 8)
        b.add(timeseries("Validate / inspect / estimate outcomes", targets((
            f'sum by (method, code) (rate(pulse_grpc_requests_total{{{m},method=~"ValidateDatasource|InspectSchema|EstimateSize|PlanRanges"}}[{RI}]))',
            "{{method}} {{code}}")), unit="reqps", desc="UNAVAILABLE or FAILED_PRECONDITION here usually means the source database is unreachable or a view is not allowlisted."), 8)
        b.add(timeseries("Rows extracted per second (all datasets)", targets((f"sum(rate(pulse_extraction_rows_total[{RI}]))", "rows/s")),
                         desc="Written by the snapshot service from the streams served here."), 24, 6)

    if name == "snapshot":
        b.row("Extraction")
        d = f'dataset=~"$dataset",{inst}'
        b.add(stat("Rows extracted", f"sum(increase(pulse_extraction_rows_total{{{d}}}[$__range]))", decimals=0,
                   desc="In the selected time range."), 6, 4)
        b.add(stat("Bytes extracted", f"sum(increase(pulse_extraction_bytes_total{{{d}}}[$__range]))", unit="bytes",
                   desc="In the selected time range."), 6, 4)
        b.add(stat("Rows / s", f"sum(rate(pulse_extraction_rows_total{{{d}}}[{RI}]))"), 6, 4)
        b.add(stat("Throughput", f"sum(rate(pulse_extraction_bytes_total{{{d}}}[{RI}]))", unit="Bps"), 6, 4)
        b.add(timeseries("Rows extracted per second by dataset", targets((
            f"sum by (dataset) (rate(pulse_extraction_rows_total{{{d}}}[{RI}]))", "{{dataset}}")), stack=True))
        b.add(timeseries("Bytes extracted per second by dataset", targets((
            f"sum by (dataset) (rate(pulse_extraction_bytes_total{{{d}}}[{RI}]))", "{{dataset}}")), unit="Bps", stack=True))
        b.row("Extraction jobs")
        jobs_section(b, "extraction", inst)

    if name == "trainer":
        mi = f'model=~"$model",{inst}'
        b.row("Training")
        b.add(stat("Workers active", f"max(pulse_training_workers_active{{{inst}}}) or vector(0)",
                   desc="Registered training workers heartbeating in time."), 6, 4)
        b.add(stat("Epochs", f"sum(increase(pulse_training_epochs_total{{{mi}}}[$__range])) or vector(0)", decimals=0,
                   desc="Epochs completed in the selected time range."), 6, 4)
        b.add(stat("Checkpoints saved", f"sum(increase(pulse_checkpoints_saved_total{{{inst}}}[$__range])) or vector(0)", decimals=0,
                   desc="In the selected time range."), 6, 4)
        b.add(stat("Checkpoint save p99",
                   f"histogram_quantile(0.99, sum by (le) (rate(pulse_checkpoint_save_seconds_bucket{{{inst}}}[{RI}])))", unit="s"), 6, 4)
        b.add(timeseries("Training loss", targets((f"pulse_training_loss{{{mi}}}", "{{model}} {{split}}")),
                         desc="Latest loss per model and split (train, validation)."))
        b.add(timeseries("Epochs completed", targets((f"sum by (model) (increase(pulse_training_epochs_total{{{mi}}}[{RI}]))", "{{model}}")),
                         bars=True, stack=True))
        b.add(timeseries("Training workers active", targets((f"max(pulse_training_workers_active{{{inst}}})", "workers")), minimum=0), 8)
        b.add(timeseries("Checkpoint bytes saved per second", targets((f"sum(rate(pulse_checkpoint_bytes_total{{{inst}}}[{RI}]))", "bytes/s")),
                         unit="Bps"), 8)
        b.add(timeseries("Checkpoint save time p50 / p99", targets(
            (f"histogram_quantile(0.5, sum by (le) (rate(pulse_checkpoint_save_seconds_bucket{{{inst}}}[{RI}])))", "p50"),
            (f"histogram_quantile(0.99, sum by (le) (rate(pulse_checkpoint_save_seconds_bucket{{{inst}}}[{RI}])))", "p99"),
        ), unit="s"), 8)
        b.row("Training jobs")
        jobs_section(b, "training", inst)

    if name == "inference":
        mi = f'model=~"$model",{inst}'
        b.row("Predictions")
        b.add(stat("Predictions / s", f"sum(rate(pulse_predictions_total{{{mi}}}[{RI}]))"), 6, 4)
        b.add(stat("Prediction error ratio",
                   f'sum(rate(pulse_predictions_total{{{mi},outcome!~"(?i)ok"}}[{RI}])) / sum(rate(pulse_predictions_total{{{mi}}}[{RI}]))',
                   unit="percentunit", thr=thresholds("green", (0.01, "orange"), (0.05, "red"))), 6, 4)
        b.add(stat("Prediction p99",
                   f"histogram_quantile(0.99, sum by (le) (rate(pulse_prediction_latency_seconds_bucket{{{mi}}}[{RI}])))", unit="s",
                   thr=thresholds("green", (0.05, "orange"), (0.1, "red"))), 6, 4)
        b.add(stat("Cache hit ratio",
                   f'sum(rate(pulse_inference_cache_requests_total{{{mi},result="hit"}}[{RI}])) / sum(rate(pulse_inference_cache_requests_total{{{mi}}}[{RI}]))',
                   unit="percentunit"), 6, 4)
        b.add(timeseries("Predictions per second by model and role", targets((
            f"sum by (model, role) (rate(pulse_predictions_total{{{mi}}}[{RI}]))", "{{model}} {{role}}")), stack=True))
        b.add(timeseries("Prediction outcomes (non-OK)", targets((
            f'sum by (model, outcome) (rate(pulse_predictions_total{{{mi},outcome!~"(?i)ok"}}[{RI}]))', "{{model}} {{outcome}}")),
            stack=True))
        b.add(timeseries("Prediction latency p50 / p99 by model", targets(
            (f"histogram_quantile(0.5, sum by (le, model) (rate(pulse_prediction_latency_seconds_bucket{{{mi}}}[{RI}])))", "p50 {{model}}"),
            (f"histogram_quantile(0.99, sum by (le, model) (rate(pulse_prediction_latency_seconds_bucket{{{mi}}}[{RI}])))", "p99 {{model}}"),
        ), unit="s", desc="Alert PulsePredictionLatencyHigh fires when p99 stays above 100ms for 10 minutes."))
        b.add(timeseries("Predictions by model version", targets((
            f"sum by (model, version) (rate(pulse_predictions_total{{{mi}}}[{RI}]))", "{{model}} v{{version}}")), stack=True,
            desc="Traffic split during canary and shadow rollouts."))
        b.row("Batching, cache and breaker")
        b.add(timeseries("Batch size p50 / p95 by model", targets(
            (f"histogram_quantile(0.5, sum by (le, model) (rate(pulse_inference_batch_size_bucket{{{mi}}}[{RI}])))", "p50 {{model}}"),
            (f"histogram_quantile(0.95, sum by (le, model) (rate(pulse_inference_batch_size_bucket{{{mi}}}[{RI}])))", "p95 {{model}}"),
        ), desc="Rows per model call (micro-batches)."), 8)
        b.add(heatmap("Batch size distribution", f"sum by (le) (increase(pulse_inference_batch_size_bucket{{{mi}}}[{RI}]))"), 8)
        b.add(timeseries("Queue depth by model", targets((f"max by (model) (pulse_inference_queue_depth{{{mi}}})", "{{model}}")),
                         minimum=0, desc="Requests waiting for a model call; alert PulseInferenceQueueBacklog above 1000 for 5m."), 8)
        b.add(timeseries("Cache hit ratio by model", targets((
            f'sum by (model) (rate(pulse_inference_cache_requests_total{{{mi},result="hit"}}[{RI}])) / sum by (model) (rate(pulse_inference_cache_requests_total{{{mi}}}[{RI}]))',
            "{{model}}")), unit="percentunit", minimum=0, maximum=1))
        b.add(state_timeline("Circuit breaker state", f"max by (model) (pulse_inference_breaker_state{{{mi}}})", "{{model}}",
                             BREAKER_MAPPINGS, desc="closed, open (requests rejected) or half-open (probing)."))

    if name == "drift":
        mi = f'model=~"$model",{inst}'
        b.row("Drift")
        b.add(stat("Drift detections", f"sum(increase(pulse_drift_detected_total{{{mi}}}[$__range])) or vector(0)", decimals=0,
                   thr=thresholds("green", (1, "orange")), desc="In the selected time range."), 8, 4)
        b.add(stat("Pipeline runs succeeded", f'sum(increase(pulse_pipeline_runs_total{{{inst},status="succeeded"}}[$__range])) or vector(0)',
                   decimals=0), 8, 4)
        b.add(stat("Pipeline runs failed", f'sum(increase(pulse_pipeline_runs_total{{{inst},status="failed"}}[$__range])) or vector(0)',
                   decimals=0, thr=thresholds("green", (1, "orange"))), 8, 4)
        b.add(timeseries("Drift score by feature", targets((f"max by (model, feature, metric) (pulse_drift_score{{{mi}}})",
                                                            "{{model}} {{feature}} {{metric}}"))))
        b.add(timeseries("Drift detections by model", targets((
            f"sum by (model) (increase(pulse_drift_detected_total{{{mi}}}[{RI}]))", "{{model}}")), bars=True, stack=True))
        b.add(timeseries("Pipeline runs by pipeline and status", targets((
            f"sum by (pipeline, status) (increase(pulse_pipeline_runs_total{{{inst}}}[{RI}]))", "{{pipeline}} {{status}}")),
            bars=True, stack=True), 24, 7)
        b.row("Pipeline jobs")
        jobs_section(b, "pipeline", inst)

    if name == "lineage":
        m = f'service="{svc}",{inst}'
        b.row("Graph")
        b.add(timeseries("Writes per second (Record*)", targets((
            f'sum by (method) (rate(pulse_grpc_requests_total{{{m},method=~"Record.*"}}[{RI}]))', "{{method}}")), unit="reqps",
            stack=True, desc="Nodes and edges recorded by the other services."))
        b.add(timeseries("Trace / Impact latency p99", targets((
            f'histogram_quantile(0.99, sum by (le, method) (rate(pulse_grpc_request_duration_seconds_bucket{{{m},method=~"Trace|Impact"}}[{RI}])))',
            "{{method}}")), unit="s", desc="Graph walks; grows with depth and node limits."))

    rpc_section(b, svc, sel)
    return b


def ml():
    m = 'model=~"$model"'
    b = Board(
        "pulse-ml",
        "Pulse / ML",
        "Models across services: training progress and loss, inference latency, batching and cache, drift per feature.",
        [
            variable("model", "Model", "label_values(model)"),
            variable("metric", "Drift statistic", "label_values(pulse_drift_score, metric)"),
        ],
    )
    b.row("Training")
    b.add(timeseries("Training loss by model and split", targets((f"pulse_training_loss{{{m}}}", "{{model}} {{split}}")),
                     desc="train and validation loss reported at the end of each epoch."))
    b.add(timeseries("Epochs completed", targets((f"sum by (model) (increase(pulse_training_epochs_total{{{m}}}[{RI}]))", "{{model}}")),
                     bars=True, stack=True))
    b.add(stat("Training jobs queued", 'max(pulse_jobs_queued{kind="training"}) or vector(0)',
               thr=thresholds("green", (10, "orange"), (20, "red"))), 6, 4)
    b.add(stat("Training jobs succeeded", 'sum(increase(pulse_jobs_finished_total{kind="training",status="succeeded"}[$__range])) or vector(0)',
               decimals=0), 6, 4)
    b.add(stat("Training jobs failed", 'sum(increase(pulse_jobs_finished_total{kind="training",status="failed"}[$__range])) or vector(0)',
               decimals=0, thr=thresholds("green", (1, "orange"))), 6, 4)
    b.add(stat("Workers active", "max(pulse_training_workers_active) or vector(0)"), 6, 4)

    b.row("Inference")
    b.add(timeseries("Prediction latency p50 / p99", targets(
        (f"histogram_quantile(0.5, sum by (le, model) (rate(pulse_prediction_latency_seconds_bucket{{{m}}}[{RI}])))", "p50 {{model}}"),
        (f"histogram_quantile(0.99, sum by (le, model) (rate(pulse_prediction_latency_seconds_bucket{{{m}}}[{RI}])))", "p99 {{model}}"),
    ), unit="s"))
    b.add(timeseries("Predictions per second by outcome", targets((
        f"sum by (model, outcome) (rate(pulse_predictions_total{{{m}}}[{RI}]))", "{{model}} {{outcome}}")), stack=True))
    b.add(timeseries("Batch size p50 / p95", targets(
        (f"histogram_quantile(0.5, sum by (le, model) (rate(pulse_inference_batch_size_bucket{{{m}}}[{RI}])))", "p50 {{model}}"),
        (f"histogram_quantile(0.95, sum by (le, model) (rate(pulse_inference_batch_size_bucket{{{m}}}[{RI}])))", "p95 {{model}}"),
    ), desc="Rows per model call; mean = rate(_sum) / rate(_count)."), 8)
    b.add(timeseries("Mean batch size", targets((
        f"sum by (model) (rate(pulse_inference_batch_size_sum{{{m}}}[{RI}])) / sum by (model) (rate(pulse_inference_batch_size_count{{{m}}}[{RI}]))",
        "{{model}}")), minimum=0), 8)
    b.add(timeseries("Cache hit ratio", targets((
        f'sum by (model) (rate(pulse_inference_cache_requests_total{{{m},result="hit"}}[{RI}])) / sum by (model) (rate(pulse_inference_cache_requests_total{{{m}}}[{RI}]))',
        "{{model}}")), unit="percentunit", minimum=0, maximum=1), 8)

    b.row("Drift")
    dm = f'{m},metric=~"$metric"'
    b.add(timeseries("Drift score per feature", targets((f"max by (model, feature, metric) (pulse_drift_score{{{dm}}})",
                                                        "{{model}} {{feature}} ({{metric}})")),
                     desc="Latest score of each feature against the training baseline, per statistic (psi, ks, js, wasserstein, chi2)."), 16, 9)
    b.add(bargauge("Current drift score by feature", f"max by (feature) (pulse_drift_score{{{dm}}})", "{{feature}}",
                   thr=thresholds("green", (0.1, "orange"), (0.25, "red")),
                   desc="Colour steps follow the usual PSI reading (0.1 moderate, 0.25 significant); other statistics have their own scales."),
          8, 9)
    b.add(timeseries("Drift detections", targets((f"sum by (model) (increase(pulse_drift_detected_total{{{m}}}[{RI}]))", "{{model}}")),
                     bars=True, stack=True))
    b.add(timeseries("Retraining pipeline runs by status", targets((
        f"sum by (status) (increase(pulse_pipeline_runs_total[{RI}]))", "{{status}}")), bars=True, stack=True))
    return b


def boards():
    yield overview()
    for name in SERVICES:
        yield service_board(name)
    yield ml()


def main(argv):
    check = "--check" in argv
    stale = []
    OUT.mkdir(parents=True, exist_ok=True)
    for b in boards():
        path = OUT / f"{b.uid}.json"
        text = json.dumps(b.json(), indent=2) + "\n"
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(OUT.parent.parent.parent)}")
    if stale:
        print("stale dashboards (run python3 observability/grafana/build_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
