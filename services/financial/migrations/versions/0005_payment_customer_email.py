"""Payments keep the customer's e-mail address from `sales.order.created`, which
`financial.payment.processed|failed` 1.1 carry for notification (ADR 0022). Nullable: payments
made before this migration have none.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as payments:
        payments.add_column(sa.Column("customer_email", sa.String(254), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments") as payments:
        payments.drop_column("customer_email")
