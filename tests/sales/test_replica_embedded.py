"""Embedded mode (`erp up` without servers: SQLite, the in-process broker): inventory and
sales run in one process, and a product inventory creates, changes and deletes reaches
sales' replica through the outbox, the relay and `sales.queue` — as on the real servers."""

from __future__ import annotations

from uuid import UUID

from generated.inventory import models
from services.inventory.commands import catalogue as inventory_catalogue
from services.inventory.service import definition as inventory_definition
from services.platform.runtime.service import ServiceContext
from services.sales.service import definition as sales_definition
from services.sales.tables import Product
from tests.support.embedded import StartEmbedded
from tests.support.polling import eventually


async def replicated(sales: ServiceContext, product_id: UUID, version: int) -> Product | None:
    async with sales.database.session() as session:
        found = await session.get(Product, product_id)
    return found if found is not None and found.version == version else None


async def test_inventory_changes_reach_the_replica(embedded: StartEmbedded) -> None:
    inventory = (await embedded(inventory_definition)).ctx
    sales = (await embedded(sales_definition)).ctx

    async with inventory.unit_of_work() as uow:
        body = models.ProductCreate(sku="EMB-REPLICA-1", name="Embedded", price="12.50")
        product = await inventory_catalogue.create_product(uow, inventory.cache, body)
        await uow.commit()
    created = await eventually(
        lambda: replicated(sales, product.id, 1), what="the created product in the replica"
    )
    assert (created.sku, f"{created.price:.2f}", created.deleted) == (
        "EMB-REPLICA-1",
        "12.50",
        False,
    )

    async with inventory.unit_of_work() as uow:
        await inventory_catalogue.delete_product(uow, inventory.cache, product.id)
        await uow.commit()
    deleted = await eventually(
        lambda: replicated(sales, product.id, 2), what="the tombstone in the replica"
    )
    assert deleted.deleted
