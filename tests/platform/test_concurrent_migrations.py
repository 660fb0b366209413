"""Services that migrate at the same time in one process (embedded `erp up` starts them
together) each get their own tables: Alembic's `op` and `context` are process-wide proxies, so
the kit runs one migration at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import create_engine, inspect

from services.platform.persistence.db import prepare_database

MIGRATIONS = Path(__file__).parent / "kit_service" / "migrations"


async def test_concurrent_migrations_each_migrate_their_own_database(tmp_path: Path) -> None:
    files = [tmp_path / f"service-{number}.db" for number in range(4)]
    await asyncio.gather(
        *(prepare_database(MIGRATIONS, f"sqlite+aiosqlite:///{file}") for file in files)
    )
    expected = None
    for file in files:
        engine = create_engine(f"sqlite:///{file}")
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert "outbox" in tables, file
        assert "alembic_version" in tables, file
        expected = expected or tables
        assert tables == expected, file
