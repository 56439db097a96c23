#!/usr/bin/env bash
# Checks observability/: the Prometheus config and alert rules (promtool),
# the alert unit tests, the Grafana dashboards (JSON, structure, PromQL
# syntax, generated files up to date) and the metric-name extraction.
#
#   bash scripts/check_observability.sh
#   PULSE_METRICS_FILE=metrics.txt bash scripts/check_observability.sh
#       also checks that every metric the dashboards and alerts use is in
#       that exposition (curl -s localhost:9464/metrics > metrics.txt).
#
# Needs python3 and promtool. Without promtool, as root with apt, it installs
# Debian's `prometheus` package (which ships promtool) without starting the
# prometheus daemon.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OBS=observability
PROM=$OBS/prometheus
DASH=$OBS/grafana/dashboards

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

tmp=$(mktemp -d)
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT

install_promtool() {
    [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || return 1
    echo "promtool not found: installing Debian's prometheus package (daemon not started)"
    # policy-rc.d exit 101 forbids maintainer scripts to start services.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >"$tmp/apt.log" 2>&1 \
        || { apt-get update >>"$tmp/apt.log" 2>&1 \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus >>"$tmp/apt.log" 2>&1; }; } || rc=$?
    [[ $own_policy -eq 1 ]] && rm -f "$policy"
    # Under systemd a unit may still have been started: stop it (we installed it).
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        systemctl stop prometheus.service >/dev/null 2>&1 || true
        systemctl disable prometheus.service >/dev/null 2>&1 || true
    fi
    if [[ $rc -ne 0 ]]; then tail -n 20 "$tmp/apt.log" >&2; return 1; fi
    command -v promtool >/dev/null
}

step "promtool"
if ! command -v promtool >/dev/null; then
    install_promtool || fail "promtool is missing: apt-get install prometheus"
fi
promtool --version 2>&1 | head -n 1

step "promtool check config"
promtool check config "$PROM/prometheus.yml"

step "promtool check rules"
promtool check rules "$PROM/alerts.yml"

step "promtool test rules"
promtool test rules "$PROM/alerts_test.yml"

step "every alert has a firing and a not-firing test"
python3 - "$PROM/alerts.yml" "$PROM/alerts_test.yml" <<'EOF'
import re, sys
alerts = re.findall(r"^\s*-\s*alert:\s*(\S+)", open(sys.argv[1]).read(), re.M)
lines = open(sys.argv[2]).read().splitlines()
fires, silent = set(), set()
for i, line in enumerate(lines):
    m = re.match(r"\s*alertname:\s*(\S+)", line)
    if not m:
        continue
    nxt = next((l for l in lines[i + 1:] if l.strip()), "")
    (silent if re.match(r"\s*exp_alerts:\s*\[\s*\]", nxt) else fires).add(m.group(1))
bad = [f"{a}: {'no firing test' if a not in fires else ''}{' ' if a not in fires and a not in silent else ''}{'no not-firing test' if a not in silent else ''}"
       for a in alerts if a not in fires or a not in silent]
unknown = sorted((fires | silent) - set(alerts))
if bad or unknown:
    print("\n".join(bad + [f"tested but not defined: {u}" for u in unknown]))
    sys.exit(1)
print(f"{len(alerts)} alerts, each tested firing and not firing")
EOF

step "dashboards: generated files up to date"
python3 "$OBS/grafana/build_dashboards.py" --check || fail "dashboards differ from build_dashboards.py"
echo "up to date"

step "dashboards: JSON and structure"
python3 - "$DASH" "$tmp/dashboard_rules.json" "$tmp/dashboard_rules.idx" <<'EOF'
import json, re, sys
from pathlib import Path

DS = {"type": "prometheus", "uid": "prometheus"}
errors, uids, exprs = [], {}, []
files = sorted(Path(sys.argv[1]).glob("*.json"))
required = {f"pulse-{n}.json" for n in
            ("overview", "datasource", "snapshot", "trainer", "inference", "lineage", "drift", "ml")}
for name in sorted(required - {f.name for f in files}):
    errors.append(f"{name}: missing")

def panels(ps):
    for p in ps:
        yield p
        yield from panels(p.get("panels", []))

for f in files:
    try:
        d = json.loads(f.read_text())
    except ValueError as e:
        errors.append(f"{f.name}: invalid JSON: {e}")
        continue
    where = f.name
    for key, want in (("schemaVersion", 39),):
        if d.get(key) != want:
            errors.append(f"{where}: {key} is {d.get(key)!r}, want {want!r}")
    if not d.get("uid") or not d.get("title"):
        errors.append(f"{where}: uid and title are required")
    if d.get("uid") in uids:
        errors.append(f"{where}: uid {d['uid']} also in {uids[d['uid']]}")
    uids[d.get("uid")] = where
    if "pulse" not in d.get("tags", []):
        errors.append(f"{where}: tags must include pulse")
    ids = set()
    for p in panels(d.get("panels", [])):
        title = f"{where}: panel {p.get('id')} {p.get('title', '')!r}"
        if p.get("id") in ids:
            errors.append(f"{title}: duplicate id")
        ids.add(p.get("id"))
        gp = p.get("gridPos", {})
        if not all(isinstance(gp.get(k), int) for k in ("h", "w", "x", "y")) or gp["x"] + gp["w"] > 24:
            errors.append(f"{title}: bad gridPos {gp}")
        if p.get("type") == "row":
            continue
        if p.get("datasource") != DS:
            errors.append(f"{title}: datasource must be {DS}")
        if not p.get("targets"):
            errors.append(f"{title}: no targets")
        for t in p.get("targets", []):
            if not (t.get("expr") or "").strip():
                errors.append(f"{title}: target {t.get('refId')} has no expr")
            else:
                exprs.append((title, t["expr"]))
            if t.get("datasource", DS) != DS:
                errors.append(f"{title}: target datasource must be {DS}")
    for v in d.get("templating", {}).get("list", []):
        if v.get("type") == "query" and v.get("datasource") != DS:
            errors.append(f"{where}: variable {v.get('name')}: datasource must be {DS}")

# Every expression as a recording rule, so promtool parses its PromQL
# (Grafana variables replaced by plausible values).
def concrete(e):
    e = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", e)
    return re.sub(r"\$\{?\w+\}?", ".*", e)
rules = [{"record": f"pulse_dashboard_expr_{i}", "expr": concrete(e)} for i, (_, e) in enumerate(exprs)]
Path(sys.argv[2]).write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}))
Path(sys.argv[3]).write_text("".join(f"pulse_dashboard_expr_{i}\t{t}\n" for i, (t, _) in enumerate(exprs)))
if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"{len(files)} dashboards, {len(exprs)} panel queries")
EOF

step "dashboards: PromQL parses"
if ! promtool check rules "$tmp/dashboard_rules.json" >"$tmp/promql.log" 2>&1; then
    cat "$tmp/promql.log"
    for rule in $(grep -o 'pulse_dashboard_expr_[0-9]*' "$tmp/promql.log" | sort -u); do
        grep -P "^$rule\t" "$tmp/dashboard_rules.idx" | cut -f2-
    done
    fail "a dashboard expression does not parse"
fi
grep -o 'SUCCESS.*' "$tmp/promql.log"

step "metric names"
python3 scripts/observability_metrics.py selftest
python3 scripts/observability_metrics.py list >"$tmp/metrics.txt"
[[ -s $tmp/metrics.txt ]] || fail "no metric referenced by the dashboards and alerts"
# Each referenced metric is in the README's catalog table.
missing=$(grep -oE '^\| `[a-z_:]+`' "$OBS/README.md" | tr -d '|` ' | sort -u | comm -13 - <(sort "$tmp/metrics.txt"))
[[ -z $missing ]] || fail "referenced but not in the $OBS/README.md catalog: $missing"
echo "$(wc -l <"$tmp/metrics.txt") referenced metrics, all in the README catalog"
if [[ -n ${PULSE_METRICS_FILE:-} ]]; then
    python3 scripts/observability_metrics.py check "$PULSE_METRICS_FILE"
fi

printf '\nobservability: all checks passed\n'
