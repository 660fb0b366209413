# Two commands matter: `make up` runs the platform, `make test` runs every test.
# Both install what they need first (Python venv + pinned packages, the AsyncAPI JSON Schema).
# PYTHON picks the interpreter (3.11 to 3.13): `make up PYTHON=python3.12`; a venv made by
# another one is made again (tools/dev/make_venv.py).

VENV      := .venv
BIN       := $(VENV)/bin
PYTHON    ?= python3
ASYNCAPI  := .tools/node_modules/@asyncapi/specs/schemas/3.0.0.json

.PHONY: install venv up test lint typecheck codegen check-codegen servers clean bench

install: venv $(ASYNCAPI)

# Checked on every run (quiet when up to date): the interpreter, who made the venv, the stamp.
venv:
	@$(PYTHON) tools/dev/make_venv.py $(VENV)

$(ASYNCAPI):
	@echo "install: the AsyncAPI 3.0 JSON Schema (npm, into .tools/)"
	@npm install --silent --no-audit --no-fund --prefix .tools @asyncapi/specs@6.11.1

up: venv
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
