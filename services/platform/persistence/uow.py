"""Unit of work: one database transaction holding the domain change, its outbox rows (events
to publish) and, for a consumer, the inbox row of the event it handled (DESIGN §4)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol
from uuid import UUID, uuid4

from pydantic import BaseModel

from services.platform.core import scope as requestctx
from services.platform.core.contracts import EventSpec
from services.platform.core.rules import utc_now
from services.platform.persistence.db import (
    Database,
    affected_rows,
    fetch_on,
    insert_ignoring_conflicts,
)
from services.platform.persistence.sql import Sql
from services.platform.persistence.tables import OutboxMessage, kit_metadata


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


class UnitOfWork:
    """`async with ctx.unit_of_work() as uow: ...; await uow.commit()`.

    Leaving the block without `commit()` (or with an exception) rolls everything back, events
    included. After a commit that wrote events, `on_commit` wakes the outbox relay.
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
        self.emitted: list[dict[str, Any]] = []  # envelopes emitted, in order

    async def __aenter__(self) -> UnitOfWork:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.session.rollback()  # a no-op after commit()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        if self._pending_events and self._on_commit is not None:
            self._on_commit()
        self._pending_events = 0

    async def fetch_all(self, sql: Sql, **params: Any) -> list[dict[str, Any]]:
        """Run a hand-written statement in this transaction; its rows (if any) as dicts."""
        return await fetch_on(await self.session.connection(), sql, params)

    async def rollback(self) -> None:
        await self.session.rollback()
        self._pending_events = 0

    def emit(self, spec: EventSpec, payload: BaseModel) -> None:
        """Record an event in the outbox; it is published only if the transaction commits."""
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
