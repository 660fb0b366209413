"""Tables every service database has: the outbox, the inbox and stored idempotent responses.

Each service's first Alembic migration creates them (`services.platform.persistence.migrations`).

The kit tables live in their own registry (`kit_metadata`), not in `SQLModel.metadata`, so that
each service can keep its own MetaData — in embedded mode every service is imported into one
process, and one shared MetaData would show each service the others' tables. A service declares
its tables on a base with its own registry:

    class SalesTable(SQLModel, registry=registry()):
        pass

    class Order(SalesTable, table=True): ...

and passes `SalesTable.metadata` to `ServiceDefinition(metadata=...)`; `alembic_env` adds the kit
tables to it for autogenerate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    text,
)
from sqlalchemy.orm import registry
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from services.platform.core.rules import utc_now

CENT = Decimal("0.01")


def format_amount(value: Decimal) -> str:
    """Money's wire form: two decimals, no exponent ("724.80")."""
    return f"{value.quantize(CENT):f}"


class Amount(TypeDecorator[str]):
    """Money: `NUMERIC(14, 2)` in the database, the wire's decimal string in Python ("724.80"),
    so a row validates straight into a generated model."""

    impl = Numeric(14, 2)
    cache_ok = True

    @property
    def python_type(self) -> type[str]:
        return str

    def process_bind_param(self, value: str | Decimal | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)

    def process_result_value(self, value: Decimal | None, dialect: Dialect) -> str | None:
        return None if value is None else format_amount(Decimal(value))


class UtcDateTime(TypeDecorator[datetime]):
    """`DateTime(timezone=True)` (PostgreSQL `timestamptz`) that only ever holds aware UTC
    datetimes.

    * In: a naive datetime is refused (`ValueError`, raised by SQLAlchemy as a
      `StatementError`): nobody can tell which zone it meant. An aware one is converted to UTC,
      which matters on SQLite, whose DATETIME text drops the offset.
    * Out: always aware and in UTC — PostgreSQL returns the session's zone, SQLite returns
      naive datetimes, which were written in UTC.

    The DDL is exactly `DateTime(timezone=True)`'s, so switching a column to this type needs no
    schema change; `alembic_env` renders it as `sa.DateTime(timezone=True)` in new migrations.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"a timestamp column takes a datetime, not {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # SQLite: stored in UTC, read back naive
        return value.astimezone(UTC)


def utc_timestamp(*, nullable: bool, **kwargs: Any) -> Any:
    """A timestamp column of type `UtcDateTime` (PostgreSQL `timestamptz`, aware UTC datetimes
    in and out); defaults to now when required."""
    if nullable:
        return Field(default=None, sa_column=Column(UtcDateTime(), nullable=True))
    return Field(
        default_factory=utc_now,
        sa_column=Column(UtcDateTime(), nullable=False),
        **kwargs,
    )


class KitTable(SQLModel, registry=registry()):
    """Base of the kit tables; gives them their own MetaData."""


kit_metadata: MetaData = KitTable.metadata


class OutboxMessage(KitTable, table=True):
    """An event committed with the domain change that caused it, waiting for the relay."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_pending",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
    )

    # Publish order. BIGINT on PostgreSQL; SQLite only autoincrements an INTEGER primary key.
    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    )
    event_id: UUID = Field(unique=True)
    event_name: str = Field(max_length=200)
    exchange: str = Field(max_length=200)
    routing_key: str = Field(max_length=200)
    body: str  # the JSON envelope, exactly as it goes on the wire
    headers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    persistent: bool = True
    priority: int | None = None
    expiration_ms: int | None = None
    created_at: datetime = utc_timestamp(nullable=False)
    published_at: datetime | None = utc_timestamp(nullable=True)
    attempts: int = 0
    last_error: str | None = None


class InboxMessage(KitTable, table=True):
    """An event a consumer has handled; written in the same transaction as its effects."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=200)
    event_id: UUID = Field(primary_key=True)
    event_name: str = Field(max_length=200)
    handled_at: datetime = utc_timestamp(nullable=False)


class IdempotentRequest(KitTable, table=True):
    """A request carrying an Idempotency-Key: first a claim, then the response to replay.

    `lock_token` is set while the first request runs (a claim committed on its own) and cleared
    when the response is stored in the transaction of the effect; `locked_at` lets a claim left
    behind by a crashed process be taken over.
    """

    __tablename__ = "idempotency_keys"

    principal: str = Field(primary_key=True, max_length=200)
    operation_id: str = Field(primary_key=True, max_length=200)
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    lock_token: UUID | None = None
    locked_at: datetime | None = utc_timestamp(nullable=True)
    completed: bool = False
    response_status: int | None = None
    response_body: str | None = None
    response_headers: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = utc_timestamp(nullable=False)
    completed_at: datetime | None = utc_timestamp(nullable=True)
