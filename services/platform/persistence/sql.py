"""Hand-written SQL for the hot path: one statement text, run on the driver's own connection.

    STOCK_PAGE = Sql("SELECT ..., count(*) OVER () AS total FROM stock WHERE ... LIMIT :limit")
    rows = await database.fetch_all(STOCK_PAGE, limit=15)          # reads: the read pool
    rows = await uow.fetch_all(RECEIVE, product_id=..., quantity=3)  # writes: the transaction

Why: SQLAlchemy costs about 200 µs of CPU per session or connection checkout and per statement
on this machine (PERF_NOTES.md, measured again for ADR 0004); psycopg's own pool and cursor do
the same work in a fraction of that. The ORM stays for the rest of the code, where clarity is
worth more than those microseconds; a query becomes `Sql` when `make bench` says it matters.

Statements name their parameters `:name` (never `%`-formatting); each dialect gets its form
once: psycopg's `%(name)s` on PostgreSQL, SQLAlchemy's `text()` (also `:name`) in embedded mode.

Rows come back with the types the ORM gives: psycopg types PostgreSQL's columns itself (UUID,
Decimal, aware datetimes — the read pool's sessions run in UTC). SQLite keeps storage forms
(hex ids, float NUMERICs, naive DATETIME text), so in embedded mode parameters are bound the way
the ORM writes them (a UUID as its hex, a datetime as UTC text, a Decimal as a number) and the
columns named in `types` are read back through those SQLAlchemy types:

    Sql("SELECT updated_at, ... FROM stock ...", types={"updated_at": UtcDateTime()})
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.types import TypeEngine

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(eq=False)
class Sql:
    """One SQL statement with `:name` parameters, as each dialect wants it."""

    text: str
    # SQLite only: result columns read back through these types (PostgreSQL types them itself).
    types: Mapping[str, TypeEngine[Any]] = field(default_factory=dict)
    _forms: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> frozenset[str]:
        """The parameters the statement names (a caller may pass more: they are left out)."""
        return frozenset(_NAMED.findall(self.text))

    def for_dialect(self, dialect: str) -> str:
        form = self._forms.get(dialect)
        if form is None:
            if dialect == "postgresql":
                form = _NAMED.sub(r"%(\1)s", self.text.replace("%", "%%"))
            elif dialect == "sqlite":
                form = self.text
            else:
                raise ValueError(f"unsupported database {dialect!r}: PostgreSQL or SQLite only")
            self._forms[dialect] = form
        return form
