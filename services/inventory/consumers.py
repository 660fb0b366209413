"""Event handlers of the inventory service: one coroutine per consumed event name.

The kit's consumer wrapper has validated the envelope and payload, recorded the event in the
inbox (a duplicate never reaches these) and opened the unit of work; it commits after the
handler returns. Raising the kit's `DeadLetter` dead-letters the event at once (an illegal
transition); any other exception is retried with back-off, then dead-lettered.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from generated.events.models import (
    SalesOrderCancelledPayload,
    SalesOrderConfirmedPayload,
    SalesOrderCreatedPayload,
)
from services.inventory.commands import reservations
from services.inventory.domain import Line
from services.platform import ServiceContext, UnitOfWork

P = TypeVar("P", bound=BaseModel)


def _as(model: type[P], payload: BaseModel) -> P:
    # The wrapper validated the payload with this event's model; this narrows the type.
    if not isinstance(payload, model):
        raise TypeError(f"expected a {model.__name__}, got {type(payload).__name__}")
    return payload


async def order_created(
    ctx: ServiceContext, uow: UnitOfWork, envelope: dict[str, Any], payload: BaseModel
) -> None:
    order = _as(SalesOrderCreatedPayload, payload)
    lines = [Line(item.product_id, item.quantity) for item in order.items]
    # Reserved, or the failure recorded, in the unit of work the kit commits with the inbox row.
    await reservations.reserve_order(uow, order.order_id, lines)


async def order_confirmed(
    ctx: ServiceContext, uow: UnitOfWork, envelope: dict[str, Any], payload: BaseModel
) -> None:
    order = _as(SalesOrderConfirmedPayload, payload)
    await reservations.confirm_order(uow, order.order_id)


async def order_cancelled(
    ctx: ServiceContext, uow: UnitOfWork, envelope: dict[str, Any], payload: BaseModel
) -> None:
    order = _as(SalesOrderCancelledPayload, payload)
    await reservations.cancel_order(uow, order.order_id)
