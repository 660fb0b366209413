"""What the kit hands a handler: one `Call` (reads) or `WriteCall` (operations that write).

    async def get_product(call: Call, *, product_id: UUID) -> models.Product:
        return await queries.get_product(call.ctx, product_id)

    async def create_product(call: WriteCall, *, body: models.ProductCreate) -> models.Product:
        return await catalogue.create_product(call.uow, call.caller, body)

The generated handler Protocol states which one each operation gets; the kit opens the unit of
work of a `WriteCall` (under the idempotency store when the operation takes an
Idempotency-Key) and commits it after the handler returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.platform.core.scope import Caller
from services.platform.persistence.uow import UnitOfWork
from services.platform.runtime.service import ServiceContext


@dataclass(frozen=True, slots=True)
class Call:
    """A read: who calls, and the running service (for its read sessions, cache, Redis)."""

    caller: Caller
    ctx: ServiceContext


@dataclass(frozen=True, slots=True)
class WriteCall(Call):
    """A write: as `Call`, plus the unit of work the kit commits when the handler returns."""

    uow: UnitOfWork
