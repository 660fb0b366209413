"""Sales tables (customers, their addresses) and the kit tables (outbox, inbox, idempotency keys).

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


def _timestamp(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    kit_tables_upgrade()
    op.create_table(
        "customers",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("phone", sa.String(21), nullable=True),
        sa.Column("document", sa.String(14), nullable=False),
        sa.Column("document_type", sa.String(4), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("email", name="customers_email_key"),
        sa.UniqueConstraint("document", name="customers_document_key"),
        sa.UniqueConstraint("user_id", name="customers_user_id_key"),
        sa.CheckConstraint("status IN ('active', 'inactive')", name="customers_status_valid"),
        sa.CheckConstraint(
            "document_type IN ('cpf', 'cnpj')", name="customers_document_type_valid"
        ),
    )
    op.create_table(
        "customer_addresses",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "customer_id",
            sa.Uuid(),
            sa.ForeignKey("customers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("street", sa.String(255), nullable=False),
        sa.Column("number", sa.String(20), nullable=False),
        sa.Column("complement", sa.String(255), nullable=True),
        sa.Column("neighborhood", sa.String(255), nullable=False),
        sa.Column("city", sa.String(255), nullable=False),
        sa.Column("state", sa.String(2), nullable=False),
        sa.Column("zip_code", sa.String(9), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
    )
    op.create_index(
        "ux_customer_addresses_one_default",
        "customer_addresses",
        ["customer_id"],
        unique=True,
        postgresql_where=sa.text("is_default"),
        sqlite_where=sa.text("is_default"),
    )
    op.create_index(
        "ix_customer_addresses_customer_id_position",
        "customer_addresses",
        ["customer_id", "position"],
    )


def downgrade() -> None:
    op.drop_table("customer_addresses")
    op.drop_table("customers")
    kit_tables_downgrade()
