# The newcomer's commands: `make demo` (set up + run the demo) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: setup demo test lint typecheck faults bench clean
.DEFAULT_GOAL := demo

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[server,dev]"
	@rm -f $(VENV)/.installed-* && touch $@

## setup: virtualenv, Python deps (server + dev extras), Kafka broker jars from Maven Central
setup: $(STAMP)
	$(BIN)/agentledger kafka fetch

## demo: a local broker, every layer, and a 1-2 minute multi-agent story (agentledger demo)
demo: setup
	$(BIN)/agentledger demo $(DEMO_ARGS)

## test: lint, type check, then every test but the fault suite (integration tests on a real broker)
test: setup lint typecheck
	$(BIN)/python -m pytest -m "not faults" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy agentledger collectors streams warehouse api dashboards

## faults: the fault suite on a 3-node local cluster
faults: setup
	$(BIN)/python -m pytest -m faults $(PYTEST_ARGS)

clean:
	-$(BIN)/agentledger kafka down
	rm -rf $(VENV) build *.egg-info
