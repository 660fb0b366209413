"""Every stored e-mail address in its canonical form (ADR 0010).

Before, an address was only trimmed and lower-cased: `josé@…` in NFC and in NFD, or a domain in
Unicode and in punycode, could be two accounts. This rewrites each row to the canonical form
(`services.platform.normalise_email`), so that the existing unique constraint `users_email_key`
holds one account per mailbox.

Two accounts that would share one address are never merged: the migration refuses, changing
nothing, with a message listing every such group, and the operator decides (change or delete
all but one of each, then start the service again). Collisions are looked for before any row
is written, and the whole run is one transaction, so no database is ever left half-migrated.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from services.platform import normalise_email

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_users = sa.table(
    "users",
    sa.column("id", sa.Uuid()),
    sa.column("email", sa.String(254)),
    sa.column("deleted_at", sa.DateTime(timezone=True)),
)


class EmailCollisionError(RuntimeError):
    """Existing accounts whose addresses are one mailbox: the operator has to choose."""


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_users.c.id, _users.c.email, _users.c.deleted_at).order_by(_users.c.id)
    ).all()
    groups: dict[str, list[sa.Row[tuple[object, str, object]]]] = defaultdict(list)
    for row in rows:
        groups[normalise_email(row.email)].append(row)
    collisions = {canonical: found for canonical, found in groups.items() if len(found) > 1}
    if collisions:
        raise EmailCollisionError(_collision_report(collisions))
    for canonical, (row,) in groups.items():
        if row.email != canonical:
            # No transient clash: the canonical form is idempotent, so a row already holding
            # another row's canonical address would have been in that row's group.
            connection.execute(
                sa.update(_users).where(_users.c.id == row.id).values(email=canonical)
            )


def _collision_report(collisions: dict[str, list[sa.Row[tuple[object, str, object]]]]) -> str:
    # !a: the NFC and NFD spellings of an address look the same when printed.
    lines = [
        f"{len(collisions)} e-mail address(es) are held by more than one account once "
        "normalised (Unicode NFC, IDNA domain, lower-case; ADR 0010). Nothing was changed. "
        "Change the address of, or delete, all but one account of each group, then migrate "
        "again:"
    ]
    for canonical, found in sorted(collisions.items()):
        lines.append(f"  {canonical!a}:")
        lines += [
            f"    user {row.id}: stored as {row.email!a}"
            + (" (deleted)" if row.deleted_at is not None else "")
            for row in found
        ]
    return "\n".join(lines)


def downgrade() -> None:
    # The canonical form is a valid address under revision 0001's rule (trimmed, lower-case):
    # nothing to undo, and the spellings it replaced are not kept.
    pass
