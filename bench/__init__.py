"""`make bench`: the inventory service measured against a FastAPI twin of the same endpoints.

* `bench.twin` — the twin: FastAPI + psycopg pool + redis, same database, cache and JWT rules.
* `bench.harness` — the parts of tools/dev/bench.sh that are easier in Python: the response
  comparison before load, wrk output parsing and the result table.
"""
