"""Shipments (ADR 0020): created from the saga's events, moved by staff through the status
machine (`domain.shipment_move`), each move a row of the tracking history and, where the
contract has one, its `logistics.shipment.*` event in the same unit of work (outbox).

The saga's three events may arrive in any order and more than once. What they said about an
order is kept in `order_signals` (paid, cancelled), so the decision never depends on which came
first: a confirmation creates the order's shipment (`preparing` if paid) unless the order is
known cancelled or already has one; a payment moves a pending shipment to `preparing`; a
cancellation cancels a shipment not yet dispatched and only notes one that is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar
from uuid import UUID, uuid4

from pydantic import MISSING, BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import (
    LogisticsShipmentCreatedPayload,
    LogisticsShipmentDeliveredPayload,
    LogisticsShipmentDispatchedPayload,
    LogisticsShipmentFailedPayload,
    LogisticsShipmentInTransitPayload,
    LogisticsShipmentOutForDeliveryPayload,
    SalesOrderConfirmedPayload,
)
from generated.logistics import models
from services.logistics import domain
from services.logistics.domain import ShipmentStatus
from services.logistics.tables import Carrier, OrderSignal, Shipment, ShipmentHistory
from services.platform import (
    FieldError,
    Problem,
    UnitOfWork,
    WarehouseAddress,
    flush_unique,
    in_conversation,
    require_if_match,
    resource_not_found,
    unprocessable,
    utc_now,
)

_CODE_TAKEN = Problem(409, detail="Another shipment has this tracking code.")
_ALREADY_LIVE = Problem(409, detail="The order has a shipment under way already.")

# What the history says of each move, in the service's words (public tracking shows these).
MESSAGES: dict[ShipmentStatus, str] = {
    ShipmentStatus.PENDING: "Shipment created",
    ShipmentStatus.PREPARING: "Payment approved; preparing the parcel",
    ShipmentStatus.DISPATCHED: "Handed to the carrier",
    ShipmentStatus.IN_TRANSIT: "In transit",
    ShipmentStatus.OUT_FOR_DELIVERY: "Out for delivery",
    ShipmentStatus.DELIVERED: "Delivered",
    ShipmentStatus.FAILED: "Delivery failed",
    ShipmentStatus.CANCELLED: "Shipment cancelled (the order was cancelled)",
}
CANCELLED_AFTER_DISPATCH = "Order cancelled after dispatch; the parcel keeps going"


# --- reading -------------------------------------------------------------------------------


async def history_of(
    session: AsyncSession, shipment_ids: list[UUID]
) -> dict[UUID, list[ShipmentHistory]]:
    found: dict[UUID, list[ShipmentHistory]] = {identifier: [] for identifier in shipment_ids}
    if not shipment_ids:
        return found
    rows = await session.scalars(
        select(ShipmentHistory)
        .where(col(ShipmentHistory.shipment_id).in_(shipment_ids))
        .order_by(col(ShipmentHistory.id))
    )
    for row in rows:
        found[row.shipment_id].append(row)
    return found


def shipment_model(row: Shipment, history: list[ShipmentHistory]) -> models.Shipment:
    return models.Shipment.model_validate(
        {
            **row.model_dump(exclude={"correlation_id", "last_event_id"}),
            "history": [
                {
                    "status": entry.status,
                    "message": entry.message,
                    "note": entry.note,
                    "location": entry.location,
                    "occurred_at": entry.occurred_at,
                }
                for entry in history
            ],
        }
    )


async def _model(uow: UnitOfWork, shipment: Shipment) -> models.Shipment:
    found = await history_of(uow.session, [shipment.id])
    return shipment_model(shipment, found[shipment.id])


# --- writing -------------------------------------------------------------------------------


def _record(
    uow: UnitOfWork,
    shipment: Shipment,
    *,
    message: str | None = None,
    note: str | None = None,
    location: str | None = None,
    event_id: UUID | None = None,
) -> None:
    status = ShipmentStatus(shipment.status)
    uow.session.add(
        ShipmentHistory(
            shipment_id=shipment.id,
            status=status.value,
            message=message or MESSAGES[status],
            note=note,
            location=location,
            event_id=event_id,
            occurred_at=shipment.updated_at,
        )
    )


def _move(shipment: Shipment, target: ShipmentStatus) -> None:
    """The move the machine allows (else IllegalShipmentMoveError), a new version."""
    shipment.status = domain.shipment_move(ShipmentStatus(shipment.status), target).value
    shipment.version += 1
    shipment.updated_at = utc_now()


def _conflict(error: domain.IllegalShipmentMoveError) -> Problem:
    return Problem(409, detail=str(error))


async def _locked(uow: UnitOfWork, shipment_id: UUID) -> Shipment:
    statement = select(Shipment).where(col(Shipment.id) == shipment_id).with_for_update()
    shipment = (await uow.session.scalars(statement)).first()
    if shipment is None:
        raise resource_not_found("Shipment", shipment_id)
    return shipment


async def _live_shipment(uow: UnitOfWork, order_id: UUID) -> Shipment | None:
    """The order's shipment that is not failed or cancelled (at most one: the partial index)."""
    statement = (
        select(Shipment)
        .where(
            col(Shipment.order_id) == order_id,
            col(Shipment.status).not_in(
                [ShipmentStatus.FAILED.value, ShipmentStatus.CANCELLED.value]
            ),
        )
        .with_for_update()
    )
    return (await uow.session.scalars(statement)).first()


async def _signal(uow: UnitOfWork, order_id: UUID) -> OrderSignal:
    """The order's row of signals, created when missing. Two events of one order racing to
    create it meet the primary key; the loser is retried by the kit (23505) and finds it."""
    statement = select(OrderSignal).where(col(OrderSignal.order_id) == order_id).with_for_update()
    found = (await uow.session.scalars(statement)).first()
    if found is None:
        found = OrderSignal(order_id=order_id, updated_at=utc_now())
        uow.session.add(found)
        await uow.session.flush()
    return found


P = TypeVar("P", bound=BaseModel)


def _announce(
    uow: UnitOfWork,
    shipment: Shipment,
    publish: Callable[[UnitOfWork, P], UUID],
    payload: P,
) -> None:
    """Emit the shipment's event in the order's conversation, caused by its previous event
    (ADR 0023): staff's moves over HTTP continue the saga rather than start one of their own."""
    with in_conversation(shipment.correlation_id, shipment.last_event_id):
        shipment.last_event_id = publish(uow, payload)


def _announce_created(uow: UnitOfWork, shipment: Shipment) -> None:
    _announce(
        uow,
        shipment,
        events.publish_logistics_shipment_created,
        LogisticsShipmentCreatedPayload.model_validate(
            {
                "shipment_id": shipment.id,
                "order_id": shipment.order_id,
                "order_number": shipment.order_number,
                "status": shipment.status,
                "attempt": shipment.attempt,
                "customer_email": shipment.customer_email,
                "origin": shipment.origin,
                "destination": shipment.destination,
            }
        ),
    )


# --- the saga's events ------------------------------------------------------------------------


async def create_for_order(
    uow: UnitOfWork,
    order: SalesOrderConfirmedPayload,
    origin: dict[str, Any],
    event_id: UUID,
    correlation: UUID,
) -> Shipment | None:
    """The confirmed order's first shipment, or None when the order is known cancelled or
    has a shipment already (a second confirmation, a redelivery under a new id)."""
    signal = await _signal(uow, order.order_id)
    if signal.cancelled:
        return None
    existing = await uow.session.scalars(
        select(Shipment.id).where(col(Shipment.order_id) == order.order_id)
    )
    if existing.first() is not None:
        return None
    now = utc_now()
    shipment = Shipment(
        id=uuid4(),
        order_id=order.order_id,
        order_number=order.order_number,
        customer_email=str(order.customer_email),
        status=ShipmentStatus.PENDING.value,
        attempt=1,
        origin=origin,
        destination=order.shipping_address.model_dump(),
        created_at=now,
        updated_at=now,
        correlation_id=correlation,
        last_event_id=event_id,
    )
    uow.session.add(shipment)
    await uow.session.flush()
    _record(uow, shipment, event_id=event_id)
    if signal.paid:
        _move(shipment, ShipmentStatus.PREPARING)
        _record(uow, shipment, event_id=event_id)
    await uow.session.flush()
    _announce_created(uow, shipment)
    return shipment


async def record_payment(uow: UnitOfWork, order_id: UUID, event_id: UUID) -> None:
    """The order is paid: its pending shipment starts preparing, or a later one will."""
    signal = await _signal(uow, order_id)
    if not signal.paid:
        signal.paid = True
        signal.updated_at = utc_now()
    shipment = await _live_shipment(uow, order_id)
    if shipment is not None and shipment.status == ShipmentStatus.PENDING.value:
        _move(shipment, ShipmentStatus.PREPARING)
        _record(uow, shipment, event_id=event_id)
    await uow.session.flush()


async def record_cancellation(uow: UnitOfWork, order_id: UUID, reason: str, event_id: UUID) -> None:
    """The order is cancelled: a shipment not yet dispatched is cancelled, one on its way only
    gets a history note (the return is a staff matter). Recorded once, so a redelivery under
    a new id, or a late confirmation, changes nothing."""
    signal = await _signal(uow, order_id)
    if signal.cancelled:
        return
    signal.cancelled = True
    signal.updated_at = utc_now()
    shipment = await _live_shipment(uow, order_id)
    if shipment is None:
        await uow.session.flush()
        return
    status = ShipmentStatus(shipment.status)
    if status in domain.ON_THE_WAY:
        shipment.version += 1  # its history changed
        shipment.updated_at = utc_now()
        _record(uow, shipment, message=CANCELLED_AFTER_DISPATCH, note=reason, event_id=event_id)
    elif status not in domain.FINAL:
        _move(shipment, ShipmentStatus.CANCELLED)
        shipment.cancelled_at = shipment.updated_at
        _record(uow, shipment, note=reason, event_id=event_id)
    await uow.session.flush()


# --- staff's moves ------------------------------------------------------------------------------


def _given(value: object) -> str | None:
    """An optional body field: its text, or None when the caller left it out."""
    return None if value is MISSING else str(value)


def _refused(field: str, message: str) -> Problem:
    return unprocessable("The request breaks the rules; see errors.", [FieldError(field, message)])


async def _carrier_for(uow: UnitOfWork, body: models.ShipmentDispatch) -> Carrier:
    """The active carrier of the code, offering the service type (else the 422 naming why)."""
    statement = select(Carrier).where(col(Carrier.code) == body.carrier_code)
    carrier = (await uow.session.scalars(statement)).first()
    if carrier is None:
        raise _refused("carrier_code", "is not a carrier")
    if not carrier.active:
        raise _refused("carrier_code", "is an inactive carrier")
    if body.service_type.value not in carrier.service_types:
        raise _refused("service_type", "is not a service type the carrier offers")
    return carrier


async def dispatch(
    uow: UnitOfWork, shipment_id: UUID, body: models.ShipmentDispatch, if_match: str | None
) -> models.Shipment:
    shipment = await _locked(uow, shipment_id)
    require_if_match(if_match, shipment.version)
    try:
        _move(shipment, ShipmentStatus.DISPATCHED)
    except domain.IllegalShipmentMoveError as error:
        raise _conflict(error) from None
    carrier = await _carrier_for(uow, body)
    # The carrier's own code (the spec's pattern checked it), stored upper-case; else ours.
    code = domain.new_tracking_code()
    if body.tracking_code is not MISSING:
        code = body.tracking_code.upper()
    taken = await uow.session.scalars(
        select(Shipment.id).where(col(Shipment.tracking_code) == code)
    )
    if taken.first() is not None:
        raise _CODE_TAKEN
    service = domain.ServiceType(body.service_type.value)
    shipment.carrier_code = carrier.code
    shipment.service_type = service.value
    shipment.tracking_code = code
    shipment.dispatched_at = shipment.updated_at
    shipment.estimated_delivery_date = domain.estimated_delivery(
        shipment.updated_at.date(),
        service,
        str(shipment.origin["zip_code"]),
        str(shipment.destination["zip_code"]),
    )
    _record(uow, shipment, location=_given(body.location))
    await flush_unique(uow.session, _CODE_TAKEN)
    _announce(
        uow,
        shipment,
        events.publish_logistics_shipment_dispatched,
        LogisticsShipmentDispatchedPayload.model_validate(
            {
                "shipment_id": shipment.id,
                "order_id": shipment.order_id,
                "order_number": shipment.order_number,
                "customer_email": shipment.customer_email,
                "tracking_code": code,
                "carrier_code": carrier.code,
                "service_type": service.value,
                "estimated_delivery_date": shipment.estimated_delivery_date,
                "dispatched_at": shipment.dispatched_at,
            }
        ),
    )
    return await _model(uow, shipment)


async def _progress(
    uow: UnitOfWork,
    shipment_id: UUID,
    target: ShipmentStatus,
    if_match: str | None,
    *,
    location: str | None,
    note: str | None,
) -> Shipment:
    shipment = await _locked(uow, shipment_id)
    require_if_match(if_match, shipment.version)
    try:
        _move(shipment, target)
    except domain.IllegalShipmentMoveError as error:
        raise _conflict(error) from None
    _record(uow, shipment, note=note, location=location)
    await uow.session.flush()
    return shipment


async def mark_in_transit(
    uow: UnitOfWork, shipment_id: UUID, body: models.ShipmentProgress, if_match: str | None
) -> models.Shipment:
    return await _report_progress(
        uow,
        shipment_id,
        body,
        if_match,
        ShipmentStatus.IN_TRANSIT,
        events.publish_logistics_shipment_in_transit,
        LogisticsShipmentInTransitPayload,
    )


async def mark_out_for_delivery(
    uow: UnitOfWork, shipment_id: UUID, body: models.ShipmentProgress, if_match: str | None
) -> models.Shipment:
    return await _report_progress(
        uow,
        shipment_id,
        body,
        if_match,
        ShipmentStatus.OUT_FOR_DELIVERY,
        events.publish_logistics_shipment_out_for_delivery,
        LogisticsShipmentOutForDeliveryPayload,
    )


async def _report_progress(
    uow: UnitOfWork,
    shipment_id: UUID,
    body: models.ShipmentProgress,
    if_match: str | None,
    target: ShipmentStatus,
    publish: Callable[[UnitOfWork, P], UUID],
    payload: type[P],
) -> models.Shipment:
    """A carrier's scan (in transit, out for delivery): the move and its event, which both
    kinds of scan describe alike (where and when)."""
    location = _given(body.location)
    shipment = await _progress(
        uow, shipment_id, target, if_match, location=location, note=_given(body.note)
    )
    _announce(
        uow,
        shipment,
        publish,
        payload.model_validate(
            {
                "shipment_id": shipment.id,
                "order_id": shipment.order_id,
                "order_number": shipment.order_number,
                "tracking_code": shipment.tracking_code,
                "location": location,
                "at": shipment.updated_at,
            }
        ),
    )
    return await _model(uow, shipment)


async def deliver(
    uow: UnitOfWork, shipment_id: UUID, body: models.ShipmentDelivery, if_match: str | None
) -> models.Shipment:
    shipment = await _progress(
        uow,
        shipment_id,
        ShipmentStatus.DELIVERED,
        if_match,
        location=_given(body.location),
        note=_given(body.note),
    )
    shipment.delivered_at = shipment.updated_at
    shipment.received_by = body.received_by
    await uow.session.flush()
    _announce(
        uow,
        shipment,
        events.publish_logistics_shipment_delivered,
        LogisticsShipmentDeliveredPayload.model_validate(
            {
                "shipment_id": shipment.id,
                "order_id": shipment.order_id,
                "order_number": shipment.order_number,
                "customer_email": shipment.customer_email,
                "tracking_code": shipment.tracking_code,
                "received_by": body.received_by,
                "delivered_at": shipment.delivered_at,
            }
        ),
    )
    return await _model(uow, shipment)


async def fail(
    uow: UnitOfWork, shipment_id: UUID, body: models.ShipmentFailure, if_match: str | None
) -> models.Shipment:
    shipment = await _locked(uow, shipment_id)
    require_if_match(if_match, shipment.version)
    try:
        _move(shipment, ShipmentStatus.FAILED)
    except domain.IllegalShipmentMoveError as error:
        raise _conflict(error) from None
    shipment.failure_reason = body.reason
    shipment.failed_at = shipment.updated_at
    _record(uow, shipment, note=body.reason)
    await uow.session.flush()
    _announce(
        uow,
        shipment,
        events.publish_logistics_shipment_failed,
        LogisticsShipmentFailedPayload.model_validate(
            {
                "shipment_id": shipment.id,
                "order_id": shipment.order_id,
                "order_number": shipment.order_number,
                "customer_email": shipment.customer_email,
                "tracking_code": shipment.tracking_code,
                "reason": body.reason,
                "failed_at": shipment.failed_at,
            }
        ),
    )
    return await _model(uow, shipment)


async def retry(
    uow: UnitOfWork, shipment_id: UUID, body: models.ShipmentRetry, *, new_id: UUID | None = None
) -> models.Shipment:
    """The failed shipment's order gets its next attempt, `preparing` (the order was paid:
    the first shipment was dispatched or at least created from a confirmed order)."""
    failed = await _locked(uow, shipment_id)
    if failed.status != ShipmentStatus.FAILED.value:
        raise Problem(409, detail="Only a failed shipment can be retried.")
    signal = await _signal(uow, failed.order_id)
    if signal.cancelled:
        raise Problem(409, detail="The order was cancelled; its shipment cannot be retried.")
    latest = await uow.session.scalars(
        select(Shipment.attempt)
        .where(col(Shipment.order_id) == failed.order_id)
        .order_by(col(Shipment.attempt).desc())
    )
    if latest.first() != failed.attempt:
        raise Problem(409, detail="Only the order's latest shipment can be retried.")
    now = utc_now()
    shipment = Shipment(
        id=new_id or uuid4(),
        order_id=failed.order_id,
        order_number=failed.order_number,
        customer_email=failed.customer_email,
        status=ShipmentStatus.PREPARING.value,
        attempt=failed.attempt + 1,
        origin=failed.origin,
        destination=failed.destination,
        created_at=now,
        updated_at=now,
        correlation_id=failed.correlation_id,
        last_event_id=failed.last_event_id,
    )
    uow.session.add(shipment)
    await flush_unique(uow.session, _ALREADY_LIVE)
    _record(
        uow,
        shipment,
        message=f"Shipment created again (attempt {shipment.attempt})",
        note=_given(body.note),
    )
    await uow.session.flush()
    _announce_created(uow, shipment)
    return await _model(uow, shipment)


def origin_address(warehouse: WarehouseAddress) -> dict[str, Any]:
    """The configured warehouse as a shipment stores its origin."""
    return asdict(warehouse)
