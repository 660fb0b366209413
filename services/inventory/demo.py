"""The inventory part of the demo data set: the rows whose ids the spec's examples use
(specs/openapi/inventory.yaml), so every example request in the docs works as written.

Loaded by embedded `erp up` and by `erp demo seed` (docs/adr/0008-docs-that-work.md), through
the service's own commands on its unit of work; idempotent: what exists already is kept.
"""

from __future__ import annotations

from uuid import UUID

from sqlmodel import col, select

from generated.inventory import models
from services.inventory.commands import catalogue, reservations, stock, warehouses
from services.inventory.domain import Line
from services.inventory.tables import Category, Product, Reservation, Warehouse
from services.platform import Caller, ServiceContext

PERIPHERALS = UUID("f0e1d2c3-b4a5-4968-8776-5a4b3c2d1e0f")
KEYBOARDS = UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
CABLES = UUID("b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e")  # empty: the delete example's
KEYBOARD = UUID("5d1c7a2e-8b3f-4e6a-9c0d-1e2f3a4b5c6d")
WRIST_REST = UUID("6e2d8b3f-9c4a-4f7b-8d1e-2f3a4b5c6d7e")  # no stock: the delete example's
CAMPINAS = UUID("0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")
DEMO_ORDER = UUID("c7d8e9f0-1a2b-4c3d-8e4f-5a6b7c8d9e0f")
SEEDER = Caller(principal=None, client_ip=None, request_id=None, correlation_id=None)


async def seed_demo(ctx: ServiceContext) -> None:
    async with ctx.unit_of_work() as uow:
        session = uow.session
        categories = [
            (PERIPHERALS, models.CategoryCreate(name="Peripherals", slug="peripherals")),
            (
                KEYBOARDS,
                models.CategoryCreate(name="Keyboards", slug="keyboards", parent_id=PERIPHERALS),
            ),
            (CABLES, models.CategoryCreate(name="Cables", slug="cables", parent_id=PERIPHERALS)),
        ]
        for category_id, category in categories:
            if await session.get(Category, category_id) is None:
                await catalogue.create_category(uow, category, new_id=category_id)
        products = [
            (
                KEYBOARD,
                models.ProductCreate(
                    sku="KB-MECH-001",
                    name="Mechanical keyboard",
                    description="ABNT2 mechanical keyboard, brown switches",
                    price="349.90",
                    category_id=KEYBOARDS,
                ),
            ),
            (
                WRIST_REST,
                models.ProductCreate(
                    sku="KB-REST-001",
                    name="Keyboard wrist rest",
                    price="59.90",
                    category_id=KEYBOARDS,
                ),
            ),
        ]
        for product_id, product in products:
            if await session.get(Product, product_id) is None:
                await catalogue.create_product(uow, ctx.cache, product, new_id=product_id)
        opening = await session.get(Warehouse, CAMPINAS) is None
        if opening:
            campinas = models.WarehouseCreate(code="CPS-01", name="Campinas warehouse")
            await warehouses.create_warehouse(uow, campinas, new_id=CAMPINAS)
        await uow.commit()
    if opening:
        # One unit of work per receipt: on PostgreSQL a receipt commits its own transaction.
        for into in ({"warehouse_id": CAMPINAS, "quantity": 50}, {"quantity": 20}):  # 20: default
            receipt = models.StockReceive(
                product_id=KEYBOARD, reason="Demo data: opening stock", **into
            )
            async with ctx.unit_of_work() as uow:
                await stock.receive_stock(uow, SEEDER, receipt)
                await uow.commit()
    async with ctx.unit_of_work() as uow:
        # Reservations come from orders (sales.order.created); the demo has one, of 2 keyboards.
        reserved = select(Reservation.id).where(col(Reservation.order_id) == DEMO_ORDER)
        if (await uow.session.scalars(reserved)).first() is None:
            await reservations.reserve_order(uow, DEMO_ORDER, [Line(KEYBOARD, 2)])
        await uow.commit()
