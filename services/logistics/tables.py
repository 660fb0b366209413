"""The logistics service's tables (SQLModel, in the service's own registry — see
platform/tables.py). Migration 0001 creates the carriers with the kit tables, 0002 the
shipments, their history and what the saga told about each order (ADR 0020)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import JSON, Column, Date, ForeignKey, Index, MetaData, UniqueConstraint, text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from services.platform import utc_timestamp


class LogisticsTable(SQLModel, registry=registry()):
    """Base of the logistics tables; gives them their own MetaData."""


metadata: MetaData = LogisticsTable.metadata


class Carrier(LogisticsTable, table=True):
    """A carrier: its code unique, the service types it offers (domain.ServiceType values, in
    the order given, each once)."""

    __tablename__ = "carriers"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    name: str = Field(max_length=255)
    service_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    active: bool = Field(default=True)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = Field(default=1)


# The statuses after which an order may get another shipment (a retry after a failure).
_LIVE = "status NOT IN ('failed', 'cancelled')"


class Shipment(LogisticsTable, table=True):
    """One attempt at shipping an order. At most one live (not failed or cancelled) shipment
    per order — the partial unique index is the guard a duplicate confirmation meets; attempts
    are numbered per order; tracking codes are unique."""

    __tablename__ = "shipments"
    __table_args__ = (
        UniqueConstraint("order_id", "attempt", name="shipments_order_attempt_key"),
        UniqueConstraint("tracking_code", name="shipments_tracking_code_key"),
        Index(
            "ix_shipments_order_id_live",
            "order_id",
            unique=True,
            postgresql_where=text(_LIVE),
            sqlite_where=text(_LIVE),
        ),
        Index("ix_shipments_created_at", "created_at"),
        Index("ix_shipments_status", "status"),
    )

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    order_id: UUID
    order_number: str = Field(max_length=20)
    customer_email: str = Field(max_length=254)
    status: str = Field(max_length=20)  # domain.ShipmentStatus
    attempt: int = Field(default=1)
    origin: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    destination: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    carrier_code: str | None = Field(default=None, max_length=20)
    service_type: str | None = Field(default=None, max_length=20)
    tracking_code: str | None = Field(default=None, max_length=40)
    estimated_delivery_date: date | None = Field(
        default=None, sa_column=Column(Date(), nullable=True)
    )
    dispatched_at: datetime | None = utc_timestamp(nullable=True)
    delivered_at: datetime | None = utc_timestamp(nullable=True)
    received_by: str | None = Field(default=None, max_length=255)
    failure_reason: str | None = Field(default=None, max_length=255)
    failed_at: datetime | None = utc_timestamp(nullable=True)
    cancelled_at: datetime | None = utc_timestamp(nullable=True)
    created_at: datetime = utc_timestamp(nullable=False)
    updated_at: datetime = utc_timestamp(nullable=False)
    version: int = Field(default=1)
    # The order's conversation (ADR 0023): the correlation id of the `sales.order.confirmed`
    # that made the shipment, and the id of the shipment's latest event — the cause of its next
    # one, also when staff make that move over HTTP. None for demo rows (no conversation).
    correlation_id: UUID | None = Field(default=None)
    last_event_id: UUID | None = Field(default=None)


class ShipmentHistory(LogisticsTable, table=True):
    """The tracking history: one row per move (and per note, e.g. an order cancelled after
    dispatch). `message` is the service's own wording, shown publicly; `note` is the caller's
    text or the reason, for staff only."""

    __tablename__ = "shipment_history"
    __table_args__ = (Index("ix_shipment_history_shipment_id_id", "shipment_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    shipment_id: UUID = Field(
        sa_column=Column(ForeignKey("shipments.id", ondelete="CASCADE"), nullable=False)
    )
    status: str = Field(max_length=20)
    message: str = Field(max_length=255)
    note: str | None = Field(default=None, max_length=500)
    location: str | None = Field(default=None, max_length=255)
    event_id: UUID | None = Field(default=None)  # the event that caused it, if one did
    occurred_at: datetime = utc_timestamp(nullable=False)


class OrderSignal(LogisticsTable, table=True):
    """What the saga told logistics about an order, whatever the arrival order: paid (a later
    shipment starts `preparing`) and cancelled (a later confirmation creates nothing)."""

    __tablename__ = "order_signals"

    order_id: UUID = Field(primary_key=True)
    paid: bool = Field(default=False)
    cancelled: bool = Field(default=False)
    updated_at: datetime = utc_timestamp(nullable=False)
