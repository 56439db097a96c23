#!/usr/bin/env bash
# Static checks of terraform/ that need no AWS account and no Terraform
# providers:
#   1. every .tf file parses (python-hcl2);
#   2. `terraform fmt -check`, when a terraform binary is on PATH (skipped otherwise);
#   3. prod keeps what the per-environment waivers rely on (deletion
#      protection, Multi-AZ, no force_destroy; set in environments/prod and
#      passed on by modules/stack), and every inline checkov waiver is listed
#      in terraform/WAIVERS.md;
#   4. checkov's Terraform checks, with terraform/.checkov.yaml: any failed
#      check fails this script.
# The tools live in a virtualenv at $PULSE_INFRA_VENV (default
# ~/.cache/pulse-infra-venv), created and filled from PyPI on first use.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
TF_DIR=$ROOT/terraform
VENV=${PULSE_INFRA_VENV:-$HOME/.cache/pulse-infra-venv}

# Pinned. checkov ships its own HCL parser (bc-python-hcl2) under the same
# import name `hcl2`, so python-hcl2 goes into a directory of its own.
CHECKOV_VERSION=3.3.30
PYTHON_HCL2_VERSION=8.1.4
HCL2_DIR=$VENV/python-hcl2-$PYTHON_HCL2_VERSION

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\ncheck_terraform: %s\n' "$*" >&2; exit 1; }

[ -d "$TF_DIR" ] || die "no terraform/ directory at $TF_DIR"
command -v python3 >/dev/null || die "python3 is missing: install it (Debian: apt-get install python3 python3-venv)"

# ---- tools ---------------------------------------------------------------------

if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtualenv $VENV"
  python3 -m venv "$VENV" \
    || die "cannot create a virtualenv at $VENV: python3's venv module is missing (Debian: apt-get install python3-venv)"
fi
PY=$VENV/bin/python

if [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("checkov"))' 2>/dev/null || true)" != "$CHECKOV_VERSION" ]; then
  say "installing checkov $CHECKOV_VERSION into $VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" \
    || die "pip could not install checkov==$CHECKOV_VERSION from PyPI into $VENV: checkov is missing, so the policy checks cannot run"
fi

if [ ! -f "$HCL2_DIR/.installed" ]; then
  say "installing python-hcl2 $PYTHON_HCL2_VERSION into $HCL2_DIR"
  rm -rf "$HCL2_DIR"
  "$PY" -m pip install --quiet --disable-pip-version-check --target "$HCL2_DIR" "python-hcl2==$PYTHON_HCL2_VERSION" \
    || die "pip could not install python-hcl2==$PYTHON_HCL2_VERSION from PyPI into $HCL2_DIR: python-hcl2 is missing, so the .tf files cannot be parsed"
  touch "$HCL2_DIR/.installed"
fi

# ---- 1. parse ---------------------------------------------------------------------

say "parsing terraform/**/*.tf with python-hcl2 $PYTHON_HCL2_VERSION"
PYTHONPATH=$HCL2_DIR "$PY" - "$TF_DIR" <<'PY'
import pathlib, sys
import hcl2

root = pathlib.Path(sys.argv[1])
files = sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)
if not files:
    sys.exit(f"no .tf files under {root}")
failed = []
for path in files:
    try:
        with path.open() as f:
            hcl2.load(f)
    except Exception as e:  # the parser raises lark errors of several kinds
        failed.append(path)
        print(f"PARSE ERROR {path.relative_to(root.parent)}: {e}", file=sys.stderr)
if failed:
    sys.exit(f"{len(failed)} of {len(files)} .tf files do not parse: " + ", ".join(str(p.relative_to(root.parent)) for p in failed))
print(f"{len(files)} .tf files parsed")
PY

# ---- 2. format ------------------------------------------------------------------------

if command -v terraform >/dev/null; then
  say "terraform fmt -check -recursive terraform/"
  # fmt reads no CLI configuration (and so cannot warn about a missing one).
  TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff "$TF_DIR" \
    || die "terraform/ is not formatted: run terraform fmt -recursive terraform/"
  echo "formatted"
else
  say "terraform is not on PATH: skipping terraform fmt -check"
fi

# ---- 3. invariants and the waiver register -------------------------------------------------

say "checking prod invariants and the waiver register (terraform/WAIVERS.md)"
PYTHONPATH=$HCL2_DIR "$PY" - "$TF_DIR" <<'PY'
import pathlib, re, sys
import hcl2

root = pathlib.Path(sys.argv[1])
problems = []

# The waivers of CKV_AWS_150 (ALB deletion protection), CKV_AWS_157 (RDS
# Multi-AZ) and CKV_AWS_293 (RDS deletion protection) rest on prod setting
# these; dev may not. Prod sets them on its one `module "stack"` call, and
# modules/stack must hand them, unchanged and without defaults, to the
# modules whose resources carry the waivers.
def load(rel):
    with (root / rel).open() as f:
        return hcl2.load(f)

def blocks(doc, kind):
    # (python-hcl2 8 keeps the quotes of block labels: "\"rds\"")
    return {name.strip('"'): body for block in doc.get(kind, []) for name, body in block.items()}

prod = blocks(load("environments/prod/main.tf"), "module")
stack = prod.get("stack", {})
if str(stack.get("source")).strip('"') != "../../modules/stack":
    problems.append(f"environments/prod/main.tf: module stack must have source = \"../../modules/stack\" (found {stack.get('source')!r})")
expect = {
    "database_multi_az": True,
    "deletion_protection": True,
    "force_destroy_buckets": False,
}
for arg, want in expect.items():
    got = stack.get(arg)
    if got is not want:
        problems.append(f"environments/prod/main.tf: module stack must set {arg} = {str(want).lower()} (found {got!r})")

inner = blocks(load("modules/stack/main.tf"), "module")
wiring = {
    ("rds", "multi_az"): "database_multi_az",
    ("rds", "deletion_protection"): "deletion_protection",
    ("ecs", "deletion_protection"): "deletion_protection",
    ("s3", "force_destroy"): "force_destroy_buckets",
}
for (module, arg), var in wiring.items():
    got = inner.get(module, {}).get(arg)
    if got != f"${{var.{var}}}":
        problems.append(f"modules/stack/main.tf: module {module} must set {arg} = var.{var} (found {got!r})")
stack_vars = blocks(load("modules/stack/variables.tf"), "variable")
for var in sorted(set(wiring.values())):
    if var not in stack_vars:
        problems.append(f"modules/stack/variables.tf: variable {var} is missing")
    elif "default" in stack_vars[var]:
        problems.append(f"modules/stack/variables.tf: variable {var} must have no default (every environment sets it)")

# Every inline `#checkov:skip=ID:reason` has a reason and a row in WAIVERS.md.
register = (root / "WAIVERS.md").read_text()
rows = set(re.findall(r"^\|\s*`?(CKV2?_[A-Z]+_\d+)`?\s*\|\s*`?([\w.\-\[\]\"]+)`?\s*\|", register, re.M))
skip = re.compile(r"#\s*checkov:skip=(CKV2?_[A-Z]+_\d+)(?::(.*))?")
count = 0
for path in sorted(root.rglob("*.tf")):
    resource = None
    for line in path.read_text().splitlines():
        m = re.match(r'\s*(?:resource|data)\s+"([\w-]+)"\s+"([\w-]+)"', line)
        if m:
            resource = f"{m.group(1)}.{m.group(2)}"
        m = skip.search(line)
        if not m:
            continue
        count += 1
        where = f"{path.relative_to(root)}: {m.group(1)} on {resource}"
        if not (m.group(2) or "").strip():
            problems.append(f"{where} has no reason")
        if (m.group(1), resource) not in rows:
            problems.append(f"{where} is not listed in terraform/WAIVERS.md")

if problems:
    sys.exit("\n".join(problems))
print(f"prod invariants hold; {count} inline waivers, all with reasons and listed in WAIVERS.md")
PY

# ---- 4. checkov --------------------------------------------------------------------------------

say "checkov $CHECKOV_VERSION over terraform/ (terraform/.checkov.yaml)"
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
set +e
# --skip-download: no Prisma Cloud guideline download (only PyPI is reachable).
BC_SKIP_MAPPING=TRUE "$VENV/bin/checkov" \
  --config-file "$TF_DIR/.checkov.yaml" \
  --directory "$TF_DIR" \
  --quiet --compact --skip-download \
  --output cli --output json --output-file-path console,"$report/results.json"
checkov_rc=$?
set -e

"$PY" - "$report/results.json" "$checkov_rc" <<'PY'
import json, sys

path, rc = sys.argv[1], int(sys.argv[2])
try:
    data = json.load(open(path))
except (OSError, ValueError) as e:
    sys.exit(f"checkov wrote no readable report ({e}); it exited {rc}")
reports = data if isinstance(data, list) else [data]
passed = failed = skipped = 0
for r in reports:
    s = r.get("summary", {})
    passed += s.get("passed", 0)
    failed += s.get("failed", 0)
    skipped += s.get("skipped", 0)
print(f"\ncheckov: {passed} passed, {failed} failed, {skipped} skipped")
if failed or rc != 0:
    sys.exit(f"checkov reports {failed} failed check(s) (exit {rc}); fix them, or waive one with a specific reason (terraform/WAIVERS.md)")
PY
