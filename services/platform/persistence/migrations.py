"""Alembic operations for the kit tables; each service's first migration calls them.

    def upgrade() -> None:
        kit_tables_upgrade()
        ...the service's own tables...

    def downgrade() -> None:
        ...
        kit_tables_downgrade()

Written out with `alembic.op` (not created from `kit_metadata`) so that a later change to
`tables.py` needs a new migration, exactly like a service table. They work on PostgreSQL and on
SQLite (embedded mode); `tests/platform/test_kit_data.py` checks that they match `tables.py`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

_OUTBOX_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _timestamp(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def kit_tables_upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", _OUTBOX_ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_name", sa.String(200), nullable=False),
        sa.Column("exchange", sa.String(200), nullable=False),
        sa.Column("routing_key", sa.String(200), nullable=False),
        sa.Column("body", sa.String(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("persistent", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("expiration_ms", sa.Integer(), nullable=True),
        _timestamp("created_at", nullable=False),
        _timestamp("published_at", nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.UniqueConstraint("event_id", name="outbox_event_id_key"),
    )
    # The relay scans unpublished rows in id order; the partial index stays small.
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(200), primary_key=True),
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("event_name", sa.String(200), nullable=False),
        _timestamp("handled_at", nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(200), primary_key=True),
        sa.Column("operation_id", sa.String(200), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("lock_token", sa.Uuid(), nullable=True),
        _timestamp("locked_at", nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.String(), nullable=True),
        sa.Column("response_headers", sa.JSON(), nullable=False),
        _timestamp("created_at", nullable=False),
        _timestamp("completed_at", nullable=True),
    )


def kit_tables_downgrade() -> None:
    op.drop_table("idempotency_keys")
    op.drop_table("inbox")
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_table("outbox")
