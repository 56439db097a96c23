#!/usr/bin/env python3
"""The metric names the Pulse dashboards and alert rules depend on.

    python3 scripts/observability_metrics.py list
        Every metric referenced by a PromQL expression in
        observability/grafana/dashboards/*.json (panel targets and template
        variable queries) and observability/prometheus/alerts.yml, one per line.
        Histogram series (_bucket, _sum, _count) are listed under their base
        name, the name in the exposition's `# TYPE` line. Metrics Prometheus
        makes itself (up, ALERTS, ...) are left out.

    python3 scripts/observability_metrics.py check METRICS.txt
        Exit 1 and name each referenced metric absent from METRICS.txt (a
        Prometheus text exposition, e.g. `curl -s host:9464/metrics`, or several
        concatenated); 0 when all are present. A metric is present when its
        `# TYPE` line or one of its samples (for a histogram, NAME_bucket,
        NAME_sum or NAME_count) appears.

    python3 scripts/observability_metrics.py selftest
        Checks the extraction on known expressions (also: python3 -m doctest).

Python 3 standard library only.
"""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = ROOT / "observability" / "grafana" / "dashboards"
ALERTS = ROOT / "observability" / "prometheus" / "alerts.yml"

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# Series Prometheus itself creates: never in a service's exposition.
SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds", "scrape_samples_scraped",
             "scrape_samples_post_metric_relabeling", "scrape_series_added"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "and", "or", "unless", "atan2", "inf", "nan"}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
                "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
# Keywords followed by a parenthesised list of label names.
LABEL_LISTS = ("by", "without", "on", "ignoring", "group_left", "group_right")

_TOKEN = re.compile(
    r"""
      (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<var>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])
    | (?P<dur>(?:\d+(?:ms|s|m|h|d|w|y))+\b)
    | (?P<num>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    | (?P<space>\s+)
    | (?P<op>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokens(expr):
    """(kind, text) pairs, whitespace dropped."""
    return [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr) if m.lastgroup != "space"]


def metric_names(expr):
    """Metric names an expression selects, histogram suffixes stripped.

    >>> metric_names('histogram_quantile(0.99, sum by (le, model) (rate(pulse_prediction_latency_seconds_bucket[5m])))')
    ['pulse_prediction_latency_seconds']
    >>> metric_names('sum by (job) (up)')
    []
    >>> metric_names('label_values(pulse_grpc_requests_total{service="x"}, method)')
    ['pulse_grpc_requests_total']
    >>> metric_names('label_values(model)')
    []
    """
    toks = _tokens(expr)
    names = []
    depth_brace = depth_bracket = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        if kind == "op":
            if text == "{":
                depth_brace += 1
            elif text == "}":
                depth_brace -= 1
            elif text == "[":
                depth_bracket += 1
            elif text == "]":
                depth_bracket -= 1
            i += 1
            continue
        if kind != "ident" or depth_brace or depth_bracket:
            i += 1
            continue
        nxt = toks[i + 1] if i + 1 < len(toks) else (None, None)
        low = text.lower()
        if low in LABEL_LISTS and nxt[1] == "(":
            # skip the label list: by (a, b)
            j = i + 2
            while j < len(toks) and toks[j][1] != ")":
                j += 1
            i = j + 1
            continue
        if text == "label_values" and nxt[1] == "(":
            # Grafana: label_values(label) or label_values(selector, label)
            j, depth, args = i + 2, 1, [[]]
            while j < len(toks) and depth:
                t = toks[j][1]
                if t in "({[":
                    depth += 1
                elif t in ")}]":
                    depth -= 1
                if depth == 1 and t == ",":
                    args.append([])
                elif depth:
                    args[-1].append(toks[j])
                j += 1
            if len(args) >= 2:
                names += metric_names("".join(t for _, t in args[0]))
            i = j
            continue
        if nxt[1] == "(" or low in KEYWORDS or low in AGGREGATIONS:
            i += 1  # a function, an aggregation or a keyword
            continue
        names.append(text)
        i += 1
    out = []
    for n in names:
        for suffix in HISTOGRAM_SUFFIXES:
            if n.endswith(suffix):
                n = n[: -len(suffix)]
                break
        if n not in SYNTHETIC and n not in out:
            out.append(n)
    return out


def dashboard_exprs(path):
    """(where, expr) for every panel target and template variable query."""
    board = json.loads(Path(path).read_text())

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(board.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield f"{Path(path).name}: {p.get('title', '')}", t["expr"]
    for v in board.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            yield f"{Path(path).name}: ${v.get('name')}", q


def alert_exprs(path):
    """(where, expr) for every rule in a rules file: `expr:` scalars and `|` blocks.

    A small reader for the layout of alerts.yml (no YAML library needed).
    """
    lines = Path(path).read_text().splitlines()
    name = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"\s*-?\s*(alert|record):\s*(\S+)", line)
        if m:
            name = m.group(2)
        m = re.match(r"(\s*)expr:\s*(.*)$", line)
        if m:
            indent, rest = len(m.group(1)), m.group(2).strip()
            if rest in ("|", "|-", ">", ">-"):
                body = []
                i += 1
                while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                    body.append(lines[i].strip())
                    i += 1
                yield f"{Path(path).name}: {name}", " ".join(body)
                continue
            if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in "'\"":
                rest = rest[1:-1]
            yield f"{Path(path).name}: {name}", rest
        i += 1


def referenced():
    """{metric: [where, ...]} over the dashboards and the alert rules."""
    refs = {}
    sources = [e for f in sorted(DASHBOARDS.glob("*.json")) for e in dashboard_exprs(f)]
    sources += list(alert_exprs(ALERTS))
    for where, expr in sources:
        for n in metric_names(expr):
            refs.setdefault(n, [])
            if where not in refs[n]:
                refs[n].append(where)
    return refs


def exposed(text):
    """Names in a text exposition: `# TYPE` names and sample names."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            parts = line.split()
            if len(parts) >= 3:
                names.add(parts[2])
        elif line and not line.startswith("#"):
            m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
            if m:
                names.add(m.group())
    return names


def present(metric, names):
    """True when `metric` (a base name) is in the exposition's `names`.

    >>> present("pulse_prediction_latency_seconds", {"pulse_prediction_latency_seconds_bucket"})
    True
    >>> present("pulse_jobs_queued", {"pulse_jobs_queued_total"})
    False
    """
    return any(metric + s in names for s in ("",) + HISTOGRAM_SUFFIXES)


SELFTEST = [
    ("histogram_quantile(0.99, sum by (le, model) (rate(pulse_prediction_latency_seconds_bucket[5m])))",
     ["pulse_prediction_latency_seconds"]),
    ('sum by (service) (rate(pulse_grpc_requests_total{service=~"$service",code=~"INTERNAL|UNAVAILABLE"}[$__rate_interval]))'
     ' / sum by (service) (rate(pulse_grpc_requests_total{service=~"$service"}[$__rate_interval]))',
     ["pulse_grpc_requests_total"]),
    ('(sum by (job, kind) (increase(pulse_jobs_finished_total{status="failed"}[15m])) > 0) or '
     '(sum by (job, kind) (pulse_jobs_finished_total{status="failed"} unless pulse_jobs_finished_total{status="failed"} offset 15m) > 0)',
     ["pulse_jobs_finished_total"]),
    ("(pulse_tls_certificate_expiry_timestamp_seconds - time()) < 14 * 86400", ["pulse_tls_certificate_expiry_timestamp_seconds"]),
    ("count(pulse_inference_breaker_state == 1) or vector(0)", ["pulse_inference_breaker_state"]),
    ('count(ALERTS{alertstate="firing"}) or vector(0) + sum(up{job!="prometheus"})', []),
    ("sum by (model) (rate(pulse_inference_batch_size_sum[1h30m])) / sum by (model) (rate(pulse_inference_batch_size_count[1h30m]))",
     ["pulse_inference_batch_size"]),
    ("max_over_time(pulse_training_loss[10m:1m] offset 1h) > 1e3 and on (model) group_left (split) pulse_training_epochs_total",
     ["pulse_training_loss", "pulse_training_epochs_total"]),
    ('label_replace(pulse_drift_score, "f", "$1", "feature", "(.*)")', ["pulse_drift_score"]),
    ("label_values(pulse_grpc_requests_total{service=\"pulse.inference.v1.InferenceService\"}, instance)", ["pulse_grpc_requests_total"]),
    ("label_values(model)", []),
    ("topk(5, sum without (instance) (pulse_checkpoint_save_seconds_count))", ["pulse_checkpoint_save_seconds"]),
    ("pulse_checkpoint_bytes_total @ end()", ["pulse_checkpoint_bytes_total"]),
]


def selftest():
    failures = 0
    for expr, want in SELFTEST:
        got = metric_names(expr)
        if got != want:
            failures += 1
            print(f"FAIL {expr}\n  want {want}\n  got  {got}")
    exposition = (
        "# HELP pulse_prediction_latency_seconds x\n# TYPE pulse_prediction_latency_seconds histogram\n"
        'pulse_prediction_latency_seconds_bucket{model="m",le="0.1"} 1\n'
        'pulse_inference_queue_depth{model="m"} 0\n'
    )
    names = exposed(exposition)
    for metric, want in [("pulse_prediction_latency_seconds", True), ("pulse_inference_queue_depth", True),
                         ("pulse_inference_batch_size", False)]:
        if present(metric, names) != want:
            failures += 1
            print(f"FAIL present({metric}) != {want}")
    import doctest
    failures += doctest.testmod(sys.modules[__name__]).failed
    print(f"selftest: {len(SELFTEST) + 3} cases, {failures} failed")
    return 1 if failures else 0


def main(argv):
    if argv[:1] == ["list"] and len(argv) == 1:
        for name in sorted(referenced()):
            print(name)
        return 0
    if argv[:1] == ["check"] and len(argv) == 2:
        names = set()
        for path in argv[1:]:
            names |= exposed(Path(path).read_text())
        missing = {m: w for m, w in sorted(referenced().items()) if not present(m, names)}
        for m, where in missing.items():
            print(f"missing: {m}  (used by {'; '.join(where[:3])}{' ...' if len(where) > 3 else ''})")
        if missing:
            print(f"{len(missing)} referenced metric(s) absent from {argv[1]}")
            return 1
        print("all referenced metrics are present")
        return 0
    if argv == ["selftest"]:
        return selftest()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
