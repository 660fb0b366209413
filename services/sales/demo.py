"""The sales part of the demo data set: the rows whose ids the spec's examples use
(specs/openapi/sales.yaml, and the sales events of specs/asyncapi/erp.yaml), so every example
request in the docs works as written.

Loaded by embedded `erp up` and by `erp demo seed` (docs/adr/0008-docs-that-work.md), through
the service's own commands on its unit of work; idempotent: what exists already is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from generated.sales import models
from services.platform import ServiceContext, UnitOfWork, insert_ignoring_conflicts
from services.sales.commands import customers, products
from services.sales.tables import (
    Customer,
    CustomerAddress,
    Order,
    OrderItem,
    OrderStatusChange,
    metadata,
)

JOAO = UUID("b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e")
JOAO_HOME = UUID("d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70")  # the default address
JOAO_OFFICE = UUID("e5f6a7b8-c9d0-4e1f-9a2b-3c4d5e6f7081")  # the update and delete examples'
# inventory's demo products (services/inventory/demo.py), as sales' replica knows them
KEYBOARD = UUID("5d1c7a2e-8b3f-4e6a-9c0d-1e2f3a4b5c6d")
WRIST_REST = UUID("6e2d8b3f-9c4a-4f7b-8d1e-2f3a4b5c6d7e")
# ORD-2025-000042: cancelled, its stock released and its payment refunded (financial's demo
# payment); ORD-2025-000045: still waiting for its answers (the cancel example's); 43 and 44
# are financial's paid demo orders (numbers taken, not placed in sales).
DEMO_ORDER = UUID("c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f")
WAITING_ORDER = UUID("9b0c1d2e-3f4a-4b5c-9d6e-8f9a0b1c2d3e")
PLACED_BY = "user:b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"
HOME = {
    "street": "Avenida Paulista",
    "number": "1000",
    "complement": "Apto 12",
    "neighborhood": "Bela Vista",
    "city": "São Paulo",
    "state": "SP",
    "zip_code": "01310-100",
    "country": "BR",
}


def _at(day: int, hour: int) -> datetime:
    return datetime(2025, 1, day, hour, 0, tzinfo=UTC)


def _demo_orders() -> list[tuple[Order, OrderItem, list[OrderStatusChange]]]:
    cancelled = Order(
        id=DEMO_ORDER,
        order_number="ORD-2025-000042",
        customer_id=JOAO,
        customer_email="joao@example.com",
        status="cancelled",
        stock_status="released",
        payment_status="refunded",
        subtotal="699.80",
        discount="0.00",
        shipping="25.00",
        total="724.80",
        currency="BRL",
        payment_method="pix",
        shipping_address=HOME,
        cancellation_reason="Customer changed their mind",
        created_at=_at(15, 12),
        updated_at=_at(15, 14),
        cancelled_at=_at(15, 14),
        version=2,
    )
    waiting = Order(
        id=WAITING_ORDER,
        order_number="ORD-2025-000045",
        customer_id=JOAO,
        customer_email="joao@example.com",
        status="pending",
        stock_status="pending",
        payment_status="pending",
        subtotal="59.90",
        discount="0.00",
        shipping="25.00",
        total="84.90",
        currency="BRL",
        payment_method="boleto",
        shipping_address=HOME,
        created_at=_at(16, 9),
        updated_at=_at(16, 9),
        version=1,
    )
    keyboards = OrderItem(
        order_id=DEMO_ORDER,
        position=0,
        product_id=KEYBOARD,
        sku="KB-MECH-001",
        name="Mechanical keyboard",
        unit_price="349.90",
        quantity=2,
        discount="0.00",
        total="699.80",
    )
    rest = OrderItem(
        order_id=WAITING_ORDER,
        position=0,
        product_id=WRIST_REST,
        sku="KB-REST-001",
        name="Keyboard wrist rest",
        unit_price="59.90",
        quantity=1,
        discount="0.00",
        total="59.90",
    )

    def change(order: Order, before: str | None, after: str, reason: str) -> OrderStatusChange:
        when = order.created_at if before is None else order.updated_at
        return OrderStatusChange(
            order_id=order.id,
            from_status=before,
            to_status=after,
            reason=reason,
            actor=PLACED_BY,
            occurred_at=when,
        )

    return [
        (
            cancelled,
            keyboards,
            [
                change(cancelled, None, "pending", "Order placed"),
                change(cancelled, "pending", "cancelled", "Customer changed their mind"),
            ],
        ),
        (waiting, rest, [change(waiting, None, "pending", "Order placed")]),
    ]


def _replica() -> list[products.ReplicaRow]:
    """inventory's demo products, as their `inventory.product.created` leaves them in the
    replica (sales prices the examples' orders without asking inventory)."""
    return [
        products.ReplicaRow(
            product_id=product_id,
            sku=sku,
            name=name,
            price=Decimal(price),
            currency="BRL",
            status="active",
            version=1,
            deleted=False,
            updated_at=_at(15, 9),
        )
        for product_id, sku, name, price in (
            (KEYBOARD, "KB-MECH-001", "Mechanical keyboard", "349.90"),
            (WRIST_REST, "KB-REST-001", "Keyboard wrist rest", "59.90"),
        )
    ]


async def _seed_orders(uow: UnitOfWork) -> None:
    """The demo orders, written as the saga left them (their events are long gone)."""
    counters = metadata.tables["order_counters"]
    await uow.session.execute(
        insert_ignoring_conflicts(uow.dialect, counters, {"year": 2025, "last_number": 45})
    )
    for order, item, history in _demo_orders():
        if await uow.session.get(Order, order.id) is None:
            uow.session.add(order)
            await uow.session.flush()
            uow.session.add(item)
            uow.session.add_all(history)
            await uow.session.flush()


async def seed_demo(ctx: ServiceContext) -> None:
    async with ctx.unit_of_work() as uow:
        session = uow.session
        if await session.get(Customer, JOAO) is None:
            joao = models.CustomerCreate(
                name="João Silva",
                email="joao@example.com",
                phone="+55 11 98765-4321",
                document="529.982.247-25",
            )
            await customers.create_customer(uow, joao, new_id=JOAO)
        addresses = [
            (
                JOAO_HOME,
                models.AddressCreate(
                    street="Avenida Paulista",
                    number="1000",
                    complement="Apto 12",
                    neighborhood="Bela Vista",
                    city="São Paulo",
                    state="SP",
                    zip_code="01310-100",
                ),
            ),
            (
                JOAO_OFFICE,
                models.AddressCreate(
                    street="Rua Funchal",
                    number="418",
                    neighborhood="Vila Olímpia",
                    city="São Paulo",
                    state="SP",
                    zip_code="04551-060",
                ),
            ),
        ]
        for address_id, address in addresses:
            if await session.get(CustomerAddress, address_id) is None:
                await customers.add_address(uow, JOAO, address, new_id=address_id)
        for row in _replica():
            await products.replicate(uow, row)  # a newer version already there stays
        await _seed_orders(uow)
        await uow.commit()
