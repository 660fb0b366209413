"""Inventory tables and the kit tables (outbox, inbox, idempotency keys).

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

_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(name: str, target: str, *, nullable: bool, ondelete: str = "RESTRICT") -> sa.Column[object]:
    return sa.Column(name, sa.Uuid(), sa.ForeignKey(target, ondelete=ondelete), nullable=nullable)


def upgrade() -> None:
    kit_tables_upgrade()
    op.create_table(
        "categories",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("slug", sa.String(120), nullable=False),
        _fk("parent_id", "categories.id", nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("slug", name="categories_slug_key"),
    )
    op.create_index("ix_categories_parent_id", "categories", ["parent_id"])
    op.create_table(
        "products",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("sku", sa.String(100), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        _fk("category_id", "categories.id", nullable=True, ondelete="SET NULL"),
        sa.Column("status", sa.String(20), nullable=False),
        _timestamp("deleted_at", nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("sku", name="products_sku_key"),
        sa.CheckConstraint("price >= 0.01 AND price <= 9999999.99", name="products_price_range"),
        sa.CheckConstraint(
            "status IN ('active', 'inactive', 'discontinued')", name="products_status_valid"
        ),
    )
    op.create_index("ix_products_name", "products", ["name"])
    op.create_index("ix_products_category_id", "products", ["category_id"])
    op.create_table(
        "warehouses",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("address", sa.JSON(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("code", name="warehouses_code_key"),
    )
    op.create_table(
        "stock",
        sa.Column(
            "product_id",
            sa.Uuid(),
            sa.ForeignKey("products.id", ondelete="RESTRICT"),
            primary_key=True,
        ),
        sa.Column(
            "warehouse_id",
            sa.Uuid(),
            sa.ForeignKey("warehouses.id", ondelete="RESTRICT"),
            primary_key=True,
        ),
        sa.Column("on_hand", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("min_quantity", sa.Integer(), nullable=False),
        _timestamp("updated_at", nullable=False),
        # The stock invariants, enforced whatever code writes the row.
        sa.CheckConstraint("on_hand >= 0", name="stock_on_hand_not_negative"),
        sa.CheckConstraint("reserved >= 0", name="stock_reserved_not_negative"),
        sa.CheckConstraint("reserved <= on_hand", name="stock_reserved_within_on_hand"),
        sa.CheckConstraint("min_quantity >= 0", name="stock_min_quantity_not_negative"),
    )
    op.create_index("ix_stock_warehouse_id", "stock", ["warehouse_id"])
    op.create_table(
        "stock_movements",
        sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
        _fk("product_id", "products.id", nullable=False),
        _fk("warehouse_id", "warehouses.id", nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("on_hand_before", sa.Integer(), nullable=False),
        sa.Column("on_hand_after", sa.Integer(), nullable=False),
        sa.Column("reserved_before", sa.Integer(), nullable=False),
        sa.Column("reserved_after", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(255), nullable=False),
        sa.Column("reference", sa.String(255), nullable=True),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        _timestamp("created_at", nullable=False),
        sa.CheckConstraint(
            "type IN ('in', 'out', 'adjustment', 'reservation', 'release', 'confirmation')",
            name="stock_movements_type_valid",
        ),
    )
    # Keyset paging walks `id` downwards, within a filter when one is given.
    op.create_index("ix_stock_movements_product_id_id", "stock_movements", ["product_id", "id"])
    op.create_index("ix_stock_movements_warehouse_id_id", "stock_movements", ["warehouse_id", "id"])
    op.create_index("ix_stock_movements_reference", "stock_movements", ["reference"])
    op.create_table(
        "reservations",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(20), nullable=True),
        _fk("warehouse_id", "warehouses.id", nullable=False),
        _timestamp("expires_at", nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("updated_at", nullable=False),
        sa.UniqueConstraint("order_id", name="reservations_order_id_key"),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'released')", name="reservations_status_valid"
        ),
        sa.CheckConstraint(
            "reason IS NULL OR reason IN ('cancelled', 'expired')",
            name="reservations_reason_valid",
        ),
    )
    # The expiry job looks for pending reservations past their expiry.
    op.create_index("ix_reservations_status_expires_at", "reservations", ["status", "expires_at"])
    op.create_table(
        "reservation_items",
        sa.Column(
            "reservation_id",
            sa.Uuid(),
            sa.ForeignKey("reservations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "product_id",
            sa.Uuid(),
            sa.ForeignKey("products.id", ondelete="RESTRICT"),
            primary_key=True,
        ),
        sa.Column(
            "warehouse_id",
            sa.Uuid(),
            sa.ForeignKey("warehouses.id", ondelete="RESTRICT"),
            primary_key=True,
        ),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.CheckConstraint("quantity >= 1", name="reservation_items_quantity_positive"),
    )
    op.create_table(
        "reservation_failures",
        sa.Column("id", _BIGINT_ID, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        _timestamp("created_at", nullable=False),
    )
    op.create_index("ix_reservation_failures_order_id", "reservation_failures", ["order_id"])


def downgrade() -> None:
    op.drop_table("reservation_failures")
    op.drop_table("reservation_items")
    op.drop_table("reservations")
    op.drop_table("stock_movements")
    op.drop_table("stock")
    op.drop_table("warehouses")
    op.drop_table("products")
    op.drop_table("categories")
    kit_tables_downgrade()
