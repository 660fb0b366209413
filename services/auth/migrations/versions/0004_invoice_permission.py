"""`financial.invoices.generate` becomes `financial.invoices.manage` (ADR 0014): invoices are
generated, issued, sent and cancelled under one permission.

The roles that held the old slug hold the new one, and so do the partner keys granted it; the
old slug leaves the catalogue. Without this an existing installation's admin and financial
roles (granted their permissions once, when they were created) would silently lose invoices.

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

_PERMISSIONS = sa.table(
    "permissions",
    sa.column("slug", sa.String),
    sa.column("module", sa.String),
    sa.column("resource", sa.String),
    sa.column("action", sa.String),
    sa.column("description", sa.String),
)
_ROLE_PERMISSIONS = sa.table(
    "role_permissions", sa.column("role_id", sa.Uuid), sa.column("permission_slug", sa.String)
)
_API_KEYS = sa.table("api_keys", sa.column("id", sa.Uuid), sa.column("permissions", sa.JSON))


def _rename(old: str, new: str, action: str, description: str) -> None:
    connection = op.get_bind()
    known = connection.execute(
        sa.select(_PERMISSIONS.c.slug).where(_PERMISSIONS.c.slug.in_([old, new]))
    ).scalars()
    present = set(known)
    if old not in present:
        return  # a fresh database: the catalogue is seeded with the new slug at start-up
    if new not in present:
        connection.execute(
            _PERMISSIONS.insert().values(
                slug=new,
                module="financial",
                resource="invoices",
                action=action,
                description=description,
            )
        )
    holders = connection.execute(
        sa.select(_ROLE_PERMISSIONS.c.role_id).where(_ROLE_PERMISSIONS.c.permission_slug == old)
    ).scalars()
    held_new = set(
        connection.execute(
            sa.select(_ROLE_PERMISSIONS.c.role_id).where(_ROLE_PERMISSIONS.c.permission_slug == new)
        ).scalars()
    )
    for role_id in set(holders) - held_new:
        connection.execute(_ROLE_PERMISSIONS.insert().values(role_id=role_id, permission_slug=new))
    for key_id, granted in connection.execute(sa.select(_API_KEYS.c.id, _API_KEYS.c.permissions)):
        if old in granted:
            renamed = sorted({new if slug == old else slug for slug in granted})
            connection.execute(
                _API_KEYS.update().where(_API_KEYS.c.id == key_id).values(permissions=renamed)
            )
    connection.execute(_ROLE_PERMISSIONS.delete().where(_ROLE_PERMISSIONS.c.permission_slug == old))
    connection.execute(_PERMISSIONS.delete().where(_PERMISSIONS.c.slug == old))


def upgrade() -> None:
    _rename(
        "financial.invoices.generate",
        "financial.invoices.manage",
        "manage",
        "Generate, issue, send and cancel invoices",
    )


def downgrade() -> None:
    _rename(
        "financial.invoices.manage",
        "financial.invoices.generate",
        "generate",
        "Generate invoices",
    )
