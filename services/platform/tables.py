"""Tables every service database has: the outbox, the inbox and stored idempotent responses.

Each service's first Alembic migration creates them (services.platform.migrations).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Column, DateTime, Index, text
from sqlmodel import Field, SQLModel


def utc_timestamp(**kwargs: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kwargs))


class OutboxMessage(SQLModel, table=True):
    """An event committed with the domain change that caused it, waiting for the relay."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "id", postgresql_where=text("published_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)  # publish order
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


class InboxMessage(SQLModel, table=True):
    """An event a consumer has handled; written in the same transaction as its effects."""

    __tablename__ = "inbox"

    consumer: str = Field(primary_key=True, max_length=200)
    event_id: UUID = Field(primary_key=True)
    event_name: str = Field(max_length=200)
    handled_at: datetime = utc_timestamp(nullable=False)


class IdempotentRequest(SQLModel, table=True):
    """The first response to a request carrying an Idempotency-Key, replayed on retries."""

    __tablename__ = "idempotency_keys"

    principal: str = Field(primary_key=True, max_length=200)
    operation_id: str = Field(primary_key=True, max_length=200)
    key: str = Field(primary_key=True, max_length=255)
    request_hash: str = Field(max_length=64)
    completed: bool = False
    response_status: int | None = None
    response_body: str | None = None
    response_headers: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )
    created_at: datetime = utc_timestamp(nullable=False)
