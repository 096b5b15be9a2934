# The newcomer's commands: `make demo` (set up + run the demo) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# One distribution per folder (docs/adr/0008-one-distribution-per-folder.md), client first.
DISTS  := contract collectors streams warehouse dashboards api server
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(DISTS:%=%/pyproject.toml) | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup browser demo test lint typecheck faults bench clean
.DEFAULT_GOAL := demo

$(STAMP): pyproject.toml $(DISTS:%=%/pyproject.toml)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "uv==0.13.9"
	$(BIN)/uv pip install -q --python $(BIN)/python $(DISTS:%=-e ./%) --group dev
	@rm -f $(VENV)/.installed-* && touch $@

## setup: virtualenv, Python deps (server + dev extras), Kafka broker jars from Maven Central,
## and Debian's Chromium for the dashboard browser tests (installed when missing and root)
setup: $(STAMP) browser
	$(BIN)/agentledger kafka fetch

browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "note: no chromium and not root: the dashboard browser tests will be skipped"; fi

## demo: a local broker, every layer, and a 1-2 minute multi-agent story (agentledger demo)
demo: setup
	$(BIN)/agentledger demo $(DEMO_ARGS)

## test: lint, type check, then every test but the fault suite (integration tests on a real broker)
test: setup lint typecheck
	$(BIN)/python -m pytest -m "not faults" -n 2 --dist loadfile --durations=20 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## typecheck: mypy strict over every layer (settings in pyproject.toml), then the layer rules
typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/lint-imports

## faults: the fault suite on a 3-node local cluster
faults: setup
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

## bench: every benchmark in full, JSON in benchmarks/results/ (quiet machine: ~15 minutes)
bench: setup
	mkdir -p benchmarks/results
	for b in emitter pipeline warehouse api drift hook; do \
	  $(BIN)/python benchmarks/$$b.py --json benchmarks/results/$$b.json || exit 1; done

clean:
	-$(BIN)/agentledger kafka down
	rm -rf $(VENV) build */src/*.egg-info
