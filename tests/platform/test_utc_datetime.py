"""The kit's timestamp column type (`UtcDateTime`) on SQLite, which keeps no time zone: aware
UTC datetimes come back, naive ones are refused, generated models validate straight from rows,
and the DDL (and what autogenerate writes) is plain `DateTime(timezone=True)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from uuid import uuid4

import pytest
from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, DateTime, MetaData, Table, create_engine, select
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.schema import CreateTable
from sqlmodel import col

from generated.inventory import models
from services.auth.tables import metadata as auth_metadata
from services.inventory.tables import Category, Movement, metadata
from services.platform import UtcDateTime
from services.platform.persistence.alembic_env import render_item
from services.platform.persistence.tables import kit_metadata, utc_timestamp

MOMENT = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)


@pytest.fixture
async def session(tmp_path: Path) -> AsyncIterator[AsyncSession]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'times.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    async with async_sessionmaker(engine, expire_on_commit=False)() as session:
        yield session
    await engine.dispose()


async def test_sqlite_gives_back_aware_utc_datetimes(session: AsyncSession) -> None:
    # Written in another zone: stored as the same instant, read back in UTC.
    sao_paulo = MOMENT.astimezone(timezone(timedelta(hours=-3)))
    category = Category(name="Tools", slug="tools", created_at=sao_paulo, updated_at=MOMENT)
    session.add(category)
    await session.commit()
    session.expunge_all()

    row = (await session.scalars(select(Category))).one()
    assert row.created_at == MOMENT
    assert row.created_at.tzinfo is UTC
    assert row.updated_at.tzinfo is UTC
    # Core statements bind and read through the type as well.
    later = MOMENT + timedelta(hours=1)
    found = await session.scalar(select(col(Category.id)).where(col(Category.created_at) < later))
    assert found == row.id


async def test_naive_datetimes_are_refused(session: AsyncSession) -> None:
    session.add(Category(name="Tools", slug="tools", created_at=MOMENT.replace(tzinfo=None)))
    with pytest.raises(StatementError, match="naive datetime"):
        await session.flush()
    await session.rollback()
    with pytest.raises(StatementError, match="naive datetime"):
        await session.execute(
            select(Category).where(col(Category.created_at) < datetime(2025, 1, 1))
        )


async def test_generated_models_validate_straight_from_rows(session: AsyncSession) -> None:
    category = Category(name="Tools", slug="tools", created_at=MOMENT, updated_at=MOMENT)
    movement = Movement(
        product_id=uuid4(),
        warehouse_id=uuid4(),
        type="in",
        quantity=3,
        on_hand_before=0,
        on_hand_after=3,
        reserved_before=0,
        reserved_after=0,
        reason="initial count",
        created_at=MOMENT,
    )
    session.add_all([category, movement])
    await session.commit()
    session.expunge_all()

    # AwareDatetime fields: a naive datetime read back from SQLite would fail them.
    row = (await session.scalars(select(Category))).one()
    model = models.Category.model_validate(row, from_attributes=True)
    assert (model.created_at, model.updated_at) == (MOMENT, MOMENT)
    stored = (await session.scalars(select(Movement))).one()
    assert models.Movement.model_validate(stored, from_attributes=True).created_at == MOMENT


def test_the_ddl_and_the_migrations_see_a_plain_timestamptz(tmp_path: Path) -> None:
    table = Table("t", MetaData(), Column("at", UtcDateTime(), nullable=False))
    plain = Table("t", MetaData(), Column("at", DateTime(timezone=True), nullable=False))
    for dialect_url in ("postgresql+psycopg://", "sqlite://"):
        dialect = create_engine(dialect_url).dialect
        assert str(CreateTable(table).compile(dialect=dialect)) == str(
            CreateTable(plain).compile(dialect=dialect)
        )

    # Autogenerate writes the column as sa.DateTime(timezone=True), not as the kit's type...
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        code = render_python_code(
            produce_migrations(context, table.metadata).upgrade_ops,  # type: ignore[arg-type]
            render_item=render_item,
        )
    assert "sa.DateTime(timezone=True)" in code
    assert "UtcDateTime" not in code

    # ...and, once the table exists as the old type made it, sees no difference.
    with engine.begin() as connection:
        plain.metadata.create_all(connection)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, table.metadata) == []
    engine.dispose()


def test_every_timestamp_column_uses_the_type() -> None:
    for meta in (metadata, auth_metadata, kit_metadata):
        for table in meta.tables.values():
            for column in table.columns:
                if isinstance(column.type, DateTime):
                    raise AssertionError(f"{table.name}.{column.name} is a plain DateTime")
    assert isinstance(Movement.__table__.c.created_at.type, UtcDateTime)  # type: ignore[attr-defined]
    assert utc_timestamp(nullable=True).sa_column.type.__class__ is UtcDateTime
