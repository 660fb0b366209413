"""A service's migrations and its `tables.py` say the same, on PostgreSQL and on SQLite."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine
from sqlalchemy.engine import Engine

from services.platform.persistence.alembic_env import target_metadata
from services.platform.persistence.db import alembic_config


def assert_migrations_match(
    migrations: Path, metadata: MetaData, engine: Engine, sqlite_dir: Path
) -> None:
    """The database behind `engine` (migrated by the running service) and a fresh SQLite file
    migrated to head both hold exactly the tables `metadata` declares; the SQLite file is then
    downgraded to base, which must work too."""
    sqlite_url = f"sqlite:///{sqlite_dir / 'migrated.db'}"
    command.upgrade(alembic_config(migrations, sqlite_url), "head")
    for database in (engine, create_engine(sqlite_url)):
        with database.connect() as connection:
            migration = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(migration, target_metadata(metadata)) == []
    command.downgrade(alembic_config(migrations, sqlite_url), "base")
