# refresh-assets: the commands a user runs. Every target installs what it needs first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data


.PHONY: install browser run test test-unit ui serve worker lock validate clean bench bench-quick decisions decisions-quick scorer reports

install: $(STAMP)

# The venv is rebuilt from the lock file whenever the lock or pyproject changes.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.8
	$(BIN)/uv pip sync -q --compile-bytecode -p $(BIN)/python requirements.lock
	$(BIN)/uv pip install -q -p $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Regenerate the lock file after changing dependencies in pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra test -p 3.11 -o requirements.lock

run: install
	$(BIN)/refresh-assets --data-dir data/demo demo

# Debian's Chromium for the web UI test (no browser download; root, as on these machines).
browser:
	test -x /usr/bin/chromium || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# 6 workers on 2 cores: the integration tests wait on daemons and servers ~30% of the time (CPU 68% busy with 4
# workers). .ci/run on clean clones, one machine (AMD EPYC, 2026-12-04): pytest 999 s with 6 workers, 1,225 s with 4.
# Whole modules per worker.
test: install browser
	$(BIN)/python -m pytest -n 6 --dist loadfile --no-loadscope-reorder --timeout 1200 --durations=15 refresh_assets_tests

test-unit: install
	$(BIN)/python -m pytest -m "not integration" refresh_assets_tests

# Benchmarks (not tests): data/bench/results.json + docs/BENCHMARKS.md (full sizes, 31-38 min on 2 cores, 52-61 min on the slow machines of 2026-12-06, the first run simulating a 1M-player warehouse), or a
# quick sanity run of every benchmark on small sizes (data/bench/results.json + data/bench/BENCHMARKS-quick.md).
bench: install
	$(BIN)/python -m refresh_assets_tests.benchmarks.suite --size full

bench-quick: install
	$(BIN)/python -m refresh_assets_tests.benchmarks.suite --size quick

# Decision-quality study (docs/DECISIONS.md): seeded simulations with a known truth -> data/bench/decisions.json.
# The full study also rewrites the measured tables of docs/DECISIONS.md; the quick one (< 5 min) only the JSON.
# Both exit non-zero when a target is missed.
decisions: install
	$(BIN)/python refresh_assets_tests/benchmarks/decision_study.py --out data/bench --docs docs/DECISIONS.md

decisions-quick: install
	$(BIN)/python refresh_assets_tests/benchmarks/decision_study.py --quick --out data/bench

# Dagster's own check, as a user types it in the root (the top-level dagster.yaml needs no setting).
validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

# The Dagster UI and its daemon (dagster dev) on 127.0.0.1, on the embedded instance the CLI's runs are in:
# SQLite under $(DATA)/dagster_home (a copy of the top-level dagster.yaml). `dagster dev` in the root also works,
# on a temporary instance. ARGS: e.g. ARGS="--warehouse my.duckdb --query my.sql --partition-start 2019-01-01".
ui: install
	$(BIN)/refresh-assets --data-dir $(DATA) ui $(ARGS)

# Production: webserver + daemon against PostgreSQL (deploy/postgres/dagster.yaml); REFRESH_ASSETS_PG_* select the server.
serve: install
	$(BIN)/refresh-assets --data-dir $(DATA) serve $(ARGS)

# A Celery worker for runs launched with REFRESH_ASSETS_EXECUTOR=celery (same instance as serve);
# REFRESH_ASSETS_CELERY_BROKER / _BACKEND / _QUEUE select the broker and queue.
worker: install
	$(BIN)/refresh-assets --data-dir $(DATA) worker

# The real-time scorer on 127.0.0.1:8000 (POST /v1/score): the champion's published scorer, hot-swapped when the
# champion changes. ARGS: e.g. ARGS="--port 8080 --poll-seconds 1".
scorer: install
	$(BIN)/refresh-assets --data-dir $(DATA) scorer $(ARGS)

# The read-only reports server on 127.0.0.1:8020: the HTML reports (model comparison, drift) of committed outputs,
# what the links in the assets' metadata open (REFRESH_ASSETS_REPORTS_URL). ARGS: e.g. ARGS="--port 8080".
reports: install
	$(BIN)/refresh-assets --data-dir $(DATA) reports $(ARGS)

clean:
	rm -rf data/outputs data/registry data/dagster_home data/warehouse
