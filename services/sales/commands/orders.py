"""Orders: placing one (priced from the catalogue replica, numbered without gaps), cancelling
one, and the saga's side in sales — recording inventory's and financial's answers and
confirming or cancelling the order once they decide it (ADR 0018), then logistics' news of its
shipment, which ships and completes it (ADR 0022).

Every change locks the order row, raises its `version`, appends to its status history when the
status moves, and emits its event in the unit of work the kit commits (outbox).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from uuid import UUID, uuid4

from pydantic import MISSING
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from generated.events import publishers as events
from generated.events.models import (
    Address,
    OrderLine,
    SalesOrderCancelledPayload,
    SalesOrderCompletedPayload,
    SalesOrderConfirmedPayload,
    SalesOrderCreatedPayload,
    SalesOrderShippedPayload,
)
from generated.events.models import OrderItem as EventItem
from generated.sales import models
from services.platform import (
    Caller,
    DeadLetter,
    FieldError,
    Problem,
    ServiceContext,
    UnitOfWork,
    check_rules,
    format_amount,
    take_next_number,
    unprocessable,
    utc_now,
)
from services.sales import domain
from services.sales.catalogue import CatalogueUnavailableError, ProductSnapshot
from services.sales.domain import OrderStatus, PaymentStatus, SagaOutcome, StockStatus
from services.sales.tables import (
    Customer,
    CustomerAddress,
    Order,
    OrderItem,
    OrderStatusChange,
    metadata,
)

log = logging.getLogger("services.sales")

STAFF_ORDERS = "sales.orders.create"  # order for anyone, with discounts and shipping fees
STAFF_VIEW = "sales.orders.view"
STAFF_CANCEL = "sales.orders.cancel"

ProductLookup = Callable[[Sequence[UUID]], Awaitable[dict[UUID, ProductSnapshot]]]
_ADDRESS_FIELDS = ("street", "number", "neighborhood", "city", "state", "zip_code", "country")
_CATALOGUE_DOWN = Problem(
    503,
    detail="The catalogue cannot be reached; retry shortly.",
    headers={"Retry-After": "5"},
)


def _refused(field: str, message: str) -> Problem:
    return unprocessable("The request breaks the rules; see errors.", [FieldError(field, message)])


# --- reading an order as the API shows it ----------------------------------------------------


async def order_items(
    session: AsyncSession, order_ids: Sequence[UUID]
) -> dict[UUID, list[OrderItem]]:
    """The lines of each order, in order."""
    statement = (
        select(OrderItem)
        .where(col(OrderItem.order_id).in_(order_ids))
        .order_by(col(OrderItem.order_id), col(OrderItem.position))
    )
    lines: dict[UUID, list[OrderItem]] = {order_id: [] for order_id in order_ids}
    for item in await session.scalars(statement):
        lines[item.order_id].append(item)
    return lines


_SHIPMENT_COLUMNS = frozenset(
    {
        "shipment_id",
        "tracking_code",
        "carrier_code",
        "dispatched_at",
        "delivered_at",
        "shipment_failed_at",
        "shipment_failure",
    }
)


def shipment_of(order: Order) -> domain.Shipment | None:
    if order.shipment_id is None:
        return None
    return domain.Shipment(
        shipment_id=order.shipment_id,
        tracking_code=order.tracking_code,
        carrier_code=order.carrier_code,
        dispatched_at=order.dispatched_at,
        delivered_at=order.delivered_at,
        failed_at=order.shipment_failed_at,
        failure_reason=order.shipment_failure,
    )


def _keep_shipment(order: Order, shipment: domain.Shipment) -> None:
    order.shipment_id = shipment.shipment_id
    order.tracking_code = shipment.tracking_code
    order.carrier_code = shipment.carrier_code
    order.dispatched_at = shipment.dispatched_at
    order.delivered_at = shipment.delivered_at
    order.shipment_failed_at = shipment.failed_at
    order.shipment_failure = shipment.failure_reason


def _shipment_view(shipment: domain.Shipment | None) -> dict[str, object] | None:
    if shipment is None:
        return None
    return {
        "id": shipment.shipment_id,
        "status": shipment.status.value,
        "tracking_code": shipment.tracking_code,
        "carrier_code": shipment.carrier_code,
        "dispatched_at": shipment.dispatched_at,
        "delivered_at": shipment.delivered_at,
        "failed_at": shipment.failed_at,
        "failure_reason": shipment.failure_reason,
    }


def order_model(order: Order, items: Sequence[OrderItem]) -> models.Order:
    status = OrderStatus(order.status)
    waiting = domain.waiting_for(
        status, StockStatus(order.stock_status), PaymentStatus(order.payment_status)
    )
    return models.Order.model_validate(
        {
            **order.model_dump(exclude=set(_SHIPMENT_COLUMNS)),
            "waiting_for": [step.value for step in waiting],
            "items": [item.model_dump(exclude={"order_id", "position"}) for item in items],
            "shipment": _shipment_view(shipment_of(order)),
        }
    )


def can_see_all(caller: Caller) -> bool:
    return STAFF_VIEW in caller.permissions


async def own_customer_id(session: AsyncSession, caller: Caller) -> UUID | None:
    """The customer whose `user_id` the caller is, if any."""
    if caller.user_id is None:
        return None
    statement = select(Customer.id).where(col(Customer.user_id) == caller.user_id)
    return (await session.scalars(statement)).first()


# --- placing an order ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    product: ProductSnapshot
    quantity: int
    discount: Decimal

    @property
    def priced(self) -> domain.PricedLine:
        return domain.PricedLine(self.product.price, self.quantity, self.discount)


async def _customer_for(uow: UnitOfWork, caller: Caller, body: models.OrderCreate) -> Customer:
    staff = STAFF_ORDERS in caller.permissions
    asked = None if body.customer_id is MISSING else body.customer_id
    own = await own_customer_id(uow.session, caller)
    if not staff:
        if own is None:
            raise _refused("customer_id", "your account is not a customer's")
        if asked is not None and asked != own:
            raise Problem(403, detail=f"Missing permission: {STAFF_ORDERS}")
        asked = own
    elif asked is None:
        asked = own
        if asked is None:
            raise _refused("customer_id", "is required")
    customer = await uow.session.get(Customer, asked)
    if customer is None:
        raise _refused("customer_id", "is not a customer")
    if customer.status != domain.CustomerStatus.ACTIVE.value:
        raise _refused("customer_id", "is an inactive customer")
    return customer


async def _shipping_address(
    uow: UnitOfWork, customer: Customer, body: models.OrderCreate
) -> dict[str, object]:
    if body.shipping_address is not MISSING:
        given = body.shipping_address
        address: dict[str, object] = {name: getattr(given, name) for name in _ADDRESS_FIELDS}
        address["complement"] = None if given.complement is MISSING else given.complement
        return address
    statement = select(CustomerAddress).where(
        col(CustomerAddress.customer_id) == customer.id, col(CustomerAddress.is_default)
    )
    default = (await uow.session.scalars(statement)).first()
    if default is None:
        raise _refused("shipping_address", "is required: the customer has no default address")
    return {name: getattr(default, name) for name in (*_ADDRESS_FIELDS, "complement")}


def _lines(body: models.OrderCreate, found: dict[UUID, ProductSnapshot]) -> list[_Line]:
    """The order's lines priced from the catalogue; a 422 naming every line it cannot sell."""
    errors: list[FieldError] = []
    lines: list[_Line] = []
    for index, item in enumerate(body.items):
        product = found.get(item.product_id)
        where = f"items[{index}].product_id"
        if product is None:
            errors.append(FieldError(where, "is not a product of the catalogue"))
        elif product.status != "active":
            errors.append(FieldError(where, f"is not on sale (the product is {product.status})"))
        else:
            lines.append(_Line(product, item.quantity, Decimal(item.discount)))
    if not errors and len({line.product.currency for line in lines}) > 1:
        errors.append(FieldError("items", "every product must be priced in one currency"))
    check_rules(errors)
    return lines


async def _next_number(uow: UnitOfWork, year: int) -> str:
    """The year's next order number. The counter row stays locked until the order commits, so
    concurrent orders take consecutive numbers, and a rolled-back order gives its number back."""
    counters = metadata.tables["order_counters"]
    number = await take_next_number(
        uow.session, uow.dialect, counters, {"year": year}, "last_number"
    )
    if number > domain.MAX_ORDERS_PER_YEAR:
        raise Problem(503, detail="This year's order numbers are used up.")
    return domain.order_number(year, number)


def _history(
    order: Order,
    before: OrderStatus | None,
    reason: str,
    actor: str,
    event_id: UUID | None = None,
) -> OrderStatusChange:
    return OrderStatusChange(
        order_id=order.id,
        from_status=None if before is None else before.value,
        to_status=order.status,
        reason=reason[:255],
        actor=actor[:64],
        event_id=event_id,
        occurred_at=order.updated_at,
    )


async def place_order(
    uow: UnitOfWork,
    caller: Caller,
    body: models.OrderCreate,
    products: ProductLookup,
    *,
    new_id: UUID | None = None,
) -> models.Order:
    """A new pending order, announced with `sales.order.created` (the saga's start)."""
    staff = STAFF_ORDERS in caller.permissions
    if not staff and (
        body.shipping is not MISSING or any(item.discount != "0.00" for item in body.items)
    ):
        raise Problem(403, detail=f"Missing permission: {STAFF_ORDERS}")
    ids = [item.product_id for item in body.items]
    if len(set(ids)) != len(ids):
        raise _refused("items", "must name each product once")
    if body.installments is not MISSING and body.payment_method != "credit_card":
        raise _refused("installments", "are for credit_card payments only")
    customer = await _customer_for(uow, caller, body)
    address = await _shipping_address(uow, customer, body)
    try:
        found = await products(ids)
    except CatalogueUnavailableError:
        raise _CATALOGUE_DOWN from None
    priced_lines = _lines(body, found)
    priced = [line.priced for line in priced_lines]
    check_rules(domain.line_errors(priced))
    shipping = None if body.shipping is MISSING else Decimal(body.shipping)
    totals = domain.totals(priced, shipping)
    if isinstance(totals, FieldError):
        raise unprocessable("The request breaks the rules; see errors.", [totals])

    now = utc_now()
    installments = None
    if body.payment_method == "credit_card":
        installments = 1 if body.installments is MISSING else body.installments
    order = Order(
        id=new_id or uuid4(),
        order_number=await _next_number(uow, now.year),
        customer_id=customer.id,
        customer_email=customer.email,
        status=OrderStatus.PENDING.value,
        stock_status=StockStatus.PENDING.value,
        payment_status=PaymentStatus.PENDING.value,
        subtotal=format_amount(totals.subtotal),
        discount=format_amount(totals.discount),
        shipping=format_amount(totals.shipping),
        total=format_amount(totals.total),
        currency=priced_lines[0].product.currency,
        payment_method=str(body.payment_method),
        installments=installments,
        shipping_address=address,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(order)
    await uow.session.flush()
    items = [
        OrderItem(
            order_id=order.id,
            position=position,
            product_id=line.product.product_id,
            sku=line.product.sku,
            name=line.product.name,
            unit_price=format_amount(line.product.price),
            quantity=line.quantity,
            discount=format_amount(line.discount),
            total=format_amount(line.priced.total),
        )
        for position, line in enumerate(priced_lines)
    ]
    uow.session.add_all(items)
    uow.session.add(_history(order, None, "Order placed", caller.subject))
    await uow.session.flush()
    events.publish_sales_order_created(
        uow,
        SalesOrderCreatedPayload(
            order_id=order.id,
            order_number=order.order_number,
            customer_id=order.customer_id,
            customer_email=order.customer_email,
            items=[
                EventItem(
                    product_id=item.product_id,
                    sku=item.sku,
                    name=item.name,
                    quantity=item.quantity,
                    unit_price=item.unit_price,
                )
                for item in items
            ],
            subtotal=order.subtotal,
            discount=order.discount,
            shipping=order.shipping,
            total=order.total,
            currency=order.currency,
            payment_method=order.payment_method,
            shipping_address=Address.model_validate(address),
        ),
    )
    return order_model(order, items)


# --- moving an order -------------------------------------------------------------------------


async def _locked(uow: UnitOfWork, order_id: UUID) -> Order | None:
    statement = select(Order).where(col(Order.id) == order_id).with_for_update()
    return (await uow.session.scalars(statement)).first()


def _lines_of(items: Sequence[OrderItem]) -> list[OrderLine]:
    return [OrderLine(product_id=item.product_id, quantity=item.quantity) for item in items]


async def _move(
    uow: UnitOfWork,
    order: Order,
    target: OrderStatus,
    reason: str,
    actor: str,
    event_id: UUID | None = None,
) -> list[OrderItem]:
    """Moves the order (IllegalTransitionError when the machine forbids it), records the move
    and announces a confirmation or a cancellation (a shipment's moves are announced by
    `record_shipment`, which has the shipment's facts)."""
    before = OrderStatus(order.status)
    order.status = domain.transition(before, target).value
    now = utc_now()
    order.updated_at = now
    order.version += 1
    items = (await order_items(uow.session, [order.id]))[order.id]
    if target is OrderStatus.CONFIRMED:
        order.confirmed_at = now
        events.publish_sales_order_confirmed(
            uow,
            SalesOrderConfirmedPayload(
                order_id=order.id,
                order_number=order.order_number,
                customer_id=order.customer_id,
                customer_email=order.customer_email,
                total=order.total,
                currency=order.currency,
                shipping_address=Address.model_validate(order.shipping_address),
                items=_lines_of(items),
            ),
        )
    elif target is OrderStatus.CANCELLED:
        order.cancelled_at = now
        order.cancellation_reason = reason[:255]
        events.publish_sales_order_cancelled(
            uow,
            SalesOrderCancelledPayload(
                order_id=order.id,
                order_number=order.order_number,
                customer_id=order.customer_id,
                customer_email=order.customer_email,
                reason=reason[:255],
                items=_lines_of(items),
            ),
        )
    uow.session.add(_history(order, before, reason, actor, event_id))
    return items


def _announce_shipment(
    uow: UnitOfWork, order: Order, target: OrderStatus, shipment: domain.Shipment
) -> None:
    """`sales.order.shipped` or `completed`, from the shipment's facts (domain.shipment_moves
    only moves an order there once the facts each event needs are known)."""
    if target is OrderStatus.SHIPPED:
        events.publish_sales_order_shipped(
            uow,
            SalesOrderShippedPayload.model_validate(
                {
                    "order_id": order.id,
                    "order_number": order.order_number,
                    "customer_id": order.customer_id,
                    "customer_email": order.customer_email,
                    "shipment_id": shipment.shipment_id,
                    "tracking_code": shipment.tracking_code,
                    "carrier_code": shipment.carrier_code,
                    "shipped_at": shipment.dispatched_at,
                }
            ),
        )
    else:
        events.publish_sales_order_completed(
            uow,
            SalesOrderCompletedPayload.model_validate(
                {
                    "order_id": order.id,
                    "order_number": order.order_number,
                    "customer_id": order.customer_id,
                    "customer_email": order.customer_email,
                    "shipment_id": shipment.shipment_id,
                    "delivered_at": shipment.delivered_at,
                }
            ),
        )


async def cancel_order(
    uow: UnitOfWork, caller: Caller, order_id: UUID, reason: str
) -> models.Order:
    """The customer cancels their own pending or confirmed order, or a shipped one whose
    shipment failed; staff any."""
    order = await _locked(uow, order_id)
    if order is None or not (
        STAFF_CANCEL in caller.permissions
        or order.customer_id == await own_customer_id(uow.session, caller)
    ):
        # Another's order is as absent as one that does not exist (no probing for ids).
        raise Problem(404, detail=f"Order {order_id} not found.")
    shipment = shipment_of(order)
    problem = domain.cancel_problem(
        OrderStatus(order.status), None if shipment is None else shipment.status
    )
    if problem is not None:
        raise Problem(409, detail=problem)
    items = await _move(uow, order, OrderStatus.CANCELLED, reason, caller.subject)
    return order_model(order, items)


# --- the saga: inventory's and financial's answers -------------------------------------------

_CANCEL_REASONS = {
    StockStatus.FAILED: "Stock could not be reserved",
    StockStatus.RELEASED: "Stock reservation expired",
    PaymentStatus.DECLINED: "Payment declined",
    PaymentStatus.REFUNDED: "Payment refunded",
}


@dataclass(frozen=True)
class Answer:
    """One answer of the saga: which service gave it (the history's actor), the event."""

    service: str
    event_id: UUID
    detail: str | None = None  # e.g. inventory's or financial's reason
    charged: tuple[str, str] | None = None  # (amount, currency) a payment event states


async def _answered(uow: UnitOfWork, order_id: UUID) -> Order:
    order = await _locked(uow, order_id)
    if order is None:
        # sales commits an order with its sales.order.created: an answer about an order sales
        # never placed is forged or misrouted, and retrying it cannot help.
        raise DeadLetter(f"order {order_id} is not an order of sales")
    return order


async def _decide(uow: UnitOfWork, order: Order, answer: Answer, cause: str | None) -> None:
    outcome = domain.decide(
        OrderStatus(order.status),
        StockStatus(order.stock_status),
        PaymentStatus(order.payment_status),
    )
    if outcome is SagaOutcome.CONFIRM:
        await _move(
            uow,
            order,
            OrderStatus.CONFIRMED,
            "Stock reserved and payment approved",
            answer.service,
            answer.event_id,
        )
    elif outcome is SagaOutcome.CANCEL:
        reason = cause or "Saga failed"
        if answer.detail:
            reason = f"{reason}: {answer.detail}"
        await _move(uow, order, OrderStatus.CANCELLED, reason, answer.service, answer.event_id)
    else:
        order.updated_at = utc_now()
        order.version += 1


async def record_stock(uow: UnitOfWork, order_id: UUID, stock: StockStatus, answer: Answer) -> None:
    """inventory reserved, could not reserve, or released the order's stock."""
    order = await _answered(uow, order_id)
    order.stock_status = domain.stock_answer(StockStatus(order.stock_status), stock).value
    await _decide(uow, order, answer, _CANCEL_REASONS.get(stock))


async def record_payment(
    uow: UnitOfWork, order_id: UUID, payment: PaymentStatus, answer: Answer
) -> None:
    """financial approved, declined or refunded the order's payment."""
    order = await _answered(uow, order_id)
    if answer.charged is not None and answer.charged != (order.total, order.currency):
        amount, currency = answer.charged
        raise DeadLetter(
            f"order {order_id} totals {order.total} {order.currency}, "
            f"the payment event states {amount} {currency}"
        )
    order.payment_status = domain.payment_answer(PaymentStatus(order.payment_status), payment).value
    await _decide(uow, order, answer, _CANCEL_REASONS.get(payment))


# --- the saga after confirmation: logistics' news (ADR 0022) --------------------------------


@dataclass(frozen=True)
class ShipmentNews:
    """One logistics event about the order's shipment: the fact it states and how the order's
    history words it."""

    event_id: UUID
    order_number: str
    fact: domain.Shipment
    what: str  # e.g. "Shipment dispatched with CORREIOS"


def _note(order: Order, reason: str, event_id: UUID) -> OrderStatusChange:
    """A history row that records news without a move (from_status = to_status)."""
    order.updated_at = utc_now()
    return _history(order, OrderStatus(order.status), reason, "logistics", event_id)


async def record_shipment(uow: UnitOfWork, order_id: UUID, news: ShipmentNews) -> None:
    """logistics dispatched, delivered or failed the order's shipment: the fact is kept on the
    order, which ships or completes once the facts say so (domain.shipment_moves), whatever
    order the events came in. A cancelled order stays cancelled: the news is only noted."""
    order = await _answered(uow, order_id)
    if news.order_number != order.order_number:
        raise DeadLetter(
            f"order {order_id} is {order.order_number}, the shipment event states "
            f"{news.order_number}"
        )
    status = OrderStatus(order.status)
    if status is OrderStatus.PENDING:
        # logistics ships an order on its sales.order.confirmed, which sales emits only after
        # confirming it: news about a pending order is forged or misrouted.
        raise DeadLetter(f"order {order_id} is pending: logistics ships confirmed orders only")
    if status is OrderStatus.CANCELLED:
        note = f"Cancelled before logistics' news: {news.what}"
        uow.session.add(_note(order, note, news.event_id))
        order.version += 1
        log.info("order %s is cancelled: logistics' news only noted", order_id)
        return
    shipment = domain.shipment_heard(shipment_of(order), news.fact)
    if shipment is None:
        log.info("order %s: logistics' news changes nothing (a repeat or stale)", order_id)
        return
    _keep_shipment(order, shipment)
    moves = domain.shipment_moves(status, shipment)
    for target in moves:
        reason = "Shipment dispatched" if target is OrderStatus.SHIPPED else "Shipment delivered"
        await _move(uow, order, target, reason, "logistics", news.event_id)
        _announce_shipment(uow, order, target, shipment)
    if not moves:
        # Recorded without a move (a failure, a delivery waiting for its dispatch, a retry):
        # the history says so.
        waiting = status is OrderStatus.CONFIRMED and shipment.dispatched_at is None
        note = (
            f"{news.what}; waiting for its dispatch"
            if waiting and news.fact.delivered_at
            else news.what
        )
        uow.session.add(_note(order, note, news.event_id))
        order.version += 1


async def expire_order(uow: UnitOfWork, order_id: UUID) -> bool:
    """Cancels an order still pending past its deadline (the answers it waits for never came);
    False when it was decided meanwhile."""
    order = await _locked(uow, order_id)
    if order is None or order.status != OrderStatus.PENDING.value:
        return False
    waiting = domain.waiting_for(
        OrderStatus.PENDING, StockStatus(order.stock_status), PaymentStatus(order.payment_status)
    )
    what = " and ".join(step.value for step in waiting) or "a decision"
    await _move(uow, order, OrderStatus.CANCELLED, f"Timed out waiting for {what}", "sales")
    return True


# Inventory releases a reservation after 15 minutes, and that release cancels the order; an
# order still pending after twice as long never got its answers at all (a lost or dead-lettered
# event somewhere): the job cancels it, and the cancellation compensates whatever was done.
ORDER_DEADLINE = timedelta(minutes=30)
EXPIRY_BATCH = 100


async def expire_stale_orders(ctx: ServiceContext, *, deadline: timedelta = ORDER_DEADLINE) -> int:
    """The periodic job: cancel orders pending past the deadline, one transaction each; the
    count."""
    cutoff = utc_now() - deadline
    async with ctx.database.read_session() as session:
        due = (
            await session.scalars(
                select(Order.id)
                .where(
                    col(Order.status) == OrderStatus.PENDING.value,
                    col(Order.created_at) <= cutoff,
                )
                .order_by(col(Order.created_at))
                .limit(EXPIRY_BATCH)
            )
        ).all()
    cancelled = 0
    for order_id in due:
        async with ctx.unit_of_work() as uow:
            if await expire_order(uow, order_id):
                await uow.commit()
                cancelled += 1
    if cancelled:
        log.info("cancelled %d orders that waited past their deadline", cancelled)
    return cancelled
