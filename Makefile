# Two commands matter: `make up` runs the platform, `make test` runs every test.
# Both install what they need first (Python venv + pinned packages, the AsyncAPI JSON Schema).

VENV      := .venv
BIN       := $(VENV)/bin
PYTHON    ?= python3
STAMP     := $(VENV)/.installed
ASYNCAPI  := .tools/node_modules/@asyncapi/specs/schemas/3.0.0.json

.PHONY: install up test lint typecheck codegen check-codegen servers clean bench

install: $(STAMP) $(ASYNCAPI)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	touch $(STAMP)

$(ASYNCAPI):
	npm install --silent --no-audit --no-fund --prefix .tools @asyncapi/specs@6.11.1

up: $(STAMP)
	$(BIN)/erp up

servers:
	bash tools/dev/ensure-servers.sh

codegen: install
	$(BIN)/erp codegen

check-codegen: install
	$(BIN)/erp codegen --check

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy services tools tests bench

test: install servers check-codegen lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .tools .data .pytest_cache .mypy_cache .ruff_cache

bench: install servers
	bash tools/dev/bench.sh
