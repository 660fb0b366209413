"""`erp users create-admin EMAIL --password PASSWORD`: the first administrator.

Works on a fresh installation (creates the database, migrates, seeds the roles) and on a
running one (promotes an existing user). The user ends up active, verified and super-admin.
"""

from __future__ import annotations

import asyncio
from uuid import UUID

from sqlmodel import col, select

from services.auth import domain, usecases
from services.auth.service import definition
from services.auth.tables import Role, User, UserRole
from services.platform import Database, Settings, prepare_database, utc_now


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
        async with database.session() as session:
            await usecases.seed(session, database.dialect)
            now = utc_now()
            user = (await session.scalars(select(User).where(col(User.email) == email))).first()
            if user is None:
                user = User(name=name, email=email, password_hash=password_hash, created_at=now)
                session.add(user)
            else:
                user.password_hash = password_hash
                user.version += 1
            user.is_active = True
            user.deleted_at = None
            user.email_verified_at = user.email_verified_at or now
            user.updated_at = now
            await session.flush()
            role = (
                await session.scalars(select(Role).where(col(Role.slug) == domain.SUPER_ADMIN))
            ).one()
            held = await session.get(UserRole, (user.id, role.id))
            if held is None:
                session.add(UserRole(user_id=user.id, role_id=role.id))
            await session.commit()
            return user.id
    finally:
        await database.dispose()
