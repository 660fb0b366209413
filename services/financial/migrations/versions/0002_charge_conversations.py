"""Payments and order cancellations keep the event that caused them (its id and conversation):
the charge and the refund now run after the consumer's transaction, some of them in the
recovery job, and their events still name that event as their cause (ADR 0012, "Charging
outside the transaction").

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


def upgrade() -> None:
    with op.batch_alter_table("payments") as payments:
        payments.add_column(sa.Column("correlation_id", sa.Uuid(), nullable=True))
        payments.add_column(sa.Column("order_event_id", sa.Uuid(), nullable=True))
    with op.batch_alter_table("order_cancellations") as cancellations:
        cancellations.add_column(sa.Column("correlation_id", sa.Uuid(), nullable=True))
        cancellations.add_column(sa.Column("event_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("order_cancellations") as cancellations:
        cancellations.drop_column("event_id")
        cancellations.drop_column("correlation_id")
    with op.batch_alter_table("payments") as payments:
        payments.drop_column("order_event_id")
        payments.drop_column("correlation_id")
