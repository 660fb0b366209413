"""`erp users create-admin EMAIL --password PASSWORD`: the first administrator.

Works on a fresh installation (creates the database, migrates, seeds the roles) and on a
running one (promotes an existing user). The user ends up active, verified and super-admin.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from services.auth import domain
from services.auth.commands import roles, users
from services.auth.service import definition
from services.platform import Database, Settings, UnitOfWork, prepare_database


class AdminError(ValueError):
    """The e-mail address or password is not acceptable."""


async def create_admin(settings: Settings, email: str, password: str, name: str) -> UUID:
    email = domain.normalise_email(email)
    errors = domain.email_errors(email) + domain.password_errors(password, email)
    if errors:
        raise AdminError("; ".join(f"{e.field} {e.message}" for e in errors))
    await prepare_database(definition.migrations, settings.database_url)
    password_hash = await asyncio.to_thread(domain.hash_password, password)
    database = Database(settings)
    try:
        async with UnitOfWork(database, service=definition.name) as uow:
            await roles.seed(uow)
            user_id = await users.make_super_admin(
                uow, email=email, name=name, password_hash=password_hash
            )
            await uow.commit()
            return user_id
    finally:
        await database.dispose()
