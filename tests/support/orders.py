"""Sales' side of the order saga, played by the tests until sales exists: the `sales.order.*`
envelopes it will publish (see specs/asyncapi/erp.yaml); and the body a client places an order
with (`POST /api/v1/orders`)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from tests.support.events import envelope

SHIPPING = Decimal("15.00")
ADDRESS = {
    "street": "Rua das Flores",
    "number": "100",
    "complement": None,
    "neighborhood": "Centro",
    "city": "São Paulo",
    "state": "SP",
    "zip_code": "01001-000",
    "country": "BR",
}


class Sellable(Protocol):
    """What an order line names of a product (an API answer or a table row)."""

    @property
    def id(self) -> Any: ...
    @property
    def sku(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def price(self) -> Any: ...


def order_number() -> str:
    return f"ORD-{datetime.now(UTC).year}-{random.randint(0, 999_999):06d}"


def order_request(
    customer_id: str, lines: Sequence[tuple[Sellable, int]], payment_method: str = "pix"
) -> dict[str, Any]:
    """The body of `POST /api/v1/orders`: shipped to the customer's default address."""
    return {
        "customer_id": customer_id,
        "items": [
            {"product_id": str(product.id), "quantity": quantity} for product, quantity in lines
        ],
        "payment_method": payment_method,
    }


def order_created(
    lines: Sequence[tuple[Sellable, int]], order_id: str | None = None
) -> dict[str, Any]:
    """A whole `sales.order.created` envelope, as sales will publish it."""
    items = [
        {
            "product_id": str(product.id),
            "sku": product.sku,
            "name": product.name,
            "quantity": quantity,
            "unit_price": f"{Decimal(str(product.price)):.2f}",
        }
        for product, quantity in lines
    ]
    subtotal = sum(
        (Decimal(str(product.price)) * quantity for product, quantity in lines), Decimal()
    )
    return envelope(
        "sales.order.created",
        {
            "order_id": order_id or str(uuid.uuid4()),
            "order_number": order_number(),
            "customer_id": str(uuid.uuid4()),
            "customer_email": f"buyer-{uuid.uuid4().hex[:8]}@example.com",
            "items": items,
            "subtotal": f"{subtotal:.2f}",
            "discount": "0.00",
            "shipping": f"{SHIPPING:.2f}",
            "total": f"{subtotal + SHIPPING:.2f}",
            "currency": "BRL",
            "payment_method": "pix",
            "shipping_address": ADDRESS,
        },
    )


def order_confirmed(created: dict[str, Any]) -> dict[str, Any]:
    """The `sales.order.confirmed` that follows `created` (same order, same conversation)."""
    payload = created["payload"]
    return envelope(
        "sales.order.confirmed",
        {
            "order_id": payload["order_id"],
            "order_number": payload["order_number"],
            "customer_id": payload["customer_id"],
            "customer_email": payload["customer_email"],
            "total": payload["total"],
            "currency": payload["currency"],
            "shipping_address": payload["shipping_address"],
            "items": [
                {"product_id": item["product_id"], "quantity": item["quantity"]}
                for item in payload["items"]
            ],
        },
        correlation_id=created["correlation_id"],
    )


def order_cancelled(
    created: dict[str, Any], reason: str = "Customer asked to cancel"
) -> dict[str, Any]:
    """The `sales.order.cancelled` of the order `created` announced (same conversation)."""
    payload = created["payload"]
    return envelope(
        "sales.order.cancelled",
        {
            "order_id": payload["order_id"],
            "order_number": payload["order_number"],
            "customer_id": payload["customer_id"],
            "customer_email": payload["customer_email"],
            "reason": reason,
            "items": [
                {"product_id": item["product_id"], "quantity": item["quantity"]}
                for item in payload["items"]
            ],
        },
        correlation_id=created["correlation_id"],
    )


@dataclass(frozen=True)
class PricedItem:
    """A product as an order line names it, for tests of services that never see the catalogue
    (financial): the price is all that matters."""

    price: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    sku: str = "TEST-ITEM-001"
    name: str = "Test item"


def order_totalling(total: str, order_id: str | None = None) -> dict[str, Any]:
    """A `sales.order.created` whose total is `total` (one line: the total minus shipping)."""
    item = PricedItem(f"{Decimal(total) - SHIPPING:.2f}")
    return order_created([(item, 1)], order_id)
