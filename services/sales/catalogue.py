"""The products an order is priced from: the catalogue replica first, inventory's API for the
ones it does not hold yet (ADR 0016).

    snapshots = await catalogue.products_for_order(
        call.uow, catalogue.inventory_client(call.ctx), product_ids
    )

The replica (`products`, kept by `consumers.py` from `inventory.product.*`) answers without a
synchronous call. A product it has never seen is asked of inventory
(`GET /api/v1/products/{id}`, public), stored in the replica under the same version guard as
the events, and returned. Inventory is asked under a timeout per attempt, tenacity's retries
with exponential back-off and a pybreaker circuit breaker: 404 is an answer (the product is
absent from the result), never retried and never counted against inventory; a 5xx, any other
unexpected answer, a timeout or a connection error is a failure. When inventory cannot be asked
(every attempt failed, or the breaker is open and fails fast) `CatalogueUnavailableError`.

One `InventoryClient` per running service: `start_inventory_client` (an `on_startup` hook)
builds it on the service's `ctx.http` and `ERP_INVENTORY_URL` and keeps it in `ctx.state`,
where `inventory_client(ctx)` finds it — so the breaker's count is shared by every request the
process serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final
from uuid import UUID

import httpx
import pybreaker
from pydantic import ValidationError
from sqlmodel import col, select
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from generated.inventory import models as inventory
from services.platform import ServiceContext, UnitOfWork, windowed_breaker
from services.sales import domain
from services.sales.commands import products
from services.sales.tables import Product

log = logging.getLogger(__name__)

INVENTORY_CLIENT: Final = "sales.inventory_client"  # the ctx.state entry
CENT = Decimal("0.01")


@dataclass(frozen=True)
class ProductSnapshot:
    """A product as an order takes it (sku, name and price are snapshotted into the order)."""

    product_id: UUID
    sku: str
    name: str
    price: Decimal
    currency: str
    status: str  # active | inactive | discontinued
    version: int


class CatalogueUnavailableError(Exception):
    """inventory could not be asked (breaker open / timeouts)"""


@dataclass(frozen=True)
class ResiliencePolicy:
    """How inventory is asked: `attempts` with a timeout each, exponential back-off between
    them (1 s, 2 s, ... at most `max_wait_seconds`), and the breaker: open after
    `breaker_failures` failed attempts within `breaker_window_seconds`, failing fast for
    `breaker_open_seconds`, then one trial request decides (half-open)."""

    attempts: int = 3
    attempt_timeout_seconds: float = 2.0
    first_wait_seconds: float = 1.0
    max_wait_seconds: float = 4.0
    breaker_failures: int = 5
    breaker_window_seconds: float = 60.0
    breaker_open_seconds: float = 60.0


class _InventoryFailedError(Exception):
    """One attempt that got no usable answer (retried; counted by the breaker)."""


class InventoryClient:
    """Inventory's product API as sales asks it: `await client.product(product_id)`."""

    def __init__(
        self, base_url: str, http: httpx.AsyncClient, policy: ResiliencePolicy | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.policy = policy or ResiliencePolicy()
        self.breaker = windowed_breaker(
            "inventory",
            failures=self.policy.breaker_failures,
            window_seconds=self.policy.breaker_window_seconds,
            open_seconds=self.policy.breaker_open_seconds,
        )

    async def product(self, product_id: UUID) -> products.ReplicaRow | None:
        """The product as inventory has it now; None when inventory answers 404."""
        policy = self.policy
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(
                multiplier=policy.first_wait_seconds, max=policy.max_wait_seconds
            ),
            retry=retry_if_exception_type(_InventoryFailedError),
            reraise=True,
        )
        try:
            return await retrying(self._attempt, product_id)
        except pybreaker.CircuitBreakerError as error:
            raise CatalogueUnavailableError(
                f"inventory is not asked for a while (circuit open): {error}"
            ) from error
        except _InventoryFailedError as error:
            raise CatalogueUnavailableError(
                f"inventory did not answer for product {product_id} "
                f"({policy.attempts} attempts): {error}"
            ) from error

    async def _attempt(self, product_id: UUID) -> products.ReplicaRow | None:
        with self._guarded():
            try:
                async with asyncio.timeout(self.policy.attempt_timeout_seconds):
                    response = await self.http.get(f"{self.base_url}/api/v1/products/{product_id}")
            except TimeoutError as error:
                raise _InventoryFailedError("no answer in time") from error
            except httpx.HTTPError as error:
                raise _InventoryFailedError(f"{type(error).__name__}") from error
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise _InventoryFailedError(f"answered {response.status_code}")
            try:
                found = inventory.Product.model_validate_json(response.content)
            except ValidationError as error:
                raise _InventoryFailedError("answered a body that is not a product") from error
            if found.id != product_id:
                raise _InventoryFailedError("answered another product")
            return products.ReplicaRow(
                product_id=found.id,
                sku=found.sku,
                name=found.name,
                price=Decimal(found.price),
                currency=found.currency,
                status=found.status.value,
                version=found.version,
                deleted=False,
                updated_at=found.updated_at,
            )

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        """The block under the breaker: raises `CircuitBreakerError` at once while it is open;
        an exception out of the block counts as a failure, anything else as a success."""
        with self.breaker.calling():
            yield


async def start_inventory_client(ctx: ServiceContext) -> None:
    """Start-up hook: the process's one client of inventory (and its breaker)."""
    ctx.state[INVENTORY_CLIENT] = InventoryClient(ctx.settings.inventory_url, ctx.http)


def inventory_client(ctx: ServiceContext) -> InventoryClient:
    client: InventoryClient = ctx.state[INVENTORY_CLIENT]
    return client


def _snapshot(row: Product) -> ProductSnapshot:
    return ProductSnapshot(
        product_id=row.product_id,
        sku=row.sku,
        name=row.name,
        price=Decimal(row.price).quantize(CENT),
        currency=row.currency,
        status=row.status,
        version=row.version,
    )


async def _replica(uow: UnitOfWork, product_ids: Sequence[UUID]) -> dict[UUID, Product]:
    rows = await uow.session.scalars(
        select(Product).where(col(Product.product_id).in_(list(product_ids)))
    )
    return {row.product_id: row for row in rows}


async def products_for_order(
    uow: UnitOfWork, inventory: InventoryClient, product_ids: Sequence[UUID]
) -> dict[UUID, ProductSnapshot]:
    """Replica rows for the ids (not deleted); the missing ones asked of inventory over HTTP
    (GET /api/v1/products/{id}, public), stored in the replica (version-guarded) and returned;
    ids inventory answers 404 for are simply absent from the result."""
    wanted = list(dict.fromkeys(product_ids))
    stored = await _replica(uow, wanted)
    missing = [product_id for product_id in wanted if product_id not in stored]
    if missing:
        # Every lookup runs to its end (none is cancelled: pybreaker would count a cancelled
        # attempt as a success, resetting its count of failures).
        answers = await asyncio.gather(
            *(inventory.product(product_id) for product_id in missing), return_exceptions=True
        )
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            if answer is None:
                continue
            change = await products.replicate(uow, answer)
            if change is domain.ReplicaChange.SKU_CHANGED:
                raise CatalogueUnavailableError(
                    f"inventory describes product {answer.product_id} under another SKU"
                )
        # Read back: an event that arrived meanwhile may hold a newer version than the answer.
        stored |= await _replica(uow, missing)
    return {
        product_id: _snapshot(row)
        for product_id in wanted
        if (row := stored.get(product_id)) is not None and not row.deleted
    }
