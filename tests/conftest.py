"""The test harness is one pytest plugin, `tests/support/plugin.py` (its docstring lists the
fixtures); the helpers it builds on are the other modules of `tests/support/`.

Layout: a folder per service (`auth/`, `inventory/`), `platform/` for the kit, `codegen/` for
the generator, `contract/` for the Schemathesis, AsyncAPI and codegen conformance runs. Tests
that need the real PostgreSQL, RabbitMQ and Redis are marked `integration`; the others run
anywhere (`pytest -m "not integration"`).
"""

pytest_plugins = ["tests.support.plugin"]
