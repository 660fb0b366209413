"""Products with stock for event tests: made over inventory's API, as a client would."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Product:
    id: str
    sku: str
    name: str
    price: str


async def product_with_stock(
    api: httpx.AsyncClient, quantity: int, *, tag: str, price: str = "12.50"
) -> Product:
    """A new product (SKU `TAG-…`, `price`) with `quantity` units received, through `api`
    (staff)."""
    sku = f"{tag}-{uuid.uuid4().hex[:12].upper()}"
    created = await api.post(
        "/api/v1/products",
        json={"sku": sku, "name": f"{tag} test {sku}", "price": price},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    product = Product(id=body["id"], sku=body["sku"], name=body["name"], price=body["price"])
    if quantity:
        received = await api.post(
            "/api/v1/stock/receive",
            json={"product_id": product.id, "quantity": quantity, "reason": f"{tag} test stock"},
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert received.status_code == 201, received.text
    return product
