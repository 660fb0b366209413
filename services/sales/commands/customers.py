"""Customers and their addresses. Every change locks the customer row, raises its `version`
and emits `sales.customer.created|updated` with the whole customer (a replica keeps the newest
version), in the unit of work the kit commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

from pydantic import MISSING
from sqlmodel import col, select

from generated.events.models import CustomerAddress as AddressState
from generated.events.models import SalesCustomerState
from generated.events.publishers import SALES_CUSTOMER_CREATED, SALES_CUSTOMER_UPDATED
from generated.sales import models
from services.platform import (
    Document,
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
from services.sales import domain
from services.sales.tables import Customer, CustomerAddress

_ADDRESS_FIELDS = ("street", "number", "complement", "neighborhood", "city", "state", "zip_code")
_TAKEN = Problem(409, detail="A customer with this e-mail, document or user already exists.")


def _refused(error: FieldError) -> Problem:
    return unprocessable("The request breaks the rules; see errors.", [error])


def _email(raw: str) -> str:
    """The stored form of the address (auth's, ADR 0010); 422 when no mailbox can have it."""
    stored = stored_email(raw)
    if isinstance(stored, FieldError):
        raise _refused(stored)
    return stored


def _document(raw: str) -> Document:
    parsed = parse_document(raw)
    if isinstance(parsed, FieldError):
        raise _refused(parsed)
    return parsed


async def _refuse_taken(
    uow: UnitOfWork,
    *,
    email: str | None,
    document: str | None,
    user_id: UUID | None,
    other_than: UUID | None = None,
) -> None:
    """409 naming the first unique value another customer holds already."""
    for column, value, what in (
        (Customer.email, email, "e-mail address"),
        (Customer.document, document, "document"),
        (Customer.user_id, user_id, "user"),
    ):
        if value is None:
            continue
        statement = select(Customer.id).where(col(column) == value)
        if other_than is not None:
            statement = statement.where(col(Customer.id) != other_than)
        if (await uow.session.scalars(statement)).first() is not None:
            raise Problem(409, detail=f"A customer with this {what} already exists.")


async def _locked(uow: UnitOfWork, customer_id: UUID) -> Customer:
    statement = select(Customer).where(col(Customer.id) == customer_id).with_for_update()
    customer = (await uow.session.scalars(statement)).first()
    if customer is None:
        raise resource_not_found("Customer", customer_id)
    return customer


async def _addresses(uow: UnitOfWork, customer_id: UUID) -> list[CustomerAddress]:
    statement = (
        select(CustomerAddress)
        .where(col(CustomerAddress.customer_id) == customer_id)
        .order_by(col(CustomerAddress.position))
    )
    return list((await uow.session.scalars(statement)).all())


def _address_model(address: CustomerAddress) -> models.CustomerAddress:
    return models.CustomerAddress.model_validate(address, from_attributes=True)


def customer_model(customer: Customer, addresses: Sequence[CustomerAddress]) -> models.Customer:
    return models.Customer.model_validate(
        {**customer.model_dump(), "addresses": [_address_model(a) for a in addresses]}
    )


def _state(customer: models.Customer) -> SalesCustomerState:
    return SalesCustomerState(
        customer_id=customer.id,
        name=customer.name,
        email=customer.email,
        phone=customer.phone,
        document=customer.document,
        document_type=customer.document_type.value,
        status=customer.status.value,
        user_id=customer.user_id,
        addresses=[
            AddressState(address_id=a.id, **a.model_dump(exclude={"id"}))
            for a in customer.addresses
        ],
        version=customer.version,
        occurred_at=customer.updated_at,
    )


async def _changed(uow: UnitOfWork, customer: Customer) -> models.Customer:
    """A new version of the customer, announced: after any change of it or its addresses."""
    customer.version += 1
    customer.updated_at = utc_now()
    await uow.session.flush()
    model = customer_model(customer, await _addresses(uow, customer.id))
    uow.emit(SALES_CUSTOMER_UPDATED, _state(model))
    return model


def _address_row(
    customer_id: UUID, position: int, body: models.AddressCreate, *, new_id: UUID | None
) -> CustomerAddress:
    return CustomerAddress(
        id=new_id or uuid4(),
        customer_id=customer_id,
        position=position,
        complement=None if body.complement is MISSING else body.complement,
        country=body.country,
        is_default=False,
        **{name: getattr(body, name) for name in _ADDRESS_FIELDS if name != "complement"},
    )


async def create_customer(
    uow: UnitOfWork, body: models.CustomerCreate, *, new_id: UUID | None = None
) -> models.Customer:
    """A new active customer; `new_id` fixes its id (the demo data set's, known to the docs)."""
    email = _email(body.email)
    document = _document(body.document)
    user_id = None if body.user_id is MISSING else body.user_id
    new_addresses = [] if body.addresses is MISSING else body.addresses
    default = domain.initial_default([address.is_default for address in new_addresses])
    if isinstance(default, FieldError):
        raise _refused(default)
    await _refuse_taken(uow, email=email, document=document.digits, user_id=user_id)
    now = utc_now()
    customer = Customer(
        id=new_id or uuid4(),
        name=body.name,
        email=email,
        phone=None if body.phone is MISSING else body.phone,
        document=document.digits,
        document_type=document.type.value,
        status=domain.CustomerStatus.ACTIVE.value,
        user_id=user_id,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(customer)
    await flush_unique(uow.session, _TAKEN)
    rows = [_address_row(customer.id, i, a, new_id=None) for i, a in enumerate(new_addresses)]
    for index, row in enumerate(rows):
        row.is_default = index == default
        uow.session.add(row)
    await uow.session.flush()
    model = customer_model(customer, rows)
    uow.emit(SALES_CUSTOMER_CREATED, _state(model))
    return model


async def update_customer(
    uow: UnitOfWork, customer_id: UUID, body: models.CustomerUpdate, if_match: str | None
) -> models.Customer:
    customer = await _locked(uow, customer_id)
    require_if_match(if_match, customer.version)
    changes: dict[str, Any] = {}
    fields = body.model_fields_set
    if "name" in fields:
        changes["name"] = body.name
    if "email" in fields and isinstance(body.email, str):
        changes["email"] = _email(body.email)
    if "phone" in fields and body.phone is not MISSING:
        changes["phone"] = body.phone
    if "document" in fields and isinstance(body.document, str):
        document = _document(body.document)
        changes["document"] = document.digits
        changes["document_type"] = document.type.value
    if "user_id" in fields and body.user_id is not MISSING:
        changes["user_id"] = body.user_id
    if "status" in fields and body.status is not MISSING:
        changes["status"] = body.status.value
    changed = {name: value for name, value in changes.items() if getattr(customer, name) != value}
    if not changed:
        return customer_model(customer, await _addresses(uow, customer.id))
    await _refuse_taken(
        uow,
        email=changed.get("email"),
        document=changed.get("document"),
        user_id=changed.get("user_id"),
        other_than=customer.id,
    )
    for name, value in changed.items():
        setattr(customer, name, value)
    await flush_unique(uow.session, _TAKEN)
    return await _changed(uow, customer)


async def add_address(
    uow: UnitOfWork, customer_id: UUID, body: models.AddressCreate, *, new_id: UUID | None = None
) -> models.CustomerAddress:
    customer = await _locked(uow, customer_id)
    existing = await _addresses(uow, customer.id)
    if len(existing) >= domain.MAX_ADDRESSES:
        raise unprocessable(f"A customer has at most {domain.MAX_ADDRESSES} addresses.", [])
    position = max((a.position for a in existing), default=-1) + 1
    row = _address_row(customer.id, position, body, new_id=new_id)
    if body.is_default or not existing:
        await _clear_default(uow, existing)
        row.is_default = True
    uow.session.add(row)
    await _changed(uow, customer)
    return _address_model(row)


async def _clear_default(uow: UnitOfWork, addresses: Sequence[CustomerAddress]) -> None:
    """The current default stops being it (flushed first: the one-default index is immediate)."""
    for address in addresses:
        if address.is_default:
            address.is_default = False
    await uow.session.flush()


async def _address(uow: UnitOfWork, customer_id: UUID, address_id: UUID) -> CustomerAddress:
    address = await uow.session.get(CustomerAddress, address_id)
    if address is None or address.customer_id != customer_id:
        raise resource_not_found("Address", address_id)
    return address


async def update_address(
    uow: UnitOfWork, customer_id: UUID, address_id: UUID, body: models.AddressUpdate
) -> models.CustomerAddress:
    customer = await _locked(uow, customer_id)
    address = await _address(uow, customer.id, address_id)
    fields = body.model_fields_set
    if "is_default" in fields and body.is_default is False and address.is_default:
        raise _refused(FieldError("is_default", "make another address the default instead"))
    changes = {
        name: getattr(body, name)
        for name in (*_ADDRESS_FIELDS, "country")
        if name in fields and getattr(body, name) is not MISSING
    }
    changed = {name: value for name, value in changes.items() if getattr(address, name) != value}
    becomes_default = body.is_default is True and not address.is_default
    if not changed and not becomes_default:
        return _address_model(address)
    if becomes_default:
        await _clear_default(uow, await _addresses(uow, customer.id))
        address.is_default = True
    for name, value in changed.items():
        setattr(address, name, value)
    await _changed(uow, customer)
    return _address_model(address)


async def delete_address(uow: UnitOfWork, customer_id: UUID, address_id: UUID) -> None:
    """Removes the address; the oldest remaining one inherits the default."""
    customer = await _locked(uow, customer_id)
    address = await _address(uow, customer.id, address_id)
    await uow.session.delete(address)
    await uow.session.flush()
    if address.is_default:
        remaining = await _addresses(uow, customer.id)
        if remaining:
            remaining[0].is_default = True
    await _changed(uow, customer)
