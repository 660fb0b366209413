"""The outbox relay: publishes committed outbox rows with publisher confirms (DESIGN §4).

Rows are taken in id order, `FOR UPDATE SKIP LOCKED` on PostgreSQL so that several processes of
one service can relay side by side (SQLite has one writer and ignores the clause). A row is
marked published only after the broker confirmed it, in the same transaction that locked it:
if the broker or the process dies in between, the row stays and is sent again (consumers
dedupe by event_id). A broker error is recorded on the row (`attempts`, `last_error`) and the
relay backs off, doubling up to `max_backoff`, keeping the rows and their order.

A message the broker returns as unroutable while no queue of the topology binds its routing
key has no consumer at all: it is marked published (and counted) instead of blocking the
outbox. When the topology does name a consumer, the row is kept until that queue exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from services.platform.core.contracts import Topology
from services.platform.core.rules import utc_now
from services.platform.messaging.bus import Unroutable
from services.platform.persistence.tables import OutboxMessage
from services.platform.runtime.service import ServiceContext

log = logging.getLogger(__name__)

OUTBOX_PENDING = Gauge(
    "erp_outbox_pending", "Outbox rows committed and not yet published.", ["service"]
)
OUTBOX_LAG = Gauge(
    "erp_outbox_lag_seconds",
    "Age of the oldest unpublished outbox row (0 when the outbox is empty).",
    ["service"],
)
OUTBOX_PUBLISHED = Counter(
    "erp_outbox_published_total", "Outbox rows published (confirmed by the broker).", ["service"]
)
OUTBOX_UNROUTED = Counter(
    "erp_outbox_unrouted_total",
    "Outbox rows published to a routing key no queue consumes (returned by the broker).",
    ["service", "event"],
)
OUTBOX_ERRORS = Counter(
    "erp_outbox_publish_errors_total", "Failed attempts to publish an outbox row.", ["service"]
)

MAX_ERROR_LENGTH = 1000


class OutboxRelay:
    """`await OutboxRelay(ctx).run()` as a background task; cancel it to stop."""

    def __init__(
        self,
        ctx: ServiceContext,
        *,
        batch_size: int = 100,
        poll_interval: float = 1.0,
        max_backoff: float = 15.0,
        topology: Topology | None = None,
    ) -> None:
        self.ctx = ctx
        self.service = ctx.definition.name
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._topology = topology

    @property
    def topology(self) -> Topology:
        return self._topology or self.ctx.definition.topology

    async def run(self) -> None:
        failures = 0
        while True:
            # Cleared before reading: a commit during the batch sets it again and is not missed.
            self.ctx.outbox_signal.clear()
            try:
                while await self.relay_once() == self.batch_size:
                    pass  # a full batch: more may be waiting
            except Exception as error:
                failures += 1
                delay = min(self.max_backoff, self.poll_interval * 2 ** (failures - 1))
                log.warning(
                    "%s outbox relay: %s; retrying in %.1fs", self.service, _brief(error), delay
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            await self._wait()

    async def _wait(self) -> None:
        """Until a commit wrote outbox rows, or the poll interval (rows of another process)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):
                await self.ctx.outbox_signal.wait()

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were marked published.

        On a broker error the rows confirmed so far are marked, the failing row records the
        error, and the error is raised.
        """
        async with self.ctx.database.session() as session:
            statement = (
                select(OutboxMessage)
                .where(col(OutboxMessage.published_at).is_(None))
                .order_by(col(OutboxMessage.id))
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            )
            rows: Sequence[OutboxMessage] = (await session.execute(statement)).scalars().all()
            published, failure = await self._publish(rows)
            await session.commit()
            await self._measure(session)
        OUTBOX_PUBLISHED.labels(self.service).inc(published)
        if failure is not None:
            raise failure
        return published

    async def _publish(self, rows: Sequence[OutboxMessage]) -> tuple[int, Exception | None]:
        published = 0
        for row in rows:
            try:
                await self.ctx.bus.publish(
                    row.exchange,
                    row.routing_key,
                    row.body.encode(),
                    message_id=str(row.event_id),
                    headers=row.headers,
                    persistent=row.persistent,
                    priority=row.priority,
                    expiration_ms=row.expiration_ms,
                    correlation_id=_text(row.headers.get("correlation_id")),
                )
            except Unroutable as error:
                if self.topology.is_routed(row.exchange, row.routing_key):
                    return published, self._failed(row, error)
                log.warning(
                    "%s: %s has no consumer queue; published nowhere", self.service, row.event_name
                )
                OUTBOX_UNROUTED.labels(self.service, row.event_name).inc()
            except Exception as error:  # PublishError, or anything else: progress is kept
                return published, self._failed(row, error)
            row.published_at = utc_now()
            published += 1
        return published, None

    def _failed(self, row: OutboxMessage, error: Exception) -> Exception:
        row.attempts += 1
        row.last_error = _brief(error)[:MAX_ERROR_LENGTH]
        OUTBOX_ERRORS.labels(self.service).inc()
        return error

    async def _measure(self, session: AsyncSession) -> None:
        pending, oldest = (
            await session.execute(
                select(func.count(col(OutboxMessage.id)), func.min(OutboxMessage.created_at)).where(
                    col(OutboxMessage.published_at).is_(None)
                )
            )
        ).one()
        OUTBOX_PENDING.labels(self.service).set(pending)
        OUTBOX_LAG.labels(self.service).set(_age_seconds(oldest))


def _age_seconds(moment: datetime | str | None) -> float:
    if moment is None:
        return 0.0
    if isinstance(moment, str):  # SQLite hands aggregates back as text
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - moment).total_seconds())


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
