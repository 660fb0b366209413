"""Publishing partner keys to Redis (ADR 0005), through the embedded harness: auth in process on
SQLite and the fakeredis stand-in; the other services' verifier (`PublishedApiKeys`) reads what
it wrote."""

from __future__ import annotations

from uuid import UUID

from sqlmodel import col, select

from services.auth import domain
from services.auth.commands import api_keys, users
from services.auth.service import definition
from services.auth.tables import ApiKey, Role, User, UserRole
from services.platform import Caller, Principal, utc_now
from services.platform.http.security import PublishedApiKeys
from services.platform.runtime.service import ServiceContext
from tests.support.embedded import StartEmbedded

ROOT = Caller(
    principal=Principal(
        subject="00000000-0000-4000-8000-000000000001",
        kind="user",
        permissions=domain.PERMISSION_SLUGS,
    ),
    client_ip=None,
    request_id=None,
    correlation_id=None,
)


async def admin_with_key(ctx: ServiceContext) -> tuple[UUID, str]:
    """An active admin and a partner key it created, published."""
    now = utc_now()
    secret = domain.new_api_key()
    async with ctx.unit_of_work() as uow:
        user = User(
            name="A", email="a@example.com", password_hash="x", created_at=now, updated_at=now
        )
        uow.session.add(user)
        role = (await uow.session.scalars(select(Role).where(col(Role.slug) == "admin"))).one()
        await uow.session.flush()
        uow.session.add(UserRole(user_id=user.id, role_id=role.id))
        uow.session.add(
            ApiKey(
                name="partner",
                prefix=secret.prefix,
                key_hash=secret.key_hash,
                permissions=["inventory.stock.view"],
                created_by=user.id,
                created_at=now,
            )
        )
        await uow.commit()
    await api_keys.publish_api_keys(ctx)
    return user.id, secret.key


async def test_a_publication_read_before_a_change_never_writes_the_old_state_back(
    embedded: StartEmbedded,
) -> None:
    ctx = (await embedded(definition)).ctx
    verifier = PublishedApiKeys(ctx.redis, ctx.keys)
    user_id, key = await admin_with_key(ctx)
    assert (await verifier.verify(key)) is not None

    async with api_keys.KeyPublication(ctx) as slow:  # e.g. the periodic run, reading now
        async with ctx.unit_of_work() as uow:  # the creator is dismissed meanwhile
            await users.deactivate_user(ctx, uow, ROOT, user_id)
            await uow.commit()
        assert await verifier.verify(key) is None
        assert await slow.write() is False  # it would have published the key again
    assert await verifier.verify(key) is None

    # Without a change in between, a publication writes.
    async with api_keys.KeyPublication(ctx) as quiet:
        assert await quiet.write() is True
    assert await verifier.verify(key) is None
