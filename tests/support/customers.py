"""Customers for saga tests and the saga bench: made over sales' API, as a client would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

from tests.support.http import unique_cpf, unique_email

HOME = {
    "street": "Avenida Paulista",
    "number": "1000",
    "complement": "Apto 12",
    "neighborhood": "Bela Vista",
    "city": "São Paulo",
    "state": "SP",
    "zip_code": "01310-100",
}


@dataclass(frozen=True)
class Customer:
    id: str
    email: str
    address_id: str


async def customer_with_address(api: httpx.AsyncClient, *, tag: str) -> Customer:
    """A new active customer whose one address (`HOME`) is the default, through `api` (staff)."""
    body = {
        "name": f"{tag} customer",
        "email": unique_email(tag.lower()),
        "document": unique_cpf(),
        "addresses": [{**HOME, "is_default": True}],
    }
    created = await api.post(
        "/api/v1/customers", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert created.status_code == 201, created.text
    customer = created.json()
    [address] = customer["addresses"]
    assert address["is_default"], customer
    return Customer(id=customer["id"], email=customer["email"], address_id=address["id"])
