"""API keys record the key that created them; refresh tokens the access token issued with them
(ADR 0005).

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
    # Batch mode: SQLite (embedded mode) cannot add a foreign key with a plain ALTER TABLE.
    with op.batch_alter_table("api_keys") as api_keys:
        api_keys.add_column(sa.Column("parent_id", sa.Uuid(), nullable=True))
        api_keys.create_foreign_key("api_keys_parent_id_fkey", "api_keys", ["parent_id"], ["id"])
        api_keys.create_index("ix_api_keys_parent_id", ["parent_id"])
    with op.batch_alter_table("refresh_tokens") as refresh_tokens:
        refresh_tokens.add_column(sa.Column("access_token_id", sa.String(64), nullable=True))
        refresh_tokens.create_index("ix_refresh_tokens_access_token_id", ["access_token_id"])


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens") as refresh_tokens:
        refresh_tokens.drop_index("ix_refresh_tokens_access_token_id")
        refresh_tokens.drop_column("access_token_id")
    with op.batch_alter_table("api_keys") as api_keys:
        api_keys.drop_index("ix_api_keys_parent_id")
        api_keys.drop_constraint("api_keys_parent_id_fkey", type_="foreignkey")
        api_keys.drop_column("parent_id")
