"""Products for event tests: made over inventory's API, as a client would, or described by the
`inventory.product.*` events inventory would publish (for sales' replica)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.events import envelope


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


def product_event(action: str, product_id: str, version: int, **changes: Any) -> dict[str, Any]:
    """A whole `inventory.product.<action>` envelope: the product at `version`, priced
    `<300 + version>.90`, occurred at 10:<version> on 2026-12-01 UTC; `changes` replace payload
    members."""
    occurred = datetime(2026, 12, 1, 10, version, tzinfo=UTC).isoformat().replace("+00:00", "Z")
    payload = {
        "product_id": product_id,
        "sku": "KB-MECH-001",
        "name": "Mechanical keyboard",
        "description": None,
        "price": f"{300 + version}.90",
        "currency": "BRL",
        "category_id": None,
        "status": "active",
        "version": version,
        "occurred_at": occurred,
        **changes,
    }
    return envelope(f"inventory.product.{action}", payload)
