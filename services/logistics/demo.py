"""The logistics part of the demo data set: the carriers whose ids the spec's examples use
(specs/openapi/logistics.yaml) — Correios (every service type), Jadlog (standard and express)
and Translog (economy; the deactivation example's).

Loaded by embedded `erp up` and by `erp demo seed` (docs/adr/0008-docs-that-work.md);
idempotent: what exists already is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from services.logistics.tables import Carrier
from services.platform import ServiceContext

CORREIOS = UUID("5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
JADLOG = UUID("6b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e")
TRANSLOG = UUID("7c8d9e0f-1a2b-4c3d-8e4f-5a6b7c8d9e0f")
JOINED = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)

CARRIERS = (
    (CORREIOS, "CORREIOS", "Correios", ["standard", "express", "economy"]),
    (JADLOG, "JADLOG", "Jadlog", ["standard", "express"]),
    (TRANSLOG, "TRANSLOG", "Translog Econômica", ["economy"]),
)


async def seed_demo(ctx: ServiceContext) -> None:
    async with ctx.unit_of_work() as uow:
        for identifier, code, name, service_types in CARRIERS:
            if await uow.session.get(Carrier, identifier) is None:
                uow.session.add(
                    Carrier(
                        id=identifier,
                        code=code,
                        name=name,
                        service_types=service_types,
                        active=True,
                        created_at=JOINED,
                        updated_at=JOINED,
                    )
                )
                await uow.session.flush()
        await uow.commit()
