# Every target creates and uses .venv itself: a fresh clone needs nothing but python3 and make
# (no npm: the web UI's chart library is committed under src/despina/server/ui/static/vendor/).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYPROJECT_SUM := $(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# `make demo` installs only the package; `make test`, `bench`, `lint` and `fmt` add the test and
# dev extras. Each install leaves a stamp named after pyproject.toml's checksum.
DEMO_STAMP := $(VENV)/.installed-demo-$(PYPROJECT_SUM)
DEV_STAMP := $(VENV)/.installed-dev-$(PYPROJECT_SUM)

.PHONY: demo test test-embedded test-postgres bench lint fmt clean ui-update screenshots

# The chart library (uPlot) is vendored: its built files and licence are committed with the
# version in their names. `make ui-update` refreshes them from npm (package.json pins the
# version, package-lock.json the tarball); nothing else needs npm.
UI_VENDOR := src/despina/server/ui/static/vendor

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e .
	rm -f $(VENV)/.installed-demo-*
	touch $@

$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	rm -f $(VENV)/.installed-*
	touch $(DEMO_STAMP) $@

ui-update:
	npm ci --no-audit --no-fund --loglevel=error
	version=$$(node -p "require('./node_modules/uplot/package.json').version") && \
	rm -f $(UI_VENDOR)/uPlot-* && \
	cp node_modules/uplot/dist/uPlot.iife.min.js $(UI_VENDOR)/uPlot-$$version.min.js && \
	cp node_modules/uplot/dist/uPlot.min.css $(UI_VENDOR)/uPlot-$$version.min.css && \
	cp node_modules/uplot/LICENSE $(UI_VENDOR)/uPlot-$$version.LICENSE && \
	echo "vendored uPlot $$version: commit $(UI_VENDOR)"

demo: $(DEMO_STAMP)
	$(BIN)/despina demo

# `make test` runs the whole suite on the embedded store and, at the same time, the tests that
# touch the store again over PostgreSQL (a throw-away cluster on 127.0.0.1; skipped where
# PostgreSQL is not installed, unless DESPINA_REQUIRE_POSTGRES=1, as in CI). Each pass spreads
# its test files over TEST_WORKERS processes (pytest-xdist; the tests of one file stay in one
# process, which starts the file's servers once; over PostgreSQL each process starts its own
# cluster); -O prints each pass's output whole when it ends. Run serially: TEST_WORKERS=0.
# The embedded pass ends with the query API tests through a real despina serve
# (DESPINA_TEST_REMOTE=1: the reads of despina.query with an API token).
POSTGRES_SUITE := tests/store tests/client tests/query tests/nql tests/server tests/ui \
	tests/importer tests/test_project.py tests/test_sync.py tests/test_cli_info.py
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

test: $(DEV_STAMP)
	$(MAKE) --no-print-directory -j2 -O test-embedded test-postgres

test-embedded: $(DEV_STAMP)
	$(PYTEST)
	DESPINA_TEST_REMOTE=1 $(PYTEST) tests/query

test-postgres: $(DEV_STAMP)
	DESPINA_TEST_STORE=postgresql $(PYTEST) $(POSTGRES_SUITE)

bench: $(DEV_STAMP)
	$(BIN)/python -m bench

# The peers (MLflow, Aim, trackio, W&B, neptune-scale, neptune-query) get a venv of their own:
# they pin numpy, pandas and protobuf versions that .venv must not take. The run happens in a
# network namespace with only loopback where unshare allows it, so no peer can reach the network;
# the servers of the "through a server" rows listen on 127.0.0.1. ARGS is passed on (e.g.
# ARGS=--quick).
.PHONY: bench-peers
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed-peers-$(PYPROJECT_SUM)

$(PEERS_STAMP): pyproject.toml
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install -q -e '.[peers]'
	rm -f $(PEERS_VENV)/.installed-*
	touch $@

bench-peers: $(PEERS_STAMP)
	if unshare -rn true 2>/dev/null; then \
		unshare -rn sh -c 'ip link set lo up; exec $(PEERS_VENV)/bin/python -m bench.peers $(ARGS)'; \
	else \
		$(PEERS_VENV)/bin/python -m bench.peers $(ARGS); \
	fi

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: $(DEV_STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info node_modules

# The README's screenshots of the web UI (needs Chromium: apt-get install chromium)
screenshots: $(DEV_STAMP)
	$(BIN)/python docs/screenshots/capture.py
