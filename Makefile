# Every target creates and uses .venv itself: a fresh clone needs nothing but python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench lint fmt clean ui

# The web UI's chart library comes from npm (package.json, pinned by package-lock.json); the built
# files are copied into the package's static directory under their version.
UI_VENDOR := src/despina/server/ui/static/vendor
UI_STAMP := $(UI_VENDOR)/.installed-$(shell cat package-lock.json | cksum | cut -d' ' -f1)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(UI_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(UI_VENDOR)
	rm -f $(UI_VENDOR)/uPlot-* $(UI_VENDOR)/.installed-*
	version=$$(node -p "require('./node_modules/uplot/package.json').version") && \
	cp node_modules/uplot/dist/uPlot.iife.min.js $(UI_VENDOR)/uPlot-$$version.min.js && \
	cp node_modules/uplot/dist/uPlot.min.css $(UI_VENDOR)/uPlot-$$version.min.css
	touch $@

ui: $(UI_STAMP)

demo: $(STAMP) $(UI_STAMP)
	$(BIN)/despina demo

test: $(STAMP) $(UI_STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: $(STAMP) $(UI_STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info node_modules $(UI_VENDOR)/uPlot-* $(UI_VENDOR)/.installed-*
