"""The auth part of the demo data set: the rows whose ids and values the spec's examples use
(specs/openapi/auth.yaml), so "Try it out" → login → Authorize, and then every example
request, works as written.

* Maria Silva, `maria@example.com` / `S3cure-passw0rd`: active, verified, super-admin — the
  login example, and the caller who sets up the rest (audited as hers).
* Carlos Pereira, `carlos@example.com`, same demo password: the `user_id` example (sales, not
  yet verified), so the examples that deactivate a user or change its roles never touch Maria.
* Paula Rocha: the delete-user example's (nobody else needs her).
* The custom role `auditor` (the `role_id` example) and `trainee` (the delete-role example's).
* The partner key "Partner ACME" (the `api_key_id` example) and "Old partner integration"
  (the revoke example's). Their secrets are random and never shown: no example needs them.

Secrets the server mints (refresh, e-mail verification and password reset tokens) are not
seeded: each works once and expires, so a fixed value could not work as written; their examples
say which earlier response or e-mail gives the value (docs/adr/0008-docs-that-work.md).

Demo only: loaded by embedded `erp up` and by the explicit `erp demo seed`, never by default on
real servers. Through the service's own commands on its unit of work; idempotent (a row that
exists is left as it is).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final
from uuid import UUID

from generated.auth import models
from services.auth import domain
from services.auth.commands import api_keys, roles, users
from services.auth.tables import ApiKey, Role, User
from services.platform import Caller, Principal, ServiceContext

DEMO_USER_ID: Final = UUID("9b2f6c1e-4a7d-4c3b-8f2e-1d5a6b7c8d90")
DEMO_USER_NAME: Final = "Maria Silva"
DEMO_USER_EMAIL: Final = "maria@example.com"
# Public on purpose: it is printed in the docs. Demo data sets are never loaded unasked.
DEMO_USER_PASSWORD: Final = "S3cure-passw0rd"

CARLOS: Final = UUID("3e4f5a6b-7c8d-4e9f-8a0b-1c2d3e4f5a6b")
CARLOS_EMAIL: Final = "carlos@example.com"
PAULA: Final = UUID("4f5a6b7c-8d9e-4f0a-9b1c-2d3e4f5a6b7c")  # the delete example's
AUDITOR: Final = UUID("7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d")
TRAINEE: Final = UUID("8b9c0d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e")  # the delete example's
PARTNER_KEY: Final = UUID("2b3c4d5e-6f70-4a8b-9c0d-1e2f3a4b5c6d")
OLD_KEY: Final = UUID("3c4d5e6f-7081-4a9b-8c0d-1e2f3a4b5c6e")  # the revoke example's

USERS: Final[list[tuple[UUID, dict[str, Any]]]] = [
    (CARLOS, {"name": "Carlos Pereira", "email": CARLOS_EMAIL, "roles": ["sales"]}),
    (PAULA, {"name": "Paula Rocha", "email": "paula@example.com"}),
]
ROLES: Final[list[tuple[UUID, dict[str, Any]]]] = [
    (
        AUDITOR,
        {
            "slug": "auditor",
            "name": "Auditor",
            "description": "Read-only access to users and the audit log",
            "permissions": ["auth.audit.view", "auth.users.view"],
        },
    ),
    (TRAINEE, {"slug": "trainee", "name": "Trainee", "permissions": ["inventory.products.view"]}),
]
KEYS: Final[list[tuple[UUID, dict[str, Any]]]] = [
    (
        PARTNER_KEY,
        {
            "name": "Partner ACME",
            "permissions": ["inventory.products.view"],
            "expires_at": "2030-01-01T00:00:00Z",
        },
    ),
    (OLD_KEY, {"name": "Old partner integration", "permissions": ["inventory.products.view"]}),
]


async def seed_demo(ctx: ServiceContext) -> None:
    password_hash = await asyncio.to_thread(domain.hash_password, DEMO_USER_PASSWORD)
    async with ctx.unit_of_work() as uow:
        if await uow.session.get(User, DEMO_USER_ID) is None:
            await users.make_super_admin(
                uow,
                email=DEMO_USER_EMAIL,
                name=DEMO_USER_NAME,
                password_hash=password_hash,
                new_id=DEMO_USER_ID,
            )
        await uow.commit()
    maria = Caller(
        principal=Principal(
            subject=str(DEMO_USER_ID),
            kind="user",
            permissions=frozenset(domain.PERMISSION_SLUGS),
            roles=(domain.SUPER_ADMIN,),
        ),
        client_ip=None,
        request_id=None,
        correlation_id=None,
    )
    async with ctx.unit_of_work() as uow:
        for user_id, user in USERS:
            if await uow.session.get(User, user_id) is None:
                person = models.UserCreate.model_validate({**user, "password": DEMO_USER_PASSWORD})
                await users.create_user(uow, maria, person, new_id=user_id)
        for role_id, role in ROLES:
            if await uow.session.get(Role, role_id) is None:
                await roles.create_role(
                    uow, maria, models.RoleCreate.model_validate(role), new_id=role_id
                )
        for key_id, key in KEYS:
            if await uow.session.get(ApiKey, key_id) is None:
                partner = models.ApiKeyCreate.model_validate(key)
                await api_keys.create_api_key(ctx, uow, maria, partner, new_id=key_id)
        await uow.commit()
