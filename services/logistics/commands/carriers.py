"""Carriers: created (active unless told otherwise), updated under If-Match, deactivated. The
code is unique and never changes; the service types are kept in the order given, each once."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from pydantic import MISSING
from sqlmodel import col, select

from generated.logistics import models
from services.logistics.tables import Carrier
from services.platform import (
    Problem,
    UnitOfWork,
    flush_unique,
    require_if_match,
    resource_not_found,
    utc_now,
)

_TAKEN = Problem(409, detail="A carrier with this code already exists.")


def carrier_model(row: Carrier) -> models.Carrier:
    return models.Carrier.model_validate(row, from_attributes=True)


def _service_types(given: list[models.ServiceType]) -> list[str]:
    return list(dict.fromkeys(kind.value for kind in given))


async def _locked(uow: UnitOfWork, carrier_id: UUID) -> Carrier:
    statement = select(Carrier).where(col(Carrier.id) == carrier_id).with_for_update()
    carrier = (await uow.session.scalars(statement)).first()
    if carrier is None:
        raise resource_not_found("Carrier", carrier_id)
    return carrier


async def create_carrier(
    uow: UnitOfWork, body: models.CarrierCreate, *, new_id: UUID | None = None
) -> models.Carrier:
    """A new carrier; `new_id` fixes its id (the demo data set's, known to the docs)."""
    taken = await uow.session.scalars(select(Carrier.id).where(col(Carrier.code) == body.code))
    if taken.first() is not None:
        raise _TAKEN
    now = utc_now()
    carrier = Carrier(
        id=new_id or uuid4(),
        code=body.code,
        name=body.name,
        service_types=_service_types(body.service_types),
        active=True if body.active is MISSING else body.active,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(carrier)
    await flush_unique(uow.session, _TAKEN)
    return carrier_model(carrier)


async def update_carrier(
    uow: UnitOfWork, carrier_id: UUID, body: models.CarrierUpdate, if_match: str | None
) -> models.Carrier:
    carrier = await _locked(uow, carrier_id)
    require_if_match(if_match, carrier.version)
    changes: dict[str, Any] = {}
    if body.name is not MISSING:
        changes["name"] = body.name
    if body.service_types is not MISSING:
        changes["service_types"] = _service_types(body.service_types)
    if body.active is not MISSING:
        changes["active"] = body.active
    changed = {name: value for name, value in changes.items() if getattr(carrier, name) != value}
    if changed:
        for name, value in changed.items():
            setattr(carrier, name, value)
        carrier.version += 1
        carrier.updated_at = utc_now()
        await uow.session.flush()
    return carrier_model(carrier)


async def deactivate_carrier(uow: UnitOfWork, carrier_id: UUID) -> models.Carrier:
    """Inactive (idempotent: an inactive carrier is answered as it is)."""
    carrier = await _locked(uow, carrier_id)
    if carrier.active:
        carrier.active = False
        carrier.version += 1
        carrier.updated_at = utc_now()
        await uow.session.flush()
    return carrier_model(carrier)
