"""Orders, their lines, their status history and the yearly order-number counters.

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


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _amount(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.Numeric(14, 2), nullable=False)


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_number", sa.String(15), nullable=False),
        sa.Column("customer_id", sa.Uuid(), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("customer_email", sa.String(254), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("stock_status", sa.String(10), nullable=False),
        sa.Column("payment_status", sa.String(10), nullable=False),
        _amount("subtotal"),
        _amount("discount"),
        _amount("shipping"),
        _amount("total"),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_method", sa.String(13), nullable=False),
        sa.Column("installments", sa.Integer(), nullable=True),
        sa.Column("shipping_address", sa.JSON(), nullable=False),
        sa.Column("cancellation_reason", sa.String(255), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        _timestamp("confirmed_at", nullable=True),
        _timestamp("cancelled_at", nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("order_number", name="orders_order_number_key"),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'shipped', 'completed', 'cancelled')",
            name="orders_status_valid",
        ),
        sa.CheckConstraint(
            "stock_status IN ('pending', 'reserved', 'failed', 'released')",
            name="orders_stock_status_valid",
        ),
        sa.CheckConstraint(
            "payment_status IN ('pending', 'approved', 'declined', 'refunded')",
            name="orders_payment_status_valid",
        ),
        sa.CheckConstraint("total = subtotal - discount + shipping", name="orders_total_adds_up"),
    )
    op.create_index("ix_orders_customer_id_created_at", "orders", ["customer_id", "created_at"])
    op.create_index("ix_orders_status_created_at", "orders", ["status", "created_at"])
    op.create_table(
        "order_items",
        sa.Column(
            "order_id",
            sa.Uuid(),
            sa.ForeignKey("orders.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("sku", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        _amount("unit_price"),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _amount("discount"),
        _amount("total"),
        sa.CheckConstraint("quantity >= 1", name="order_items_quantity_positive"),
        sa.CheckConstraint(
            "discount <= unit_price * quantity", name="order_items_discount_bounded"
        ),
    )
    op.create_table(
        "order_status_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "order_id", sa.Uuid(), sa.ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("from_status", sa.String(10), nullable=True),
        sa.Column("to_status", sa.String(10), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        _timestamp("occurred_at"),
    )
    op.create_index(
        "ix_order_status_history_order_id_id", "order_status_history", ["order_id", "id"]
    )
    op.create_table(
        "order_counters",
        sa.Column("year", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("order_counters")
    op.drop_table("order_status_history")
    op.drop_table("order_items")
    op.drop_table("orders")
