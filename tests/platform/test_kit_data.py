"""The kit's data side against the real PostgreSQL and Redis: database creation and migrations,
unit of work + outbox, inbox dedupe, Idempotency-Key, rate limits, cache and paging."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from uuid import UUID, uuid4

import psycopg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from services.platform.core import scope as requestctx
from services.platform.core.contracts import Topology
from services.platform.core.problems import Problem
from services.platform.core.scope import Principal
from services.platform.core.settings import Settings
from services.platform.http.idempotency import REPLAYED_HEADER, Effect, fingerprint, idempotent
from services.platform.http.responses import Rendered
from services.platform.messaging.bus import InProcessBus, InProcessRouter
from services.platform.persistence.alembic_env import target_metadata
from services.platform.persistence.db import (
    Database,
    alembic_config,
    drop_database,
    ensure_database,
    prepare_database,
)
from services.platform.persistence.pagination import Page, paginate
from services.platform.persistence.redis import JsonCache, Keys
from services.platform.persistence.tables import IdempotentRequest, OutboxMessage
from services.platform.persistence.uow import UnitOfWork
from services.platform.runtime.ratelimit import rate_limit
from services.platform.runtime.runner import StartupError, run_service
from services.platform.runtime.service import PeriodicJob, ServiceContext, current_context
from tests.platform.kit_service import (
    DEFINITION,
    WIDGET_CREATED,
    KitDemoTable,
    Widget,
    WidgetCreated,
)
from tests.support.contexts import migrated_database, service_context
from tests.support.embedded import embedded_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(service_settings: Callable[[str], Settings]) -> Settings:
    return service_settings(DEFINITION.name)


@pytest.fixture(scope="module")
async def ctx(settings: Settings) -> AsyncIterator[ServiceContext]:
    bus = InProcessBus(InProcessRouter(Topology((), ())), service=DEFINITION.name)
    async with (
        migrated_database(DEFINITION, settings) as database,
        service_context(DEFINITION, settings, bus=bus, database=database) as ctx,
    ):
        yield ctx


def _sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "")


# --------------------------------------------------------------------------- migrations


async def test_database_is_created_and_migrated(ctx: ServiceContext, settings: Settings) -> None:
    assert settings.database_url.endswith(f"_{DEFINITION.name}_db")
    await ctx.database.ping()
    # A second start: the database exists and the schema is at head, nothing changes.
    await prepare_database(DEFINITION.migrations, settings.database_url)

    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            assert {"outbox", "inbox", "idempotency_keys", "widgets"} <= tables
            version = connection.execute(text("SELECT version_num FROM alembic_version"))
            assert version.scalar_one() == "0001"
            # The kit migration creates exactly what tables.py declares (no drift).
            migration = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(migration, target_metadata(KitDemoTable.metadata)) == []
    finally:
        engine.dispose()


async def test_migrations_run_on_sqlite_for_embedded_mode(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'kitdemo.db'}"
    await prepare_database(DEFINITION.migrations, url)
    engine = create_engine(_sync_url(url))
    try:
        with engine.connect() as connection:
            assert {"outbox", "inbox", "idempotency_keys", "widgets"} <= set(
                inspect(connection).get_table_names()
            )
            migration = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(migration, target_metadata(KitDemoTable.metadata)) == []
        await asyncio.to_thread(
            command.downgrade, alembic_config(DEFINITION.migrations or Path(), url), "base"
        )
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    await drop_database(url)
    assert not (tmp_path / "nested" / "kitdemo.db").exists()


async def test_ensure_and_drop_a_database_whose_name_needs_quoting(settings: Settings) -> None:
    url = settings.database_url.replace(f"_{DEFINITION.name}_db", '_Odd"Name-db')
    await ensure_database(url)
    await ensure_database(url)  # already there: no error
    database = Database(replace(settings, database_url=url))
    try:
        await database.ping()
    finally:
        await database.dispose()
    await drop_database(url)
    name = make_url(url).database
    server = make_url(url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(
        server.render_as_string(hide_password=False), autocommit=True
    ) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        assert found.fetchone() is None, f"{name} is still there after drop_database"


# --------------------------------------------------------------------------- unit of work


async def _outbox_row(ctx: ServiceContext, event_id: UUID) -> OutboxMessage | None:
    async with ctx.database.session() as session:
        found = await session.scalars(
            select(OutboxMessage).where(col(OutboxMessage.event_id) == event_id)
        )
        return found.one_or_none()


async def test_emit_writes_the_envelope_to_the_outbox(ctx: ServiceContext) -> None:
    ctx.outbox_signal.clear()
    correlation_id, cause_id, request_id = str(uuid4()), str(uuid4()), str(uuid4())
    user = Principal(
        subject=str(uuid4()),
        kind="user",
        permissions=frozenset(),
        roles=(),
        token_id=None,
        expires_at=None,
    )
    tokens = [
        (requestctx.correlation_id, requestctx.correlation_id.set(correlation_id)),
        (requestctx.causation_id, requestctx.causation_id.set(cause_id)),
        (requestctx.request_id, requestctx.request_id.set(request_id)),
        (requestctx.principal, requestctx.principal.set(user)),
    ]
    try:
        async with ctx.unit_of_work() as uow:
            widget = Widget(name=f"w-{uuid4()}")
            uow.session.add(widget)
            uow.emit(WIDGET_CREATED, WidgetCreated(widget_id=widget.id, name=widget.name))
            assert not ctx.outbox_signal.is_set()
            await uow.commit()
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)  # type: ignore[attr-defined]
    assert ctx.outbox_signal.is_set()

    envelope = uow.emitted[0]
    row = await _outbox_row(ctx, UUID(envelope["event_id"]))
    assert row is not None
    assert row.published_at is None
    assert json.loads(row.body) == envelope
    assert envelope["event_name"] == "kitdemo.widget.created"
    assert envelope["event_version"] == "1.0"
    assert datetime.fromisoformat(envelope["occurred_at"]).utcoffset() is not None
    assert envelope["occurred_at"].endswith("Z")
    assert envelope["correlation_id"] == correlation_id
    assert envelope["causation_id"] == cause_id
    assert envelope["payload"] == {"widgetId": str(widget.id), "name": widget.name}  # by alias
    assert envelope["metadata"] == {
        "service": "kitdemo",
        "user_id": user.subject,
        "trace_id": request_id,
    }
    assert (row.exchange, row.routing_key) == ("kitdemo.events", "kitdemo.widget.created")
    assert (row.persistent, row.priority, row.expiration_ms) == (True, 5, 60_000)
    assert row.headers["correlation_id"] == correlation_id
    assert row.headers["causation_id"] == cause_id


async def test_events_outside_a_request_share_a_new_correlation_id(ctx: ServiceContext) -> None:
    async with ctx.unit_of_work() as uow:
        for _ in range(2):
            uow.emit(WIDGET_CREATED, WidgetCreated(widget_id=uuid4(), name="x"))
        await uow.commit()
    first, second = uow.emitted
    assert first["correlation_id"] == second["correlation_id"]
    UUID(first["correlation_id"])
    assert first["causation_id"] is None
    assert first["metadata"]["user_id"] is None
    assert first["event_id"] != second["event_id"]


async def test_without_commit_nothing_is_written(ctx: ServiceContext) -> None:
    ctx.outbox_signal.clear()
    name = f"w-{uuid4()}"

    async def failing_use_case() -> None:
        async with ctx.unit_of_work() as uow:
            uow.session.add(Widget(name=name))
            uow.emit(WIDGET_CREATED, WidgetCreated(widget_id=uuid4(), name=name))
            raise RuntimeError("use case failed")

    with pytest.raises(RuntimeError):
        await failing_use_case()
    async with ctx.unit_of_work() as uow:  # no commit either
        uow.emit(WIDGET_CREATED, WidgetCreated(widget_id=uuid4(), name=name))
    assert not ctx.outbox_signal.is_set()
    async with ctx.database.session() as session:
        widgets = await session.scalar(
            select(func.count()).select_from(Widget).where(col(Widget.name) == name)
        )
        events = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(col(OutboxMessage.body).contains(name))
        )
    assert (widgets, events) == (0, 0)


async def test_emit_refuses_what_breaks_the_contract(ctx: ServiceContext) -> None:
    async with ctx.unit_of_work() as uow:
        with pytest.raises(ValidationError):
            uow.emit(WIDGET_CREATED, WidgetCreated.model_construct(widget_id=uuid4(), name=""))
        with pytest.raises(TypeError):
            uow.emit(WIDGET_CREATED, Page())  # type: ignore[arg-type]
        foreign = UnitOfWork(ctx.database, service="sales")
        with pytest.raises(ValueError, match="producer"):
            foreign.emit(WIDGET_CREATED, WidgetCreated(widget_id=uuid4(), name="x"))
        await foreign.session.close()
    assert uow.emitted == []


# --------------------------------------------------------------------------- inbox


async def test_inbox_records_an_event_once(ctx: ServiceContext) -> None:
    event_id = uuid4()
    async with ctx.unit_of_work() as uow:
        assert await uow.mark_handled("kitdemo", event_id, "sales.order.created")
        await uow.commit()
    async with ctx.unit_of_work() as uow:
        assert not await uow.mark_handled("kitdemo", event_id, "sales.order.created")
        assert await uow.mark_handled("other-consumer", str(event_id))


async def test_inbox_rolled_back_with_a_failed_effect(ctx: ServiceContext) -> None:
    event_id = uuid4()
    async with ctx.unit_of_work() as uow:
        assert await uow.mark_handled("kitdemo", event_id)
        await uow.rollback()
    async with ctx.unit_of_work() as uow:
        assert await uow.mark_handled("kitdemo", event_id)


async def test_concurrent_duplicates_are_handled_once(ctx: ServiceContext) -> None:
    event_id = uuid4()
    async with ctx.unit_of_work() as first, ctx.unit_of_work() as second:
        assert await first.mark_handled("kitdemo", event_id)
        # The second insert waits for the first transaction, then sees its row.
        duplicate = asyncio.create_task(second.mark_handled("kitdemo", event_id))
        await asyncio.sleep(0.2)
        assert not duplicate.done()
        await first.commit()
        assert await duplicate is False


# ------------------------------------------------------------- savepoints, after_commit


async def _widgets_named(ctx: ServiceContext, *names: str) -> set[str]:
    async with ctx.database.session() as session:
        rows = await session.scalars(select(col(Widget.name)).where(col(Widget.name).in_(names)))
        return set(rows.all())


async def _add_in_savepoint(uow: UnitOfWork, name: str) -> None:
    async with uow.savepoint():
        uow.session.add(Widget(name=name))
        await uow.session.flush()


async def test_a_savepoint_undoes_its_part_and_the_transaction_goes_on(
    ctx: ServiceContext,
) -> None:
    ctx.outbox_signal.clear()
    event_id, kept, dropped, clash = uuid4(), f"w-{uuid4()}", f"w-{uuid4()}", f"w-{uuid4()}"
    ran: list[str] = []

    async def callback() -> None:
        ran.append("dropped")

    async with ctx.unit_of_work() as uow:
        assert await uow.mark_handled("kitdemo", event_id)  # the consumer's inbox row
        uow.session.add(Widget(name=kept))
        async with uow.savepoint() as attempt:
            uow.session.add(Widget(name=dropped))
            uow.emit(WIDGET_CREATED, WidgetCreated(widget_id=uuid4(), name=dropped))
            uow.after_commit(callback)
            await uow.session.flush()
            await attempt.rollback()
        # A unique violation inside a savepoint: PostgreSQL aborts only the savepoint.
        with pytest.raises(IntegrityError):
            await _add_in_savepoint(uow, kept)
        uow.emit(WIDGET_CREATED, WidgetCreated(widget_id=uuid4(), name=clash))
        await uow.commit()

    assert await _widgets_named(ctx, kept, dropped) == {kept}
    assert [e["payload"]["name"] for e in uow.emitted] == [clash]
    async with ctx.database.session() as session:
        bodies = list(
            (
                await session.scalars(
                    select(col(OutboxMessage.body)).where(
                        col(OutboxMessage.body).contains(dropped)
                        | col(OutboxMessage.body).contains(clash)
                    )
                )
            ).all()
        )
    assert len(bodies) == 1
    assert clash in bodies[0]
    assert ran == []
    async with ctx.unit_of_work() as uow:  # the inbox row committed with the rest
        assert not await uow.mark_handled("kitdemo", event_id)


async def test_after_commit_callbacks_see_the_commit_and_survive_a_failing_one(
    ctx: ServiceContext,
) -> None:
    name = f"w-{uuid4()}"
    seen: list[set[str]] = []

    async def broken() -> None:
        raise ConnectionError("redis is down")

    async def look() -> None:
        seen.append(await _widgets_named(ctx, name))  # another connection

    async with ctx.unit_of_work() as uow:
        uow.session.add(Widget(name=name))
        uow.after_commit(broken)
        uow.after_commit(look)
        await uow.commit()
    assert seen == [{name}]

    async with ctx.unit_of_work() as uow:
        uow.session.add(Widget(name=f"w-{uuid4()}"))
        uow.after_commit(look)
        await uow.rollback()
    assert seen == [{name}]


# --------------------------------------------------------------------------- idempotency


async def _count_widgets(ctx: ServiceContext, prefix: str) -> int:
    async with ctx.database.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Widget).where(col(Widget.name).startswith(prefix))
        )
    return int(count or 0)


def _create_widget(name: str, gate: asyncio.Event | None = None) -> Effect:
    async def run(uow: UnitOfWork) -> Rendered:
        if gate is not None:
            await gate.wait()
        widget = Widget(name=name)
        uow.session.add(widget)
        uow.emit(WIDGET_CREATED, WidgetCreated(widget_id=widget.id, name=name))
        body = {"id": str(widget.id), "name": name, "note": "é"}
        return Rendered(
            201,
            json.dumps(body, ensure_ascii=False).encode(),
            {"content-type": "application/json", "location": f"/widgets/{widget.id}"},
        )

    return run


async def test_same_key_same_body_replays_the_first_response(ctx: ServiceContext) -> None:
    key, name = str(uuid4()), f"idem-{uuid4()}"
    body = {"name": name, "tags": ["a", "b"], "size": 1}
    first = await idempotent(
        ctx, operation_id="create_widget", key=key, body=body, run=_create_widget(name)
    )
    reordered = {"size": 1, "tags": ["a", "b"], "name": name}
    again = await idempotent(
        ctx,
        operation_id="create_widget",
        key=key,
        body=reordered,
        run=_create_widget(f"{name}-twice"),
    )
    assert again.status == 201
    assert again.body == first.body  # byte for byte, "é" included
    assert again.headers["location"] == first.headers["location"]
    assert again.headers[REPLAYED_HEADER] == "true"
    assert again.headers["content-type"] == "application/json"
    assert await _count_widgets(ctx, name) == 1

    # The key is scoped: another caller or another operation runs afresh.
    other = await idempotent(
        ctx,
        operation_id="create_widget",
        key=key,
        body=body,
        principal="user:someone-else",
        run=_create_widget(f"{name}-other"),
    )
    assert REPLAYED_HEADER not in other.headers
    assert await _count_widgets(ctx, name) == 2


async def test_secrets_are_not_stored_and_a_repeat_is_409(ctx: ServiceContext) -> None:
    key, name = str(uuid4()), f"idem-{uuid4()}"

    async def create_with_secrets(uow: UnitOfWork) -> Rendered:
        body = {"id": "w1", "name": name, "key": "s3cret-1", "pair": {"token": "s3cret-2", "n": 1}}
        return Rendered(201, json.dumps(body).encode(), {"location": "/widgets/w1"})

    secrets = ("key", "pair.token", "absent.field")
    first = await idempotent(
        ctx,
        operation_id="create_widget",
        key=key,
        body={},
        run=create_with_secrets,
        response_secrets=secrets,
    )
    assert b"s3cret-1" in first.body  # the first answer shows them, once
    async with ctx.database.session() as session:
        row = await session.get(IdempotentRequest, ("anonymous", "create_widget", key))
    assert row is not None
    assert json.loads(row.response_body or "") == {"id": "w1", "name": name, "pair": {"n": 1}}

    with pytest.raises(Problem) as raised:
        await idempotent(
            ctx,
            operation_id="create_widget",
            key=key,
            body={},
            run=create_with_secrets,
            response_secrets=secrets,
        )
    assert raised.value.status == 409
    assert raised.value.headers["Location"] == "/widgets/w1"
    assert "shown only once" in (raised.value.detail or "")


def test_request_secrets_are_left_out_of_the_fingerprint() -> None:
    body = {"name": "n", "password": "S3cret-pass", "nested": {"token": "t", "kept": 1}}
    without = ("password", "nested.token")
    assert fingerprint(body, without=without) == fingerprint({"name": "n", "nested": {"kept": 1}})
    other_secrets = {**body, "password": "0ther-pass", "nested": {"token": "u", "kept": 1}}
    assert fingerprint(other_secrets, without=without) == fingerprint(body, without=without)
    assert fingerprint(body) != fingerprint(body, without=without)
    assert body["password"] == "S3cret-pass"  # the caller's body is left as it was


async def test_same_key_other_body_is_422(ctx: ServiceContext) -> None:
    key, name = str(uuid4()), f"idem-{uuid4()}"
    await idempotent(
        ctx, operation_id="create_widget", key=key, body={"name": name}, run=_create_widget(name)
    )
    with pytest.raises(Problem) as raised:
        await idempotent(
            ctx,
            operation_id="create_widget",
            key=key,
            body={"name": "changed"},
            run=_create_widget(f"{name}-2"),
        )
    assert raised.value.status == 422
    assert await _count_widgets(ctx, name) == 1


async def test_retry_while_the_first_runs_is_409(ctx: ServiceContext) -> None:
    key, name, gate = str(uuid4()), f"idem-{uuid4()}", asyncio.Event()
    body = {"name": name}
    first = asyncio.create_task(
        idempotent(
            ctx, operation_id="create_widget", key=key, body=body, run=_create_widget(name, gate)
        )
    )
    await asyncio.sleep(0.2)  # the first request has claimed the key and waits in its effect
    with pytest.raises(Problem) as raised:
        await idempotent(
            ctx, operation_id="create_widget", key=key, body=body, run=_create_widget(name)
        )
    assert raised.value.status == 409
    assert (raised.value.headers or {})["Retry-After"] == "1"
    gate.set()
    assert (await first).status == 201
    assert await _count_widgets(ctx, name) == 1


async def test_a_failed_effect_releases_the_key(ctx: ServiceContext) -> None:
    key, name = str(uuid4()), f"idem-{uuid4()}"

    async def failing(uow: UnitOfWork) -> Rendered:
        uow.session.add(Widget(name=name))
        raise Problem(422, "Unprocessable Content", "insufficient stock")

    with pytest.raises(Problem):
        await idempotent(
            ctx, operation_id="create_widget", key=key, body={"name": name}, run=failing
        )
    assert await _count_widgets(ctx, name) == 0
    retried = await idempotent(
        ctx, operation_id="create_widget", key=key, body={"name": name}, run=_create_widget(name)
    )
    assert retried.status == 201
    assert await _count_widgets(ctx, name) == 1


async def test_a_stale_claim_is_taken_over(ctx: ServiceContext) -> None:
    key, name = str(uuid4()), f"idem-{uuid4()}"
    async with ctx.database.session() as session:
        session.add(
            IdempotentRequest(
                principal="anonymous",
                operation_id="create_widget",
                key=key,
                request_hash="0" * 64,
                lock_token=uuid4(),  # a process that died while running the effect
                locked_at=datetime(2020, 1, 1).astimezone(),
            )
        )
        await session.commit()
    async with ctx.database.session() as session:
        row = await session.get(IdempotentRequest, ("anonymous", "create_widget", key))
        assert row is not None
        row.request_hash = fingerprint({"name": name})
        await session.commit()
    taken = await idempotent(
        ctx, operation_id="create_widget", key=key, body={"name": name}, run=_create_widget(name)
    )
    assert taken.status == 201


async def test_bad_key_is_400_and_no_key_just_runs(ctx: ServiceContext) -> None:
    with pytest.raises(Problem) as raised:
        await idempotent(
            ctx, operation_id="create_widget", key="x" * 256, body={}, run=_create_widget("x")
        )
    assert raised.value.status == 400
    name = f"idem-{uuid4()}"
    plain = await idempotent(
        ctx, operation_id="create_widget", key=None, body={}, run=_create_widget(name)
    )
    assert plain.status == 201
    assert await _count_widgets(ctx, name) == 1


async def test_inbox_and_idempotency_on_sqlite(tmp_path: Path) -> None:
    """Embedded mode: the same semantics on SQLite (ON CONFLICT, rowcounts, naive timestamps)."""
    embedded = embedded_settings(DEFINITION.name, tmp_path)
    bus = InProcessBus(InProcessRouter(Topology((), ())), service=DEFINITION.name)
    async with (
        migrated_database(DEFINITION, embedded) as database,
        service_context(DEFINITION, embedded, bus=bus, database=database) as lite,
    ):
        event_id = uuid4()
        async with lite.unit_of_work() as uow:
            assert await uow.mark_handled("kitdemo", event_id)
            uow.emit(WIDGET_CREATED, WidgetCreated(widget_id=uuid4(), name="lite"))
            await uow.commit()
        async with lite.unit_of_work() as uow:
            assert not await uow.mark_handled("kitdemo", event_id)

        key, body = str(uuid4()), {"name": "lite"}
        first = await idempotent(
            lite, operation_id="create_widget", key=key, body=body, run=_create_widget("lite-1")
        )
        again = await idempotent(
            lite, operation_id="create_widget", key=key, body=body, run=_create_widget("lite-2")
        )
        assert again.body == first.body
        assert await _count_widgets(lite, "lite-") == 1
        with pytest.raises(Problem) as raised:
            await idempotent(
                lite, operation_id="create_widget", key=key, body={}, run=_create_widget("lite-3")
            )
        assert raised.value.status == 422


# --------------------------------------------------------------------------- Redis


async def test_rate_limit_answers_429_with_retry_after(ctx: ServiceContext) -> None:
    key = ctx.keys("ratelimit", "login", uuid4())
    states = [await rate_limit(ctx.redis, key, limit=3, window_seconds=60) for _ in range(3)]
    assert [state.remaining for state in states] == [2, 1, 0]
    assert states[0].headers()["X-RateLimit-Limit"] == "3"
    with pytest.raises(Problem) as raised:
        await rate_limit(ctx.redis, key, limit=3, window_seconds=60)
    assert raised.value.status == 429
    headers = raised.value.headers or {}
    assert 0 < int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Remaining"] == "0"


async def test_rate_limit_is_exact_under_concurrency_and_resets(ctx: ServiceContext) -> None:
    key = ctx.keys("ratelimit", "burst", uuid4())

    async def attempt() -> bool:
        try:
            await rate_limit(ctx.redis, key, limit=5, window_seconds=0.5)
        except Problem:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt() for _ in range(30)))
    assert outcomes.count(True) == 5
    await asyncio.sleep(0.6)
    assert await attempt()


async def test_json_cache_with_ttl_and_tags(ctx: ServiceContext) -> None:
    cache = JsonCache(ctx.redis, Keys(ctx.settings.redis_prefix + f"{uuid4()}:"))
    loads = 0

    async def load() -> dict[str, object]:
        nonlocal loads
        loads += 1
        return {"id": uuid4(), "price": "10.50"}

    key = await cache.tagged_key("products", "list", "page=1")
    first = await cache.get_or_set(key, 60, load)
    assert await cache.get_or_set(key, 60, load) == first
    assert loads == 1
    await cache.invalidate("products")
    fresh = await cache.tagged_key("products", "list", "page=1")
    assert fresh != key
    assert await cache.get(fresh) is None
    await cache.set(cache.key("short"), [1, 2], ttl_seconds=0.05)
    await asyncio.sleep(0.1)
    assert await cache.get(cache.key("short")) is None
    assert await cache.delete_matching(cache.key("*")) >= 2


# --------------------------------------------------------------------------- paging


async def test_paginate_returns_rows_and_meta(ctx: ServiceContext) -> None:
    prefix = f"page-{uuid4()}"
    async with ctx.unit_of_work() as uow:
        uow.session.add_all(Widget(name=f"{prefix}-{index:02}") for index in range(7))
        await uow.commit()
    statement = select(Widget).where(col(Widget.name).startswith(prefix)).order_by(col(Widget.name))
    async with ctx.database.read_session() as session:
        rows, meta = await paginate(session, statement, Page.of(2, 3))
    assert [row.name for row in rows] == [f"{prefix}-{index:02}" for index in (3, 4, 5)]
    assert meta == {"page": 2, "per_page": 3, "total": 7, "last_page": 3}


# --------------------------------------------------------------------------- runtime


async def test_run_service_starts_and_stops_everything(
    service_settings: Callable[[str], Settings],
) -> None:
    settings = service_settings("kitruntime")
    seen: list[str] = []
    ran = asyncio.Event()

    async def on_startup(ctx: ServiceContext) -> None:
        seen.append(f"startup:{current_context().name}:{ctx.bus is not None}")

    async def job(ctx: ServiceContext) -> None:
        seen.append(f"job:{current_context().name}")
        ran.set()

    definition = replace(
        DEFINITION,
        name="kitruntime",
        on_startup=(on_startup,),
        periodic=(PeriodicJob("tick", every_seconds=60, run=job, run_at_start=True),),
    )
    async with run_service(definition, settings) as ctx:
        assert current_context() is ctx
        await asyncio.wait_for(ran.wait(), 5)
        await ctx.database.ping()
        await ctx.bus.ping()
        assert await ctx.redis.ping()
        async with ctx.unit_of_work() as uow:
            assert await uow.mark_handled("kitruntime", uuid4())
            await uow.commit()
    assert seen == ["startup:kitruntime:True", "job:kitruntime"]
    with pytest.raises(RuntimeError, match="no service is running"):
        current_context()


async def test_a_job_that_swallows_its_cancellation_still_stops(
    service_settings: Callable[[str], Settings],
) -> None:
    """A library that catches CancelledError while it cleans up (aiosqlite under SQLAlchemy,
    seen with sales' first orders-expiry run) must not leave the job to sleep a period more:
    the shutdown would wait that long."""
    started = asyncio.Event()

    async def stubborn(ctx: ServiceContext) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            return  # swallowed, as such a library does

    definition = replace(
        DEFINITION,
        name="kitstubborn",
        periodic=(PeriodicJob("stubborn", every_seconds=60, run=stubborn, run_at_start=True),),
    )
    async with asyncio.timeout(10):
        async with run_service(definition, service_settings("kitstubborn")):
            await asyncio.wait_for(started.wait(), 5)


async def test_run_service_names_the_step_that_failed(
    service_settings: Callable[[str], Settings],
) -> None:
    settings = replace(service_settings("kitbroken"), redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(StartupError, match="kitbroken: connecting to Redis"):
        async with run_service(replace(DEFINITION, name="kitbroken"), settings):
            pass
    with pytest.raises(RuntimeError, match="no service is running"):
        current_context()
