"""The auth part of the demo data set: the demo user whose credentials the login example uses
(specs/openapi/auth.yaml), so "Try it out" → login → Authorize works as written.

Demo only: loaded by embedded `erp up` and by the explicit `erp demo seed`, never by default on
real servers (docs/adr/0008-docs-that-work.md). Through the service's own command on its unit of
work; idempotent (a demo user that exists is left as it is).
"""

from __future__ import annotations

import asyncio
from typing import Final
from uuid import UUID

from services.auth import domain
from services.auth.commands import users
from services.auth.tables import User
from services.platform import ServiceContext

DEMO_USER_ID: Final = UUID("9b2f6c1e-4a7d-4c3b-8f2e-1d5a6b7c8d90")
DEMO_USER_NAME: Final = "Maria Silva"
DEMO_USER_EMAIL: Final = "maria@example.com"
# Public on purpose: it is printed in the docs. Demo data sets are never loaded unasked.
DEMO_USER_PASSWORD: Final = "S3cure-passw0rd"


async def seed_demo(ctx: ServiceContext) -> None:
    """Maria Silva, active, verified and super-admin (she can try every operation)."""
    async with ctx.unit_of_work() as uow:
        if await uow.session.get(User, DEMO_USER_ID) is not None:
            return
        password_hash = await asyncio.to_thread(domain.hash_password, DEMO_USER_PASSWORD)
        await users.make_super_admin(
            uow,
            email=DEMO_USER_EMAIL,
            name=DEMO_USER_NAME,
            password_hash=password_hash,
            new_id=DEMO_USER_ID,
        )
        await uow.commit()
