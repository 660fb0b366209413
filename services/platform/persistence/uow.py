"""Unit of work: one database transaction holding the domain change, its outbox rows (events
to publish) and, for a consumer, the inbox row of the event it handled (DESIGN §4).

Besides `emit` (outbox) and `mark_handled` (inbox) a use case gets from it:

* `uow.after_commit(callback)`: a coroutine function run once the transaction has committed
  (cache invalidation, token revocation in Redis, ...). Never run after a rollback.
* `async with uow.savepoint():` a nested transaction (SAVEPOINT), so that a use case can undo
  its own part without rolling back a transaction it does not own (a consumer's, whose inbox
  row the kit wrote). Events and callbacks recorded inside a rolled-back savepoint go too.

Failure model of `after_commit` callbacks — best effort, at most once, after the fact:

* they run inside `commit()`, after the database has committed and the relay was woken, one
  after the other in the order they were registered;
* an exception in one is logged (and counted in `erp_after_commit_failures_total`) and
  swallowed: the commit stands, `commit()` does not raise, the next callbacks still run;
  cancellation (`CancelledError`) is not swallowed and skips the remaining callbacks;
* nothing is stored: if the process dies between the commit and a callback, the callback never
  runs. Use them only for effects whose loss is tolerable or heals by itself (a cache entry
  with a TTL, a blacklist entry for a token that expires anyway, a mirror a periodic job
  rewrites). Anything that must happen goes in the same transaction — an outbox event.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Protocol, TypeAlias
from uuid import UUID, uuid4

from prometheus_client import Counter
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

from services.platform.core import scope as requestctx
from services.platform.core.contracts import EventSpec
from services.platform.core.problems import Problem
from services.platform.core.rules import utc_now
from services.platform.persistence.db import (
    Database,
    affected_rows,
    fetch_and_commit_on,
    fetch_on,
    insert_ignoring_conflicts,
)
from services.platform.persistence.sql import Sql
from services.platform.persistence.tables import OutboxMessage, kit_metadata

log = logging.getLogger(__name__)

AfterCommit: TypeAlias = Callable[[], Awaitable[object]]
"""A callback `uow.after_commit` takes: a coroutine function without arguments."""

AFTER_COMMIT_FAILURES = Counter(
    "erp_after_commit_failures_total",
    "After-commit callbacks that raised (logged and skipped; the commit stood).",
    ["service"],
)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _request_state() -> tuple[str | None, str | None, str | None, str | None]:
    """(request_id, correlation_id, causation_id, user_id) of the request or event in hand."""
    # Imported here: requestctx pulls in the HTTP side, which itself imports the context.

    def text(value: object) -> str | None:
        return None if value is None or value == "" else str(value)

    principal = requestctx.current_principal()
    user_id = principal.subject if principal is not None and principal.kind == "user" else None
    return (
        text(requestctx.request_id.get()),
        text(requestctx.correlation_id.get()),
        text(requestctx.causation_id.get()),
        user_id,
    )


class Savepoint:
    """A nested transaction of a unit of work (see `UnitOfWork.savepoint`)."""

    def __init__(self, uow: UnitOfWork, transaction: AsyncSessionTransaction) -> None:
        self._uow = uow
        self._transaction = transaction
        self._mark = uow._mark()
        self.state: Literal["open", "released", "rolled back"] = "open"

    async def rollback(self) -> None:
        """Undo everything since the savepoint: rows, events emitted, after-commit callbacks.

        The outer transaction goes on. Leave the `async with` block right after: what the block
        writes next belongs to the outer transaction.
        """
        if self.state != "open":
            return
        self.state = "rolled back"
        try:
            await self._transaction.rollback()
        finally:
            self._uow._restore(self._mark)

    async def _release(self) -> None:
        if self.state == "open":
            self.state = "released"
            await self._transaction.commit()  # RELEASE SAVEPOINT


class UnitOfWork:
    """`async with ctx.unit_of_work() as uow: ...; await uow.commit()`.

    Leaving the block without `commit()` (or with an exception) rolls everything back, events
    included, and drops the after-commit callbacks. After a commit that wrote events,
    `on_commit` wakes the outbox relay; then the after-commit callbacks run (module docstring).
    """

    def __init__(
        self,
        database: Database,
        *,
        service: str,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self.session = database.session()
        self.dialect = database.dialect
        self._on_commit = on_commit
        self._pending_events = 0
        self._correlation_id: str | None = None
        self._after_commit: list[AfterCommit] = []
        # Envelopes emitted, in order: those committed, then those the open transaction holds.
        self.emitted: list[dict[str, Any]] = []
        self._committed = 0  # how many of `emitted` are committed

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._restore((self._committed, 0, 0))  # what was not committed is gone
        try:
            await self.session.rollback()  # a no-op after commit()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        """Commit; then wake the relay (if events were written) and run the after-commit
        callbacks. A failing callback is logged, never raised (module docstring)."""
        await self.session.commit()
        self._committed = len(self.emitted)
        callbacks, self._after_commit = self._after_commit, []
        if self._pending_events and self._on_commit is not None:
            self._on_commit()
        self._pending_events = 0
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                AFTER_COMMIT_FAILURES.labels(self.service).inc()
                log.exception(
                    "%s: after-commit callback %s failed; the commit stands",
                    self.service,
                    getattr(callback, "__qualname__", repr(callback)),
                )

    async def fetch_all(self, sql: Sql, **params: Any) -> list[dict[str, Any]]:
        """Run a hand-written statement in this transaction; its rows (if any) as dicts."""
        return await fetch_on(await self.session.connection(), sql, params)

    async def commit_with(self, sql: Sql, **params: Any) -> list[dict[str, Any]]:
        """Run a last hand-written statement and commit, in one round trip to PostgreSQL; its
        rows as dicts. For a hot row many requests queue on (a stock receipt): the lock is
        held only while the server runs the statement and the commit, never while this process
        gets round to sending the next one. Pending ORM changes are flushed before it; the
        after-commit callbacks run as for `commit()`. Should the statement fail, nothing of
        the transaction is committed."""
        await self.session.flush()
        rows = await fetch_and_commit_on(await self.session.connection(), sql, params)
        await self.commit()  # the session's side: nothing left to send; callbacks, relay
        return rows

    async def refuse(self, problem: Problem) -> Problem:
        """Commit what this unit of work holds and give `problem` back to raise:
        `raise await uow.refuse(problem)` keeps the record of a refused attempt (a failed
        login's audit row), which the rollback on the error would otherwise drop. Not for an
        operation that takes an Idempotency-Key (its stored response commits with the effect)."""
        await self.commit()
        return problem

    async def rollback(self) -> None:
        """Roll back everything since the last commit: rows, events, after-commit callbacks."""
        await self.session.rollback()
        self._restore((self._committed, 0, 0))

    def after_commit(self, callback: AfterCommit) -> None:
        """Run `await callback()` after the next successful `commit()`, after the callbacks
        registered before it; never if the transaction (or the savepoint this is registered
        in) rolls back. Best effort: see the module docstring for what a failure does."""
        self._after_commit.append(callback)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[Savepoint]:
        """A nested transaction (SAVEPOINT) for the block.

        The block's changes are released into the outer transaction when it ends normally, and
        rolled back when it raises (the exception goes on) or calls `rollback()` on what this
        yields — rows, outbox events (`emitted` and the relay's pending count) and after-commit
        callbacks recorded inside alike. Either way the outer transaction goes on and is the
        caller's to commit:

            async with uow.savepoint() as attempt:
                if not await take_stock(uow, lines):
                    await attempt.rollback()
        """
        if self.dialect == "sqlite":
            await self._begin_sqlite_transaction()
        point = Savepoint(self, await self.session.begin_nested())
        try:
            yield point
        except BaseException:
            await point.rollback()
            raise
        await point._release()

    async def _begin_sqlite_transaction(self) -> None:
        """Python's sqlite3 (legacy transaction control) opens a transaction only before the
        first INSERT/UPDATE/DELETE: a SAVEPOINT before that would be a transaction of its own,
        committed by its RELEASE. Begin the real transaction first, IMMEDIATE (the write lock
        from the start): a deferred one that reads first fails at once with "database is
        locked" when it comes to write after another connection (the relay, a consumer) has
        committed meanwhile (WAL's stale snapshot, which no busy timeout waits out)."""
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        if not getattr(raw.driver_connection, "in_transaction", True):
            await connection.exec_driver_sql("BEGIN IMMEDIATE")

    def _mark(self) -> tuple[int, int, int]:
        return len(self.emitted), self._pending_events, len(self._after_commit)

    def _restore(self, mark: tuple[int, int, int]) -> None:
        emitted, pending, callbacks = mark
        del self.emitted[emitted:]
        self._pending_events = pending
        del self._after_commit[callbacks:]

    def emit(self, spec: EventSpec, payload: BaseModel) -> UUID:
        """Record an event in the outbox; it is published only if the transaction commits.
        Returns its event id."""
        if spec.producer != self.service:
            raise ValueError(
                f"{self.service} cannot emit {spec.name}: the AsyncAPI document names "
                f"{spec.producer} as its producer"
            )
        if not isinstance(payload, spec.payload_model):
            raise TypeError(
                f"{spec.name} takes a {spec.payload_model.__name__} payload, "
                f"not {type(payload).__name__}"
            )
        # Dump as it goes on the wire (unset optional fields are left out) and validate that
        # form: it also catches models built with model_construct or mutated after creation.
        data = payload.model_dump(mode="json", by_alias=True)
        spec.payload_model.model_validate(data)

        request_id, correlation_id, causation_id, user_id = _request_state()
        if correlation_id is None:
            # Events emitted together outside a request still form one conversation.
            self._correlation_id = self._correlation_id or str(uuid4())
            correlation_id = self._correlation_id
        event_id = uuid4()
        envelope: dict[str, Any] = {
            "event_id": str(event_id),
            "event_name": spec.name,
            "event_version": spec.version,
            "occurred_at": rfc3339(utc_now()),
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "payload": data,
            "metadata": {
                "service": self.service,
                "user_id": user_id,
                "trace_id": request_id or correlation_id,
            },
        }
        headers = {"event_name": spec.name, "event_version": spec.version}
        headers["correlation_id"] = correlation_id
        if causation_id is not None:
            headers["causation_id"] = causation_id
        self.session.add(
            OutboxMessage(
                event_id=event_id,
                event_name=spec.name,
                exchange=spec.exchange,
                routing_key=spec.routing_key,
                body=json.dumps(envelope, separators=(",", ":")),
                headers=headers,
                persistent=spec.persistent,
                priority=spec.priority,
                expiration_ms=spec.ttl_ms,
            )
        )
        self._pending_events += 1
        self.emitted.append(envelope)
        return event_id

    async def mark_handled(self, consumer: str, event_id: UUID | str, event_name: str = "") -> bool:
        """Record that `consumer` handled `event_id`; False when it already had (a duplicate).

        A concurrent duplicate waits on the first one's row lock and then sees the conflict,
        so exactly one of them gets True.
        """
        values = {
            "consumer": consumer,
            "event_id": event_id if isinstance(event_id, UUID) else UUID(str(event_id)),
            "event_name": event_name,
            "handled_at": utc_now(),
        }
        statement = insert_ignoring_conflicts(self.dialect, kit_metadata.tables["inbox"], values)
        return affected_rows(await self.session.execute(statement)) == 1


class Transactional(Protocol):
    """What opens units of work on a service's database (the running service's context)."""

    @property
    def database(self) -> Database: ...

    def unit_of_work(self) -> UnitOfWork: ...


async def flush_unique(session: AsyncSession, conflict: Problem) -> None:
    """Flush; a unique violation (a concurrent insert of the same key, which the check before
    it could not see) becomes `conflict`, the 409 the check would have raised."""
    try:
        await session.flush()
    except IntegrityError:
        raise conflict from None
