"""The body of every service's `migrations/env.py`:

    from services.platform import run_migrations
    from services.sales.tables import metadata

    run_migrations(metadata)

Migrations run on a synchronous engine (psycopg 3 and sqlite3 are both sync-capable), so they
work from a worker thread (`db.migrate` under asyncio.to_thread) and from the `alembic` command
line alike, without nesting event loops.
"""

from __future__ import annotations

import zlib
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import MetaData, create_engine, pool, text
from sqlalchemy.engine import URL, Connection, make_url

from services.platform.persistence.tables import UtcDateTime, kit_metadata


def _sync_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        return parsed.set(drivername="sqlite")
    if parsed.drivername in {"postgresql", "postgres"}:
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


def _database_url() -> str:
    config = context.config
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database URL for migrations: pass it in config.attributes['database_url'] "
            "(services.platform.persistence.db.alembic_config) or as sqlalchemy.url"
        )
    return str(url)


def target_metadata(metadata: MetaData) -> MetaData:
    """The service's tables plus the kit tables, as autogenerate should see the database."""
    target = MetaData(naming_convention=metadata.naming_convention)
    for table in [*metadata.sorted_tables, *kit_metadata.sorted_tables]:
        if table.key not in target.tables:
            table.to_metadata(target)
    return target


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Autogenerate writes a `UtcDateTime` column as the plain type it is in the database
    (`sa.DateTime(timezone=True)`), so migration files never import the kit's column types.

    (Comparing needs nothing: `UtcDateTime` compiles to the same DDL, so `compare_type` sees no
    difference.)
    """
    if type_ == "type" and isinstance(obj, UtcDateTime):
        prefix = autogen_context.opts.get("sqlalchemy_module_prefix") or "sa."
        return f"{prefix}DateTime(timezone=True)"
    return False


def _configure(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(metadata),
        compare_type=True,
        render_item=render_item,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations(metadata: MetaData) -> None:
    """Run the migrations Alembic asked for, online or (with --sql) offline."""
    url = _sync_url(_database_url())
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=target_metadata(metadata),
            literal_binds=True,
            dialect_opts={"paramstyle": "named"},
            render_item=render_item,
        )
        with context.begin_transaction():
            context.run_migrations()
        return

    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                _run_locked(connection, metadata)
            else:
                _configure(connection, metadata)
                with context.begin_transaction():
                    context.run_migrations()
    finally:
        engine.dispose()


def _run_locked(connection: Connection, metadata: MetaData) -> None:
    """Replicas starting together migrate one at a time (a session-level advisory lock)."""
    lock_id = zlib.crc32(f"erp-migrations:{connection.engine.url.database}".encode())
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
    connection.commit()
    try:
        _configure(connection, metadata)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
        connection.commit()
