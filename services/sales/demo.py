"""The sales part of the demo data set: the rows whose ids the spec's examples use
(specs/openapi/sales.yaml, and the sales events of specs/asyncapi/erp.yaml), so every example
request in the docs works as written.

Loaded by embedded `erp up` and by `erp demo seed` (docs/adr/0008-docs-that-work.md), through
the service's own commands on its unit of work; idempotent: what exists already is kept.
"""

from __future__ import annotations

from uuid import UUID

from generated.sales import models
from services.platform import ServiceContext
from services.sales.commands import customers
from services.sales.tables import Customer, CustomerAddress

JOAO = UUID("b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e")
JOAO_HOME = UUID("d4e5f6a7-b8c9-4d0e-8f1a-2b3c4d5e6f70")  # the default address
JOAO_OFFICE = UUID("e5f6a7b8-c9d0-4e1f-9a2b-3c4d5e6f7081")  # the update and delete examples'


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
        await uow.commit()
