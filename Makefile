# Pulse: `make up` runs everything with embedded defaults; `make test` runs
# the whole suite against real PostgreSQL, a real S3-compatible server and
# real gRPC servers.

SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/pulse-target
PULSE := $(CARGO_TARGET_DIR)/debug/pulse
VENV ?= .venv

.PHONY: up build test test-rust test-python bench bench-lineage bench-snapshot bench-trainer bench-inference bench-drift sdk fmt clippy clean-state

## Build and run all six services in one process (state under .pulse/).
up: build
	$(PULSE) up

build:
	cargo build -p pulse

## Everything: Rust tests (PostgreSQL, S3-compatible server), SDK build, pytest.
test:
	bash scripts/test.sh all

test-rust:
	bash scripts/test.sh rust

test-python:
	bash scripts/test.sh python

## The Python SDK into $(VENV) (development build, shared target directory).
sdk:
	bash scripts/test.sh sdk

## Benchmarks (results and commands in docs/benchmarks.md).
bench: bench-lineage bench-snapshot bench-trainer bench-inference bench-drift

## Extraction of TPC-H lineitem (SF1) vs ConnectorX and raw COPY.
bench-snapshot:
	bash scripts/test.sh bench-snapshot

bench-lineage:
	bash scripts/test.sh bench-lineage

## Training: Pulse's engine vs scikit-learn on 1M×32 synthetic rows and breast_cancer.
bench-trainer:
	bash scripts/test.sh bench-trainer

bench-inference:
	bash scripts/test.sh bench-inference

## Drift: 1M + 1M rows × 25 columns, Pulse's engine vs SciPy and Evidently.
bench-drift:
	bash scripts/test.sh bench-drift

fmt:
	cargo fmt --all

clippy:
	cargo clippy --workspace --exclude pulse-python --all-targets

## Forget the local state of `make up` (embedded database, objects, keys).
clean-state:
	rm -rf .pulse

.PHONY: dev-up dev-down

## The six services as containers with PostgreSQL, MinIO, Prometheus, Grafana (docker-compose.yml).
dev-up:
	docker compose up -d --build
	@echo "gRPC:       datasource :50051  snapshot :50052  trainer :50053  inference :50054  lineage :50055  drift :50056"
	@echo "metrics:    http://localhost:9464/metrics ... :9469 (same order)"
	@echo "prometheus: http://localhost:9090   grafana: http://localhost:3000   minio console: http://localhost:9001"
	@echo "postgres:   postgres://pulse:pulse@localhost:5433/pulse   (dev-only credentials: see docker/README.md)"

## Stop the compose stack (data volumes kept; `docker compose down -v` drops them).
dev-down:
	docker compose down
