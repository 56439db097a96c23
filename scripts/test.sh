#!/usr/bin/env bash
# The test driver behind `make test`: makes sure what the suite needs is
# there (PostgreSQL up, an S3-compatible server, the Python tool chain),
# starting or installing it when it can, and says what is missing when not.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pulse-target}
VENV=${VENV:-$ROOT/.venv}
what=${1:-all}

say() { printf '\n==> %s\n' "$*"; }
die() { printf '\nmake test: %s\n' "$*" >&2; exit 1; }

need_cargo() {
  command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (https://rustup.rs)"
}

need_postgres() {
  export PULSE_TEST_DATABASE_URL=${PULSE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  if pg_up; then return; fi
  say "PostgreSQL is down on 127.0.0.1:5432; trying to start it"
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_up && return; sleep 1; done
  die "PostgreSQL is not reachable at $PULSE_TEST_DATABASE_URL. Install and start it (Debian: apt-get install postgresql; trust auth for 127.0.0.1), or set PULSE_TEST_DATABASE_URL."
}

pg_up() {
  python3 - "$PULSE_TEST_DATABASE_URL" <<'PY' 2>/dev/null
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
s = socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=2)
s.close()
PY
}

need_venv() {
  command -v python3 >/dev/null || die "python3 is missing: install CPython 3.9+ with pip and venv"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed: install the venv module (Debian: apt-get install python3-venv)"
  fi
  local missing=()
  "$VENV/bin/python" -c 'import maturin' 2>/dev/null || missing+=("maturin>=1.9.4,<2")
  "$VENV/bin/python" -c 'import pytest' 2>/dev/null || missing+=("pytest>=8")
  "$VENV/bin/python" -c 'import moto.server, flask_cors' 2>/dev/null || missing+=("moto[server]>=5.0")
  "$VENV/bin/python" -c 'import pyarrow' 2>/dev/null || missing+=("pyarrow>=14")
  "$VENV/bin/python" -c 'import tqdm' 2>/dev/null || missing+=("tqdm")
  # The quick-start notebook runs in the suite; SciPy checks drift values.
  "$VENV/bin/python" -c 'import nbclient, nbformat, ipykernel' 2>/dev/null || missing+=("nbclient" "nbformat" "ipykernel")
  "$VENV/bin/python" -c 'import scipy' 2>/dev/null || missing+=("scipy")
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} into $VENV"
    "$VENV/bin/pip" install --quiet "${missing[@]}" || die "pip could not install ${missing[*]} (is PyPI reachable?)"
  fi
}

S3_PID=""
need_s3() {
  if [ -n "${PULSE_TEST_S3_ENDPOINT:-}" ]; then return; fi
  need_venv
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  say "starting an S3-compatible test server (moto) on 127.0.0.1:$port"
  "$VENV/bin/python" -m moto.server -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/pulse-moto-$port.log" 2>&1 &
  S3_PID=$!
  trap 'kill $S3_PID 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; then break; fi
    sleep 0.2
  done
  export PULSE_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-pulse-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-pulse-test}
  export AWS_REGION=${AWS_REGION:-us-east-1}
}

# Deployment files: Prometheus rules and their unit tests (promtool),
# dashboards, Terraform (python-hcl2, checkov) and the compose file and
# Dockerfile against the settings the code reads.
infra_checks() {
  need_venv
  "$VENV/bin/python" -c 'import yaml' 2>/dev/null || "$VENV/bin/pip" install --quiet pyyaml \
    || die "pip could not install pyyaml"
  say "observability: promtool check config/rules, rule unit tests, dashboards"
  bash scripts/check_observability.sh
  say "terraform: parse every file, checkov"
  bash scripts/check_terraform.sh
  say "docker: compose file and Dockerfile against the configuration"
  "$VENV/bin/python" scripts/check_docker.py
}

rust_tests() {
  need_cargo; need_postgres; need_s3
  say "formatting and lints"
  cargo fmt --all --check || die "code is not formatted: run cargo fmt --all"
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  say "Rust tests"
  cargo test --workspace --exclude pulse-python --no-fail-fast
}

build_sdk() {
  need_cargo; need_venv
  say "building the Python SDK (development profile) into $VENV"
  (cd sdk-python && VIRTUAL_ENV="$VENV" "$VENV/bin/maturin" develop --quiet)
}

python_tests() {
  need_cargo; need_venv
  say "building the pulse binary"
  cargo build -p pulse
  build_sdk
  say "Python SDK tests against pulse up"
  PULSE_BIN="$CARGO_TARGET_DIR/debug/pulse" "$VENV/bin/python" -m pytest -q sdk-python/tests
}

case "$what" in
  all) infra_checks; rust_tests; python_tests ;;
  infra) infra_checks ;;
  rust) rust_tests ;;
  python) python_tests ;;
  sdk) build_sdk ;;
  bench-drift)
    need_cargo; need_venv
    "$VENV/bin/python" -c 'import numpy, scipy, pandas, pyarrow, evidently' 2>/dev/null \
      || "$VENV/bin/pip" install --quiet -r bench/drift/requirements.txt \
      || die "pip could not install bench/drift/requirements.txt"
    cargo build --release -p pulse-drift --example drift_bench
    "$VENV/bin/python" bench/drift/bench.py "${@:2}" ;;
  bench-lineage)
    need_cargo; need_postgres
    cargo run --release -p pulse-lineage --example bench_lineage -- "${@:2}" ;;
  bench-snapshot)
    need_cargo; need_postgres; need_venv
    "$VENV/bin/python" -c 'import connectorx, pyarrow' 2>/dev/null \
      || "$VENV/bin/pip" install --quiet connectorx pyarrow || die "pip could not install connectorx and pyarrow"
    cargo build --release -p pulse
    cargo build --release -p pulse-snapshot --example bench_extract
    if ! psql "${BENCH_PG_URL:-postgresql://postgres@127.0.0.1:5432/pulse_bench}" -Atc "SELECT 1 FROM lineitem LIMIT 1" >/dev/null 2>&1; then
      say "creating TPC-H lineitem (SF1, ~6M rows) in database pulse_bench (about a minute)"
      psql -h 127.0.0.1 -U postgres -d postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'pulse_bench'" | grep -q 1 \
        || psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE pulse_bench"
      psql -h 127.0.0.1 -U postgres -d pulse_bench -v ON_ERROR_STOP=1 -f bench/snapshot/lineitem.sql
    fi
    "$VENV/bin/python" bench/snapshot/bench.py "${@:2}" ;;
  bench-trainer)
    need_cargo; need_venv
    "$VENV/bin/python" -c 'import numpy, sklearn, pyarrow' 2>/dev/null \
      || "$VENV/bin/pip" install --quiet numpy scikit-learn pyarrow || die "pip could not install numpy, scikit-learn and pyarrow"
    # PyPI's torch is the CUDA build (about 5 GB with its NVIDIA wheels); it
    # runs on the CPU all the same.
    "$VENV/bin/python" -c 'import torch' 2>/dev/null || { say "installing PyTorch (about 5 GB) into $VENV"; \
      "$VENV/bin/pip" install --quiet torch || die "pip could not install torch"; }
    cargo build --release -p pulse-trainer --example bench_train
    "$VENV/bin/python" bench/trainer/bench.py "${@:2}" ;;
  bench-inference)
    need_cargo; need_venv
    # MLServer 1.7's workers fail to start under uvloop 0.22+ ("no current
    # event loop"), so uvloop is held below it.
    "$VENV/bin/python" -c 'import numpy, sklearn, mlflow, mlserver, mlserver_sklearn, uvloop
assert tuple(map(int, uvloop.__version__.split(".")[:2])) < (0, 22)' 2>/dev/null \
      || "$VENV/bin/pip" install --quiet numpy scikit-learn mlflow mlserver mlserver-sklearn "uvloop<0.22" \
      || die "pip could not install mlflow, mlserver and mlserver-sklearn"
    cargo build --release -p pulse --bin pulse
    cargo build --release -p pulse-inference --example loadgen
    build_sdk  # it sets the Pulse side up
    "$VENV/bin/python" bench/inference/bench.py "${@:2}" ;;
  *) die "unknown target $what" ;;
esac
say "ok ($what)"
