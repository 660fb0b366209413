"""Financial tables (payments, order cancellations, the ledger) and the kit tables (outbox,
inbox, idempotency keys).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from services.platform import kit_tables_downgrade, kit_tables_upgrade

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_STATUSES = "'pending', 'processing', 'approved', 'declined', 'refunded', 'cancelled'"


def _timestamp(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    kit_tables_upgrade()
    op.create_table(
        "payments",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("order_number", sa.String(20), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("failure_reason", sa.String(255), nullable=True),
        sa.Column("gateway_reference", sa.String(100), nullable=True),
        sa.Column("refund_reference", sa.String(100), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        _timestamp("processed_at", nullable=True),
        _timestamp("refunded_at", nullable=True),
        _timestamp("cancelled_at", nullable=True),
        sa.UniqueConstraint("order_id", name="payments_order_id_key"),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name="payments_status_valid"),
        sa.CheckConstraint("amount >= 0", name="payments_amount_not_negative"),
    )
    op.create_index("ix_payments_created_at", "payments", ["created_at"])
    op.create_index("ix_payments_status", "payments", ["status"])
    op.create_table(
        "order_cancellations",
        sa.Column("order_id", sa.Uuid(), primary_key=True),
        sa.Column("reason", sa.String(255), nullable=False),
        _timestamp("cancelled_at", nullable=False),
    )
    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("type", sa.String(10), nullable=False),
        sa.Column("category", sa.String(30), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("reference", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        _timestamp("occurred_at", nullable=False),
        sa.Column("booked_on", sa.Date(), nullable=False),
        sa.Column("booked_month", sa.Date(), nullable=False),
        sa.UniqueConstraint("payment_id", "type", name="ledger_transactions_payment_type_key"),
        sa.CheckConstraint("type IN ('credit', 'debit')", name="ledger_transactions_type_valid"),
        sa.CheckConstraint(
            "category IN ('sales', 'refunds')", name="ledger_transactions_category_valid"
        ),
        sa.CheckConstraint("amount > 0", name="ledger_transactions_amount_positive"),
    )
    op.create_index("ix_ledger_transactions_booked_on", "ledger_transactions", ["booked_on"])
    op.create_index("ix_ledger_transactions_occurred_at", "ledger_transactions", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("ledger_transactions")
    op.drop_table("order_cancellations")
    op.drop_table("payments")
    kit_tables_downgrade()
