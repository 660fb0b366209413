"""Database access of one service: async engines, database creation and migrations."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import psycopg
from alembic import command
from alembic.config import Config
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import Table, bindparam, event, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, CursorResult, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeEngine

from services.platform.core.settings import Settings
from services.platform.persistence.sql import Sql
from services.platform.persistence.tables import UtcDateTime

log = logging.getLogger(__name__)


def is_sqlite(url: str | URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


POOL_SIZE = 16  # connections per pool: what one worker keeps busy under load


def create_engine(url: str) -> AsyncEngine:
    """An async engine: a pool of steady connections for PostgreSQL, WAL and a busy timeout for
    SQLite.

    No pre-ping (a round trip per checkout): a connection the server dropped fails its
    statement once, SQLAlchemy then discards the whole pool, and the next checkout reconnects.
    No overflow: connections beyond the pool would be opened and closed per request.
    """
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=POOL_SIZE, max_overflow=0, pool_recycle=1800)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    # Embedded mode has several writers per file (requests, relay, consumers): WAL lets readers
    # run beside a writer, and the busy timeout makes writers wait instead of failing.
    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


class Database:
    """The service's engines. `session()` writes; `read_session()` may go to a replica;
    `fetch_all(sql)` runs a hand-written read on the driver's own pool (the replica too)."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url
        read_url = settings.read_database_url or settings.database_url
        self._reads: AsyncConnectionPool[Any] | None = None
        if not is_sqlite(read_url):
            self._reads = AsyncConnectionPool(
                _libpq_conninfo(make_url(read_url)),
                min_size=1,
                max_size=POOL_SIZE,
                open=False,
                # Reads: no BEGIN/COMMIT around them. Sessions in UTC: timestamps come back
                # as the ORM's UtcDateTime gives them, whatever the server's TimeZone.
                kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
            )
        self.engine = create_engine(settings.database_url)
        self.read_engine = (
            create_engine(settings.read_database_url) if settings.read_database_url else self.engine
        )
        # expire_on_commit=False: objects stay readable after commit without lazy IO.
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=AsyncSession, expire_on_commit=False
        )
        self.read_sessionmaker = async_sessionmaker(
            self.read_engine, class_=AsyncSession, expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def session(self) -> AsyncSession:
        """A session on the primary; use as `async with db.session() as session:`."""
        return self.sessionmaker()

    def read_session(self) -> AsyncSession:
        """A session for read-only queries (the replica when one is configured)."""
        return self.read_sessionmaker()

    async def open(self) -> None:
        """Open the read pool (PostgreSQL); the engines connect on first use."""
        if self._reads is not None:
            await self._reads.open(wait=False)

    async def fetch_all(self, sql: Sql, **params: Any) -> list[dict[str, Any]]:
        """The rows of a read-only statement, as dicts by column name."""
        if self._reads is None:
            async with self.read_engine.connect() as connection:
                return await fetch_on(connection, sql, params)
        async with self._reads.connection() as pooled, pooled.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.for_dialect("postgresql"), params)
            rows: list[dict[str, Any]] = await cur.fetchall()
            return rows

    async def ping(self) -> None:
        """Run `SELECT 1` on every engine; raises when the database does not answer."""
        for engine in {self.engine, self.read_engine}:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._reads is not None:
            await self._reads.close()
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()


def insert_ignoring_conflicts(dialect: str, table: Table, values: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING; the result's rowcount is 0 when the row existed."""
    if dialect == "postgresql":
        statement: Any = postgresql.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).values(values).on_conflict_do_nothing()
    else:
        raise ValueError(f"unsupported database {dialect!r}: PostgreSQL or SQLite only")
    # SQLAlchemy reports an INSERT's rowcount only when asked to.
    return statement.execution_options(preserve_rowcount=True)


async def take_next_number(
    session: AsyncSession, dialect: str, table: Table, key: Mapping[str, Any], counter: str
) -> int:
    """The next value of the counter row named by `key` (made at 0 when missing), taken in the
    session's transaction with `UPDATE … RETURNING`: the row stays locked until the transaction
    ends, so concurrent takers get consecutive numbers, and a rollback gives its number back
    (gap-free numbering: order numbers, invoice numbers)."""
    await session.execute(insert_ignoring_conflicts(dialect, table, {**key, counter: 0}))
    column = table.c[counter]
    statement = update(table).values({counter: column + 1}).returning(column)
    for name, value in key.items():
        statement = statement.where(table.c[name] == value)
    return int((await session.execute(statement)).scalar_one())


def affected_rows(result: object) -> int:
    """Rows an INSERT/UPDATE/DELETE touched (`session.execute` is typed as returning Result)."""
    return int(cast("CursorResult[Any]", result).rowcount)


def _libpq_conninfo(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _maintenance_conninfo(url: URL) -> str:
    """A libpq URL of the server's `postgres` database (where CREATE/DROP DATABASE run)."""
    return _libpq_conninfo(url.set(database="postgres"))


async def fetch_on(
    connection: AsyncConnection, sql: Sql, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run `sql` on the driver connection under a SQLAlchemy connection (same transaction)."""
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    dialect = connection.dialect.name
    if dialect == "postgresql":
        async with driver.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(sql.for_dialect(dialect), params)
            return await cursor.fetchall() if cursor.description else []
    # SQLite (embedded mode, not a hot path): through SQLAlchemy, so that parameters are stored
    # and `sql.types` read back as the ORM does it (persistence/sql.py).
    named = sql.names
    statement: Any = text(sql.for_dialect(dialect)).bindparams(
        *(
            bindparam(name, value, type_=_bind_type(value))
            for name, value in params.items()
            if name in named
        )
    )
    if sql.types:
        statement = statement.columns(**sql.types)
    result = await connection.execute(statement)
    return [dict(row) for row in result.mappings()] if result.returns_rows else []


async def fetch_and_commit_on(
    connection: AsyncConnection, sql: Sql, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run `sql` and COMMIT in one round trip (PostgreSQL: psycopg's pipeline mode): the server
    releases the transaction's row locks right after it, not once this process has read the
    result and found time to send the commit. Elsewhere the two simply follow each other."""
    if connection.dialect.name != "postgresql":
        rows = await fetch_on(connection, sql, params)
        raw = await connection.get_raw_connection()
        await raw.driver_connection.commit()  # type: ignore[union-attr]
        return rows
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    async with driver.pipeline(), driver.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(sql.for_dialect("postgresql"), params)
        await driver.commit()  # queued behind the statement; syncs the pipeline
        return await cursor.fetchall() if cursor.description else []


def _bind_type(value: object) -> TypeEngine[Any] | None:
    """A datetime is bound as `UtcDateTime` (UTC text; a naive one is refused); SQLAlchemy
    infers the rest from the value (a UUID as its hex, a Decimal as a number)."""
    return UtcDateTime() if isinstance(value, datetime) else None


async def ensure_database(url: str) -> None:
    """Create the service's database when it does not exist yet (PostgreSQL), or the directory
    of its file (SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return
    name = parsed.database
    if not name:
        raise ValueError(f"database URL names no database: {parsed!r}")
    # CREATE DATABASE cannot run inside a transaction: autocommit.
    async with await psycopg.AsyncConnection.connect(
        _maintenance_conninfo(parsed), autocommit=True
    ) as connection:
        found = await connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if await found.fetchone():
            return
        try:
            await connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            log.info("created database %s", name)
        except psycopg.errors.DuplicateDatabase:
            pass  # another replica created it first
        except psycopg.errors.UniqueViolation:
            pass  # same race, reported on pg_database's unique index


async def drop_database(url: str) -> None:
    """Drop the database (PostgreSQL, closing its connections) or delete the SQLite file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            await asyncio.to_thread(_remove_sqlite_files, Path(parsed.database))
        return
    async with await psycopg.AsyncConnection.connect(
        _maintenance_conninfo(parsed), autocommit=True
    ) as connection:
        await connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(parsed.database or "")
            )
        )


def _remove_sqlite_files(path: Path) -> None:
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
        path.with_name(name).unlink(missing_ok=True)


def alembic_config(migrations: Path, database_url: str) -> Config:
    """An Alembic configuration for a service's migrations directory and database.

    The URL travels in `config.attributes` (read by `alembic_env.run_migrations`), so a
    password never passes through ConfigParser interpolation.
    """
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["database_url"] = database_url
    return config


async def prepare_database(migrations: Path | None, url: str) -> None:
    """Create the service's database if missing, then apply its migrations."""
    await ensure_database(url)
    await asyncio.to_thread(migrate, migrations, url)


# Alembic's `op` and `context` are process-wide proxies: two migrations in worker threads at
# once (embedded `erp up` starts services together) would write one's tables into the other's
# database. One migration at a time per process.
_MIGRATING = threading.Lock()


def migrate(migrations: Path | None, database_url: str) -> None:
    """`alembic upgrade head` for the service. Synchronous: call it through asyncio.to_thread."""
    if migrations is None:
        raise ValueError("this service has no migrations directory (it keeps no database)")
    with _MIGRATING:
        command.upgrade(alembic_config(migrations, database_url), "head")
