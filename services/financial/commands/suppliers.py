"""Suppliers: created active, updated under If-Match, deactivated. The CNPJ is the kit's rule
(`parse_document`, CNPJ only), kept as digits and unique; the e-mail is kept in the platform's
one form (`normalise_email`, ADR 0010) and checked by email-validator."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from pydantic import MISSING
from sqlmodel import col, select

from generated.financial import models
from services.financial.domain import SupplierStatus
from services.financial.tables import Supplier
from services.platform import (
    DocumentType,
    FieldError,
    Problem,
    UnitOfWork,
    flush_unique,
    parse_document,
    require_if_match,
    resource_not_found,
    stored_email,
    unprocessable,
    utc_now,
)

_TAKEN = Problem(409, detail="A supplier with this CNPJ already exists.")


def supplier_model(row: Supplier) -> models.Supplier:
    return models.Supplier.model_validate(row, from_attributes=True)


def _refused(error: FieldError) -> Problem:
    return unprocessable("The request breaks the rules; see errors.", [error])


def _email(raw: str | None) -> str | None:
    if raw is None:
        return None
    stored = stored_email(raw)
    if isinstance(stored, FieldError):
        raise _refused(stored)
    return stored


def _cnpj(raw: str) -> str:
    parsed = parse_document(raw, "cnpj", accepted=[DocumentType.CNPJ])
    if isinstance(parsed, FieldError):
        raise _refused(parsed)
    return parsed.digits


async def _refuse_taken(uow: UnitOfWork, cnpj: str, other_than: UUID | None = None) -> None:
    statement = select(Supplier.id).where(col(Supplier.cnpj) == cnpj)
    if other_than is not None:
        statement = statement.where(col(Supplier.id) != other_than)
    if (await uow.session.scalars(statement)).first() is not None:
        raise _TAKEN


async def _locked(uow: UnitOfWork, supplier_id: UUID) -> Supplier:
    statement = select(Supplier).where(col(Supplier.id) == supplier_id).with_for_update()
    supplier = (await uow.session.scalars(statement)).first()
    if supplier is None:
        raise resource_not_found("Supplier", supplier_id)
    return supplier


async def create_supplier(
    uow: UnitOfWork, body: models.SupplierCreate, *, new_id: UUID | None = None
) -> models.Supplier:
    """A new active supplier; `new_id` fixes its id (the demo data set's, known to the docs)."""
    cnpj = _cnpj(body.cnpj)
    email = _email(None if body.email is MISSING else body.email)
    await _refuse_taken(uow, cnpj)
    now = utc_now()
    supplier = Supplier(
        id=new_id or uuid4(),
        name=body.name,
        cnpj=cnpj,
        email=email,
        phone=None if body.phone is MISSING else body.phone,
        status=SupplierStatus.ACTIVE.value,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(supplier)
    await flush_unique(uow.session, _TAKEN)
    return supplier_model(supplier)


async def update_supplier(
    uow: UnitOfWork, supplier_id: UUID, body: models.SupplierUpdate, if_match: str | None
) -> models.Supplier:
    supplier = await _locked(uow, supplier_id)
    require_if_match(if_match, supplier.version)
    changes: dict[str, Any] = {}
    fields = body.model_fields_set
    if "name" in fields:
        changes["name"] = body.name
    if "cnpj" in fields and isinstance(body.cnpj, str):
        changes["cnpj"] = _cnpj(body.cnpj)
    if "email" in fields and body.email is not MISSING:
        changes["email"] = _email(body.email)
    if "phone" in fields and body.phone is not MISSING:
        changes["phone"] = body.phone
    if "status" in fields and body.status is not MISSING:
        changes["status"] = body.status.value
    changed = {name: value for name, value in changes.items() if getattr(supplier, name) != value}
    if not changed:
        return supplier_model(supplier)
    if "cnpj" in changed:
        await _refuse_taken(uow, changed["cnpj"], other_than=supplier.id)
    for name, value in changed.items():
        setattr(supplier, name, value)
    supplier.version += 1
    supplier.updated_at = utc_now()
    await flush_unique(uow.session, _TAKEN)
    return supplier_model(supplier)


async def deactivate_supplier(uow: UnitOfWork, supplier_id: UUID) -> models.Supplier:
    """`inactive` (idempotent: an inactive supplier is answered as it is)."""
    supplier = await _locked(uow, supplier_id)
    if supplier.status != SupplierStatus.INACTIVE.value:
        supplier.status = SupplierStatus.INACTIVE.value
        supplier.version += 1
        supplier.updated_at = utc_now()
        await uow.session.flush()
    return supplier_model(supplier)
