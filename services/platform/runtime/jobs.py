"""Periodic jobs the kit runs for every service that needs them."""

from __future__ import annotations

from prometheus_client import Gauge

from services.platform.http.idempotency import purge_expired_keys
from services.platform.runtime.service import PeriodicJob, ServiceContext

DLQ_DEPTH = Gauge("erp_dlq_depth", "Messages waiting in a dead-letter queue.", ["service", "queue"])


async def record_dlq_depth(ctx: ServiceContext) -> None:
    """Export `erp_dlq_depth` for the service's dead-letter queues."""
    queues = ctx.definition.topology.queues_for(ctx.name)
    for queue in dict.fromkeys(q.dead_letter_queue for q in queues):
        DLQ_DEPTH.labels(ctx.name, queue).set(await ctx.bus.depth(queue))


async def _purge_idempotency_keys(ctx: ServiceContext) -> None:
    await purge_expired_keys(ctx.database)


DLQ_DEPTH_JOB = PeriodicJob(
    "dlq-depth", every_seconds=30.0, run=record_dlq_depth, run_at_start=True
)
IDEMPOTENCY_PURGE_JOB = PeriodicJob(
    "idempotency-keys-purge", every_seconds=3600, run=_purge_idempotency_keys
)


def kit_jobs(ctx: ServiceContext) -> list[PeriodicJob]:
    """The kit's jobs for this service: key purge with a database, DLQ depth with queues."""
    return [
        *([IDEMPOTENCY_PURGE_JOB] if ctx.has_database else []),
        *([DLQ_DEPTH_JOB] if ctx.definition.topology.queues_for(ctx.name) else []),
    ]
