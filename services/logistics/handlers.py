"""HTTP handlers of the logistics service: one coroutine per operationId of
specs/openapi/logistics.yaml, typed by the generated `LogisticsHandlers` (service.py checks).

Each states its intent — one query or one command — and returns the response model. The kit
does what the spec declares: parameters and body checked and typed, permissions, the unit of
work of a write (committed after the handler), Idempotency-Key, status, ETag and Location.
"""

from __future__ import annotations

from uuid import UUID

from generated.logistics import models
from services.logistics import freight, queries
from services.logistics.commands import carriers, shipments
from services.platform import Call, WriteCall


async def list_carriers(
    call: Call, *, active: bool | None = None, page: int = 1, per_page: int = 15
) -> models.CarrierList:
    return await queries.list_carriers(call.ctx, active=active, page=page, per_page=per_page)


async def create_carrier(call: WriteCall, *, body: models.CarrierCreate) -> models.Carrier:
    return await carriers.create_carrier(call.uow, body)


async def quote_freight(call: WriteCall, *, body: models.QuoteRequest) -> models.QuoteList:
    return await freight.quote_freight(call.ctx, body)


async def get_carrier(call: Call, *, carrier_id: UUID) -> models.Carrier:
    return await queries.get_carrier(call.ctx, carrier_id)


async def update_carrier(
    call: WriteCall,
    *,
    carrier_id: UUID,
    body: models.CarrierUpdate,
    if_match: str | None = None,
) -> models.Carrier:
    return await carriers.update_carrier(call.uow, carrier_id, body, if_match)


async def deactivate_carrier(call: WriteCall, *, carrier_id: UUID) -> models.Carrier:
    return await carriers.deactivate_carrier(call.uow, carrier_id)


async def list_shipments(
    call: Call,
    *,
    status: str | None = None,
    order_id: UUID | None = None,
    carrier_code: str | None = None,
    page: int = 1,
    per_page: int = 15,
) -> models.ShipmentList:
    return await queries.list_shipments(
        call.ctx,
        status=status,
        order_id=order_id,
        carrier_code=carrier_code,
        page=page,
        per_page=per_page,
    )


async def get_shipment(call: Call, *, shipment_id: UUID) -> models.Shipment:
    return await queries.get_shipment(call.ctx, shipment_id)


async def dispatch_shipment(
    call: WriteCall,
    *,
    shipment_id: UUID,
    body: models.ShipmentDispatch,
    if_match: str | None = None,
) -> models.Shipment:
    return await shipments.dispatch(call.uow, shipment_id, body, if_match)


async def mark_shipment_in_transit(
    call: WriteCall,
    *,
    shipment_id: UUID,
    body: models.ShipmentProgress,
    if_match: str | None = None,
) -> models.Shipment:
    return await shipments.mark_in_transit(call.uow, shipment_id, body, if_match)


async def mark_shipment_out_for_delivery(
    call: WriteCall,
    *,
    shipment_id: UUID,
    body: models.ShipmentProgress,
    if_match: str | None = None,
) -> models.Shipment:
    return await shipments.mark_out_for_delivery(call.uow, shipment_id, body, if_match)


async def deliver_shipment(
    call: WriteCall,
    *,
    shipment_id: UUID,
    body: models.ShipmentDelivery,
    if_match: str | None = None,
) -> models.Shipment:
    return await shipments.deliver(call.uow, shipment_id, body, if_match)


async def fail_shipment(
    call: WriteCall,
    *,
    shipment_id: UUID,
    body: models.ShipmentFailure,
    if_match: str | None = None,
) -> models.Shipment:
    return await shipments.fail(call.uow, shipment_id, body, if_match)


async def retry_shipment(
    call: WriteCall, *, shipment_id: UUID, body: models.ShipmentRetry
) -> models.Shipment:
    return await shipments.retry(call.uow, shipment_id, body)


async def track_shipment(call: Call, *, tracking_code: str) -> models.Tracking:
    return await queries.track_shipment(call.ctx, tracking_code, call.caller.client_ip)
