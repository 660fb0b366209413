"""The unit of work's after-commit callbacks and savepoints, on SQLite (the same against
PostgreSQL is in tests/platform/test_kit_data.py): callbacks run after a commit, in order,
never after a rollback, and one that fails neither undoes the commit nor skips the others; a
rolled-back savepoint takes its rows, events and callbacks with it and leaves the outer
transaction going."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from services.platform import in_conversation
from services.platform.persistence.db import Database
from services.platform.persistence.sql import Sql
from services.platform.persistence.tables import InboxMessage, OutboxMessage, kit_metadata
from services.platform.persistence.uow import AFTER_COMMIT_FAILURES, AfterCommit, UnitOfWork
from tests.support.embedded import embedded_settings
from tests.support.events import event_spec

SERVICE = "uowdemo"


class Noted(BaseModel):
    n: int


NOTED = event_spec("uowdemo.thing.noted", Noted)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(embedded_settings(SERVICE, tmp_path))
    async with database.engine.begin() as connection:
        await connection.run_sync(kit_metadata.create_all)
    yield database
    await database.dispose()


class Woken:
    """Stands for the relay's signal: counts the commits that wrote events."""

    def __init__(self) -> None:
        self.times = 0

    def __call__(self) -> None:
        self.times += 1


def unit(database: Database, woken: Woken | None = None) -> UnitOfWork:
    return UnitOfWork(database, service=SERVICE, on_commit=woken)


async def inbox(database: Database) -> set[UUID]:
    async with database.session() as session:
        return set((await session.scalars(select(col(InboxMessage.event_id)))).all())


async def outbox_count(database: Database) -> int:
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxMessage)) or 0)


def failures() -> float:
    return float(AFTER_COMMIT_FAILURES.labels(SERVICE)._value.get())


# --------------------------------------------------------------------------- after_commit


async def test_callbacks_run_after_the_commit_in_order(database: Database) -> None:
    seen: list[tuple[str, set[UUID]]] = []
    event_id = uuid4()

    def note(name: str) -> AfterCommit:
        async def callback() -> None:
            # Another connection already sees the committed row: this runs after the commit.
            seen.append((name, await inbox(database)))

        return callback

    async with unit(database) as uow:
        await uow.mark_handled("c", event_id)
        uow.after_commit(note("first"))
        uow.after_commit(note("second"))
        assert seen == []
        await uow.commit()
        assert seen == [("first", {event_id}), ("second", {event_id})]
        # They ran once: a later commit of the same unit of work runs only its own.
        uow.after_commit(note("third"))
        await uow.commit()
    assert [name for name, _ in seen] == ["first", "second", "third"]


async def test_callbacks_never_run_after_a_rollback(database: Database) -> None:
    ran: list[str] = []

    async def callback() -> None:
        ran.append("ran")

    async with unit(database) as uow:  # left without commit
        await uow.mark_handled("c", uuid4())
        uow.after_commit(callback)

    async with unit(database) as uow:  # rolled back, then committed
        uow.after_commit(callback)
        await uow.rollback()
        await uow.commit()

    async def failing() -> None:
        async with unit(database) as uow:  # an exception in the block
            uow.after_commit(callback)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()

    assert ran == []
    assert await inbox(database) == set()


async def test_a_failing_callback_is_logged_and_skips_nothing(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []
    before = failures()
    event_id = uuid4()

    async def broken() -> None:
        raise ConnectionError("redis is down")

    async def fine() -> None:
        ran.append("fine")

    with caplog.at_level(logging.ERROR, logger="services.platform.persistence.uow"):
        async with unit(database) as uow:
            await uow.mark_handled("c", event_id)
            uow.after_commit(broken)
            uow.after_commit(fine)
            await uow.commit()  # does not raise

    assert ran == ["fine"]  # the next callback still ran
    assert await inbox(database) == {event_id}  # the commit stands
    assert failures() == before + 1
    [record] = [r for r in caplog.records if "after-commit callback" in r.getMessage()]
    assert "broken" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ConnectionError)


async def test_a_commit_that_fails_runs_no_callback(database: Database) -> None:
    ran: list[str] = []
    event_id = uuid4()
    async with unit(database) as uow:
        await uow.mark_handled("c", event_id)
        await uow.commit()

    async def callback() -> None:
        ran.append("ran")

    async def duplicate() -> None:
        async with unit(database) as uow:
            uow.session.add(InboxMessage(consumer="c", event_id=event_id, event_name=""))
            uow.after_commit(callback)
            await uow.commit()

    with pytest.raises(IntegrityError):
        await duplicate()
    assert ran == []


# ------------------------------------------------------------------------------ savepoint


async def test_a_rolled_back_savepoint_drops_its_rows_events_and_callbacks(
    database: Database,
) -> None:
    woken, ran = Woken(), []
    kept, dropped = uuid4(), uuid4()

    async def callback() -> None:
        ran.append("inner")

    async with unit(database, woken) as uow:
        await uow.mark_handled("c", kept)  # the caller's part, e.g. the kit's inbox row
        async with uow.savepoint() as attempt:
            await uow.mark_handled("c", dropped)
            uow.emit(NOTED, Noted(n=1))
            uow.after_commit(callback)
            await attempt.rollback()
        assert attempt.state == "rolled back"
        assert uow.emitted == []
        await uow.commit()

    assert await inbox(database) == {kept}
    assert await outbox_count(database) == 0
    assert woken.times == 0  # no event left to relay
    assert ran == []


async def test_an_exception_rolls_the_savepoint_back_and_goes_on(database: Database) -> None:
    woken = Woken()
    kept, dropped = uuid4(), uuid4()

    async def attempt(uow: UnitOfWork) -> None:
        async with uow.savepoint():
            await uow.mark_handled("c", dropped)
            uow.emit(NOTED, Noted(n=2))
            raise LookupError("not enough stock")

    async with unit(database, woken) as uow:
        uow.emit(NOTED, Noted(n=1))
        await uow.mark_handled("c", kept)
        with pytest.raises(LookupError):
            await attempt(uow)
        # The outer transaction is intact and still usable: a failure recorded after it.
        uow.emit(NOTED, Noted(n=3))
        await uow.commit()

    assert await inbox(database) == {kept}
    assert [e["payload"]["n"] for e in uow.emitted] == [1, 3]
    assert await outbox_count(database) == 2
    assert woken.times == 1


async def test_a_database_error_inside_a_savepoint_leaves_the_outer_transaction_usable(
    database: Database,
) -> None:
    first, second = uuid4(), uuid4()

    async def duplicate(uow: UnitOfWork) -> None:
        async with uow.savepoint():
            uow.session.add(InboxMessage(consumer="c", event_id=first, event_name=""))
            await uow.session.flush()

    async with unit(database) as uow:
        await uow.mark_handled("c", first)
        with pytest.raises(IntegrityError):
            await duplicate(uow)
        await uow.mark_handled("c", second)
        await uow.commit()
    assert await inbox(database) == {first, second}


async def test_a_released_savepoint_belongs_to_the_outer_transaction(database: Database) -> None:
    inner, ran = uuid4(), []

    async def callback() -> None:
        ran.append("inner")

    # The savepoint comes first (SQLite's driver would otherwise make it a transaction of its
    # own, committed by its RELEASE): rolling the outer transaction back takes it too.
    async with unit(database) as uow:
        async with uow.savepoint() as attempt:
            await uow.mark_handled("c", inner)
            uow.emit(NOTED, Noted(n=1))
            uow.after_commit(callback)
        assert attempt.state == "released"
        assert len(uow.emitted) == 1
        await uow.rollback()
    assert await inbox(database) == set()
    assert await outbox_count(database) == 0
    assert ran == []

    async with unit(database) as uow:
        async with uow.savepoint():
            await uow.mark_handled("c", inner)
            uow.after_commit(callback)
        await uow.commit()
    assert await inbox(database) == {inner}
    assert ran == ["inner"]


async def test_emitted_lists_what_is_committed_or_still_pending(database: Database) -> None:
    async with unit(database) as uow:
        uow.emit(NOTED, Noted(n=1))
        await uow.commit()
        uow.emit(NOTED, Noted(n=2))
        await uow.rollback()  # takes n=2, not the committed n=1
        assert [e["payload"]["n"] for e in uow.emitted] == [1]
        uow.emit(NOTED, Noted(n=3))  # left without commit
    assert [e["payload"]["n"] for e in uow.emitted] == [1]
    assert await outbox_count(database) == 1


async def test_savepoints_nest(database: Database) -> None:
    outer, middle, inner = uuid4(), uuid4(), uuid4()
    async with unit(database) as uow:
        await uow.mark_handled("c", outer)
        async with uow.savepoint():
            await uow.mark_handled("c", middle)
            async with uow.savepoint() as deepest:
                await uow.mark_handled("c", inner)
                uow.emit(NOTED, Noted(n=1))
                await deepest.rollback()
            uow.emit(NOTED, Noted(n=2))
        await uow.commit()
    assert await inbox(database) == {outer, middle}
    assert [e["payload"]["n"] for e in uow.emitted] == [2]


async def test_on_sqlite_a_savepoint_that_reads_first_still_writes_beside_another_writer(
    database: Database,
) -> None:
    """A transaction the savepoint opens on SQLite holds the write lock from its start: a
    deferred one would read, then fail at once ("database is locked", WAL's stale snapshot)
    when another connection — the relay, a consumer — committed a write in between."""
    first, second = uuid4(), uuid4()
    async with unit(database) as uow:
        async with uow.savepoint():
            assert await uow.fetch_all(Sql("SELECT count(*) AS n FROM inbox")) == [{"n": 0}]
            writer = asyncio.create_task(_mark_handled_elsewhere(database, second))
            await asyncio.sleep(0.05)  # the other writer waits for the lock meanwhile
            await uow.mark_handled("c", first)
        await uow.commit()
    await writer
    assert await inbox(database) == {first, second}


async def _mark_handled_elsewhere(database: Database, event_id: UUID) -> None:
    async with unit(database) as uow:
        await uow.mark_handled("c", event_id)
        await uow.commit()


async def test_events_emitted_in_a_conversation_continue_it(database: Database) -> None:
    correlation, cause = uuid4(), uuid4()
    async with unit(database) as uow:
        with in_conversation(correlation, cause):
            uow.emit(NOTED, Noted(n=1))
        with in_conversation(None, None):
            uow.emit(NOTED, Noted(n=2))
            uow.emit(NOTED, Noted(n=3))
        await uow.commit()
    continued, fresh, fresh_too = uow.emitted
    assert (continued["correlation_id"], continued["causation_id"]) == (
        str(correlation),
        str(cause),
    )
    # No conversation given: a new one (shared by the unit of work's events), and no cause.
    assert fresh["causation_id"] is None
    assert fresh["correlation_id"] not in (None, str(correlation))
    assert fresh_too["correlation_id"] == fresh["correlation_id"]
