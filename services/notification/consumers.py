"""What notification does with each event of notification.queue: one coroutine per event,
typed by the generated `NotificationConsumers` Protocol (checked in service.py). Each tells
the people the event concerns (messages.py says who and what) and the subscribed webhooks; the
kit has claimed the event id in Redis (`SET NX`, 24 h) before it calls one."""

from __future__ import annotations

from generated.events.models import (
    AuthUserEmailVerificationRequestedEvent,
    AuthUserPasswordResetRequestedEvent,
    AuthUserRegisteredEvent,
    FinancialPaymentFailedEvent,
    FinancialPaymentProcessedEvent,
    InventoryStockLowAlertEvent,
    LogisticsShipmentDeliveredEvent,
    LogisticsShipmentDispatchedEvent,
    SalesOrderCancelledEvent,
    SalesOrderCompletedEvent,
    SalesOrderConfirmedEvent,
    SalesOrderCreatedEvent,
)
from services.notification.commands.notifications import notify_event
from services.platform import ServiceContext


async def on_auth_user_registered(ctx: ServiceContext, event: AuthUserRegisteredEvent) -> None:
    await notify_event(ctx, event, event.payload)


async def on_auth_user_password_reset_requested(
    ctx: ServiceContext, event: AuthUserPasswordResetRequestedEvent
) -> None:
    await notify_event(ctx, event, event.payload)


async def on_auth_user_email_verification_requested(
    ctx: ServiceContext, event: AuthUserEmailVerificationRequestedEvent
) -> None:
    await notify_event(ctx, event, event.payload)


async def on_inventory_stock_low_alert(
    ctx: ServiceContext, event: InventoryStockLowAlertEvent
) -> None:
    await notify_event(ctx, event, event.payload)


async def on_financial_payment_processed(
    ctx: ServiceContext, event: FinancialPaymentProcessedEvent
) -> None:
    await notify_event(ctx, event, event.payload)


async def on_financial_payment_failed(
    ctx: ServiceContext, event: FinancialPaymentFailedEvent
) -> None:
    await notify_event(ctx, event, event.payload)


async def on_sales_order_created(ctx: ServiceContext, event: SalesOrderCreatedEvent) -> None:
    await notify_event(ctx, event, event.payload)


async def on_sales_order_confirmed(ctx: ServiceContext, event: SalesOrderConfirmedEvent) -> None:
    await notify_event(ctx, event, event.payload)


async def on_sales_order_cancelled(ctx: ServiceContext, event: SalesOrderCancelledEvent) -> None:
    await notify_event(ctx, event, event.payload)


async def on_sales_order_completed(ctx: ServiceContext, event: SalesOrderCompletedEvent) -> None:
    await notify_event(ctx, event, event.payload)


async def on_logistics_shipment_dispatched(
    ctx: ServiceContext, event: LogisticsShipmentDispatchedEvent
) -> None:
    await notify_event(ctx, event, event.payload)


async def on_logistics_shipment_delivered(
    ctx: ServiceContext, event: LogisticsShipmentDeliveredEvent
) -> None:
    await notify_event(ctx, event, event.payload)
