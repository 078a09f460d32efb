# Pelago: `make run` serves the demo, `make test` runs the suite. Both set up
# everything they need from a fresh clone (virtualenv, packages, services).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The console's htmx, from the npm registry into the virtualenv (never fetched at run time, not in the repo).
HTMX_VERSION := 2.0.11
HTMX := $(VENV)/share/pelago-npm/node_modules/htmx.org/dist/htmx.min.js

.PHONY: run test test-sqlite test-postgres venv clean bench

$(STAMP): pyproject.toml examples/lead_score/pyproject.toml examples/sms_aliyun/pyproject.toml \
		examples/conversions_adapters/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]' -e examples/lead_score -e examples/sms_aliyun \
		-e examples/conversions_adapters
	touch $(STAMP)

$(HTMX):
	@if command -v npm >/dev/null; then \
		npm install --silent --no-audit --no-fund --prefix $(VENV)/share/pelago-npm htmx.org@$(HTMX_VERSION); \
	else echo "npm not found: the console works without htmx (no live progress, full page loads)"; fi

venv: $(STAMP) $(HTMX)

run: $(STAMP) $(HTMX)
	$(BIN)/pelago serve --demo --host $${HOST:-127.0.0.1} --port $${PORT:-5000}

test: $(STAMP) $(HTMX)
	scripts/test

test-sqlite: $(STAMP)
	PELAGO_TEST_DB=sqlite $(BIN)/pytest -q

test-postgres: $(STAMP)
	PELAGO_TEST_DB=postgresql $(BIN)/pytest -q

# Benchmarks (not part of test or CI): docs/benchmarks.md. ARGS picks some and
# their size, e.g. make bench ARGS="intake_import --rows 10000".
bench: $(STAMP)
	bench/run $(ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache
