"""Orders keep the shipment logistics reported: its id, tracking code, carrier, and when it was
dispatched, delivered or failed, with the failure's reason (ADR 0022).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TIMESTAMPS = ("dispatched_at", "delivered_at", "shipment_failed_at")


def upgrade() -> None:
    with op.batch_alter_table("orders") as orders:
        orders.add_column(sa.Column("shipment_id", sa.Uuid(), nullable=True))
        orders.add_column(sa.Column("tracking_code", sa.String(40), nullable=True))
        orders.add_column(sa.Column("carrier_code", sa.String(20), nullable=True))
        for name in _TIMESTAMPS:
            orders.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        orders.add_column(sa.Column("shipment_failure", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orders") as orders:
        orders.drop_column("shipment_failure")
        for name in reversed(_TIMESTAMPS):
            orders.drop_column(name)
        orders.drop_column("carrier_code")
        orders.drop_column("tracking_code")
        orders.drop_column("shipment_id")
