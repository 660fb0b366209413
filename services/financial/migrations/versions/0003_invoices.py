"""Invoices (NF-e style) and the per-series counters their numbers come from (ADR 0014).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATUSES = "'pending', 'issued', 'sent', 'cancelled'"


def _timestamp(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "invoice_series",
        sa.Column("series", sa.String(3), primary_key=True),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.CheckConstraint("last_number >= 0", name="invoice_series_last_number"),
    )
    op.create_table(
        "invoices",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("order_number", sa.String(20), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("series", sa.String(3), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("nfe_key", sa.String(44), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("taxes", sa.Numeric(14, 2), nullable=False),
        sa.Column("tax_rate", sa.Numeric(5, 4), nullable=False),
        sa.Column("total", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(255), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        _timestamp("issued_at", nullable=True),
        _timestamp("sent_at", nullable=True),
        _timestamp("cancelled_at", nullable=True),
        sa.UniqueConstraint("series", "number", name="invoices_series_number_key"),
        sa.UniqueConstraint("nfe_key", name="invoices_nfe_key_key"),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name="invoices_status_valid"),
        sa.CheckConstraint("number BETWEEN 1 AND 999999999", name="invoices_number_in_range"),
        sa.CheckConstraint(
            "round(amount + taxes, 2) = round(total, 2)", name="invoices_total_adds_up"
        ),
    )
    op.create_index(
        "ix_invoices_order_id_live",
        "invoices",
        ["order_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'cancelled'"),
        sqlite_where=sa.text("status <> 'cancelled'"),
    )
    op.create_index("ix_invoices_created_at", "invoices", ["created_at"])
    op.create_index("ix_invoices_customer_id", "invoices", ["customer_id"])


def downgrade() -> None:
    op.drop_table("invoices")
    op.drop_table("invoice_series")
