"""Shipments, their tracking history and what the saga told logistics about each order.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LIVE = "status NOT IN ('failed', 'cancelled')"


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "shipments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("order_number", sa.String(20), nullable=False),
        sa.Column("customer_email", sa.String(254), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("origin", sa.JSON(), nullable=False),
        sa.Column("destination", sa.JSON(), nullable=False),
        sa.Column("carrier_code", sa.String(20), nullable=True),
        sa.Column("service_type", sa.String(20), nullable=True),
        sa.Column("tracking_code", sa.String(40), nullable=True),
        sa.Column("estimated_delivery_date", sa.Date(), nullable=True),
        _timestamp("dispatched_at", nullable=True),
        _timestamp("delivered_at", nullable=True),
        sa.Column("received_by", sa.String(255), nullable=True),
        sa.Column("failure_reason", sa.String(255), nullable=True),
        _timestamp("failed_at", nullable=True),
        _timestamp("cancelled_at", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("correlation_id", sa.Uuid(), nullable=True),
        sa.Column("last_event_id", sa.Uuid(), nullable=True),
        sa.UniqueConstraint("order_id", "attempt", name="shipments_order_attempt_key"),
        sa.UniqueConstraint("tracking_code", name="shipments_tracking_code_key"),
    )
    op.create_index(
        "ix_shipments_order_id_live",
        "shipments",
        ["order_id"],
        unique=True,
        postgresql_where=sa.text(_LIVE),
        sqlite_where=sa.text(_LIVE),
    )
    op.create_index("ix_shipments_created_at", "shipments", ["created_at"])
    op.create_index("ix_shipments_status", "shipments", ["status"])
    op.create_table(
        "shipment_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "shipment_id",
            sa.Uuid(),
            sa.ForeignKey("shipments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("message", sa.String(255), nullable=False),
        sa.Column("note", sa.String(500), nullable=True),
        sa.Column("location", sa.String(255), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        _timestamp("occurred_at"),
    )
    op.create_index("ix_shipment_history_shipment_id_id", "shipment_history", ["shipment_id", "id"])
    op.create_table(
        "order_signals",
        sa.Column("order_id", sa.Uuid(), primary_key=True),
        sa.Column("paid", sa.Boolean(), nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        _timestamp("updated_at"),
    )


def downgrade() -> None:
    op.drop_table("order_signals")
    op.drop_table("shipment_history")
    op.drop_table("shipments")
