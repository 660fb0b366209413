"""A FastAPI twin of four inventory endpoints: the yardstick `make bench` measures against.

It is written the way a FastAPI developer would write these endpoints by hand — `Depends` for the
pool, Redis and the caller, `response_model` with the generated pydantic models, plain SQL on a
psycopg pool — and it does the work the service does for the benchmark's requests, against the
same database and Redis keys (tools/dev/bench.sh runs it beside `erp serve inventory`):

* `GET /health/live` — `{"status": "ok"}`.
* `GET /api/v1/products` — public; the service's Redis cache entry (same tag version, same key,
  same TTL); on a miss the page and its COUNT from PostgreSQL, stored. A hit answers the cached
  JSON as it is (the service parses it and validates it against `ProductList` again).
* `GET /api/v1/stock` — bearer JWT (RS256 from the auth JWKS, fetched once at start-up; exp, iat,
  iss, aud, sub, jti required; 30 s leeway; `typ == "access"`; the jti not on the Redis logout
  blacklist), then `inventory.stock.view`; the page and its COUNT of live products' stock rows.
* `POST /api/v1/stock/receive` — the same JWT check, then `inventory.stock.update`; in ONE
  transaction: the product (live) and the warehouse (the default one when omitted), the stock
  row upserted, the `in` movement inserted. `commands.stock.receive_stock` emits no event (only an
  adjustment that brings stock down to its minimum emits `inventory.stock.low_alert`), so no
  outbox row is written either: the outbox would get one here, in the same transaction, if it
  did. No Idempotency-Key support (the benchmark sends none; the service then runs it plainly).

Errors are problem+json like the service's (400 for invalid input, 401, 403, 422), with less
detail. Run: `python -m bench.twin --port 18103` (uvicorn as `erp serve` runs it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, cast
from uuid import UUID

import httpx
import jwt
import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import MISSING, BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from starlette.exceptions import HTTPException

from generated.inventory import models

POOL_SIZE: Final = 16  # wrk keeps 16 connections open
JWKS_PATH: Final = "/.well-known/jwks.json"
REQUIRED_CLAIMS: Final = ["exp", "iat", "iss", "aud", "sub", "jti"]
LEEWAY_SECONDS: Final = 30.0
PRODUCTS_TAG: Final = "inventory-products"
PRODUCT_LIST_TTL_MS: Final = 300_000
DEFAULT_WAREHOUSE_CODE: Final = "DEFAULT"
DEFAULT_MIN_QUANTITY: Final = 10
MAX_QUANTITY: Final = 1_000_000_000
PROBLEM_JSON: Final = "application/problem+json"


# --- configuration and resources ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """The `ERP_*` variables `erp serve inventory` reads, for the parts the twin uses."""

    database_url: str
    redis_url: str
    redis_prefix: str
    auth_url: str
    issuer: str
    audience: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        database_url = env.get(
            "ERP_INVENTORY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/inventory_db"
        )
        scheme, sep, rest = database_url.partition("://")
        return cls(
            database_url=scheme.split("+")[0] + sep + rest,  # libpq knows no "+psycopg"
            redis_url=env.get("ERP_REDIS_URL", "redis://127.0.0.1:6379/0"),
            redis_prefix=env.get("ERP_REDIS_PREFIX", "erp:"),
            auth_url=env.get("ERP_AUTH_URL", "http://127.0.0.1:8001").rstrip("/"),
            issuer=env.get("ERP_JWT_ISSUER", "erp-auth"),
            audience=env.get("ERP_JWT_AUDIENCE", "erp"),
        )


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    pool: AsyncConnectionPool[AsyncConnection[DictRow]]
    redis: Redis
    signing_keys: Mapping[str, Any]  # kid → RSA public key

    def key(self, *parts: object) -> str:
        return self.settings.redis_prefix + ":".join(str(part) for part in parts)


async def fetch_signing_keys(auth_url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        response = await client.get(auth_url + JWKS_PATH)
        response.raise_for_status()
        document = response.json()
    return {
        entry["kid"]: jwt.PyJWK(entry).key
        for entry in document["keys"]
        if entry.get("use", "sig") == "sig" and entry.get("kid")
    }


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = Settings.from_env()
    signing_keys = await fetch_signing_keys(settings.auth_url)
    pool = AsyncConnectionPool(
        settings.database_url,
        connection_class=AsyncConnection[DictRow],
        kwargs={"row_factory": dict_row},
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        open=False,
    )
    await pool.open(wait=True)
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    app.state.resources = Resources(settings, pool, redis, signing_keys)
    try:
        yield
    finally:
        await pool.close()
        await redis.aclose()


app = FastAPI(title="inventory (FastAPI twin)", lifespan=lifespan)


def get_resources(request: Request) -> Resources:
    return cast(Resources, request.app.state.resources)


ResourcesDep = Annotated[Resources, Depends(get_resources)]


# --- errors as problem+json -----------------------------------------------------------------


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.errors = [dict(error) for error in errors]
        self.headers = dict(headers or {})


def _problem(request: Request, problem: ProblemError) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
    }
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


@app.exception_handler(ProblemError)
async def problem_handler(request: Request, exc: ProblemError) -> JSONResponse:
    return _problem(request, exc)


@app.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {
            "field": "body"
            if error["type"] == "json_invalid"
            else ".".join(str(part) for part in error["loc"][1:]),
            "message": error["msg"],
        }
        for error in exc.errors()
    ]
    detail = "The request is invalid; see errors."
    return _problem(request, ProblemError(400, "Bad Request", detail, errors=errors))


@app.exception_handler(HTTPException)
async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    title = str(exc.detail)
    return _problem(request, ProblemError(exc.status_code, title, title, headers=exc.headers))


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def unprocessable(detail: str, field: str, message: str) -> ProblemError:
    errors = [{"field": field, "message": message}]
    return ProblemError(422, "Unprocessable Entity", detail, errors=errors)


# --- who is calling -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    permissions: frozenset[str]

    @property
    def user_id(self) -> UUID | None:
        try:
            return UUID(self.subject)
        except ValueError:
            return None


bearer_scheme = HTTPBearer(auto_error=False)


async def current_principal(
    resources: ResourcesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    if credentials is None:
        raise unauthorized("A bearer access token is required.")
    token = credentials.credentials
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise unauthorized("The access token is malformed.") from None
    if header.get("alg") != "RS256":
        raise unauthorized("The access token is not signed with RS256.")
    key = resources.signing_keys.get(str(header.get("kid")))
    if key is None:
        raise unauthorized("The access token is signed by an unknown key.")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=resources.settings.audience,
            issuer=resources.settings.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.PyJWTError as error:
        raise unauthorized(f"The access token is invalid ({error}).") from None
    if claims.get("typ") != "access":
        raise unauthorized("The token is not an access token.")
    subject, jti, permissions = claims["sub"], claims["jti"], claims.get("permissions", [])
    if not (
        isinstance(subject, str)
        and subject
        and isinstance(jti, str)
        and jti
        and isinstance(permissions, list)
        and all(isinstance(slug, str) for slug in permissions)
    ):
        raise unauthorized("The access token claims are malformed.")
    if await resources.redis.exists(resources.key("auth", "blacklist", jti)):
        raise unauthorized("The access token has been revoked.")
    return Principal(subject, frozenset(permissions))


class RequirePermission:
    """`Depends(RequirePermission("inventory.stock.view"))`: the caller, who must hold it."""

    def __init__(self, permission: str) -> None:
        self.permission = permission

    async def __call__(
        self, principal: Annotated[Principal, Depends(current_principal)]
    ) -> Principal:
        if self.permission not in principal.permissions:
            raise ProblemError(403, "Forbidden", f"Missing permission: {self.permission}")
        return principal


# --- query parameters -----------------------------------------------------------------------


PRICE = r"^\d{1,7}\.\d{2}$"


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the spec's strictness: no unknown parameters

    page: int = Field(1, ge=1, le=1_000_000)
    per_page: int = Field(15, ge=1, le=100)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    def meta(self, total: int) -> models.PaginationMeta:
        last_page = max(1, -(-total // self.per_page))
        return models.PaginationMeta(
            page=self.page, per_page=self.per_page, total=total, last_page=last_page
        )


class ProductQuery(PageQuery):
    search: str | None = Field(None, min_length=1, max_length=255)
    category_id: UUID | None = None
    status: models.ProductStatus | None = None
    min_price: str | None = Field(None, pattern=PRICE, max_length=10)
    max_price: str | None = Field(None, pattern=PRICE, max_length=10)


class StockQuery(PageQuery):
    product_id: UUID | None = None
    warehouse_id: UUID | None = None


# --- endpoints ------------------------------------------------------------------------------


@app.get("/health/live", response_model=models.Liveness)
async def get_liveness() -> models.Liveness:
    return models.Liveness(status="ok")


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _product_list_digest(query: ProductQuery) -> str:
    """The service's cache key part for this query (queries.list_products)."""
    key = {
        "page": query.page,
        "per_page": query.per_page,
        "search": query.search,
        "category_id": None if query.category_id is None else str(query.category_id),
        "status": None if query.status is None else query.status.value,
        "min_price": None if query.min_price is None else str(Decimal(query.min_price)),
        "max_price": None if query.max_price is None else str(Decimal(query.max_price)),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


async def _load_products(resources: Resources, query: ProductQuery) -> models.ProductList:
    where: list[str] = ["deleted_at IS NULL"]
    params: dict[str, Any] = {}
    if query.search is not None:
        where.append(
            "(lower(name) LIKE %(like)s ESCAPE '\\' OR lower(sku) LIKE %(like)s ESCAPE '\\')"
        )
        params["like"] = _like(query.search)
    if query.category_id is not None:
        where.append("category_id = %(category_id)s")
        params["category_id"] = query.category_id
    if query.status is not None:
        where.append("status = %(status)s")
        params["status"] = query.status.value
    if query.min_price is not None:
        where.append("price >= %(min_price)s")
        params["min_price"] = Decimal(query.min_price)
    if query.max_price is not None:
        where.append("price <= %(max_price)s")
        params["max_price"] = Decimal(query.max_price)
    condition = " AND ".join(where)
    async with resources.pool.connection() as conn:
        counted = await (
            await conn.execute(f"SELECT count(*) AS total FROM products WHERE {condition}", params)
        ).fetchone()
        rows = await (
            await conn.execute(
                "SELECT id, sku, name, description, price, currency, category_id, status,"
                f" created_at, updated_at, version FROM products WHERE {condition}"
                " ORDER BY name, id LIMIT %(limit)s OFFSET %(offset)s",
                {**params, "limit": query.per_page, "offset": query.offset},
            )
        ).fetchall()
    total = int(counted["total"]) if counted else 0
    return models.ProductList(
        data=[
            models.Product.model_validate({**row, "price": f"{row['price']:.2f}"}) for row in rows
        ],
        meta=query.meta(total),
    )


@app.get("/api/v1/products", response_model=models.ProductList)
async def list_products(
    resources: ResourcesDep, query: Annotated[ProductQuery, Query()]
) -> Response:
    """The cached page as stored (JSON), or the page from PostgreSQL, then stored."""
    redis = resources.redis
    version = int(await redis.get(resources.key("cache", "tag", PRODUCTS_TAG)) or 0)
    key = resources.key("cache", PRODUCTS_TAG, f"v{version}", "list", _product_list_digest(query))
    cached = await redis.get(key)
    if cached is None:
        cached = (await _load_products(resources, query)).model_dump_json()
        await redis.set(key, cached, px=PRODUCT_LIST_TTL_MS)
    return Response(cached, media_type="application/json")


_LIVE_STOCK = "FROM stock s JOIN products p ON p.id = s.product_id WHERE p.deleted_at IS NULL"


@app.get("/api/v1/stock", response_model=models.StockList)
async def list_stock(
    resources: ResourcesDep,
    _caller: Annotated[Principal, Depends(RequirePermission("inventory.stock.view"))],
    query: Annotated[StockQuery, Query()],
) -> models.StockList:
    condition = _LIVE_STOCK
    params: dict[str, Any] = {}
    if query.product_id is not None:
        condition += " AND s.product_id = %(product_id)s"
        params["product_id"] = query.product_id
    if query.warehouse_id is not None:
        condition += " AND s.warehouse_id = %(warehouse_id)s"
        params["warehouse_id"] = query.warehouse_id
    async with resources.pool.connection() as conn:
        counted = await (
            await conn.execute(f"SELECT count(*) AS total {condition}", params)
        ).fetchone()
        rows = await (
            await conn.execute(
                "SELECT s.product_id, s.warehouse_id, s.on_hand, s.reserved,"
                " s.on_hand - s.reserved AS available, s.min_quantity, s.updated_at"
                f" {condition} ORDER BY s.product_id, s.warehouse_id"
                " LIMIT %(limit)s OFFSET %(offset)s",
                {**params, "limit": query.per_page, "offset": query.offset},
            )
        ).fetchall()
    total = int(counted["total"]) if counted else 0
    return models.StockList(
        data=[models.Stock.model_validate(row) for row in rows], meta=query.meta(total)
    )


@app.post("/api/v1/stock/receive", response_model=models.Movement, status_code=201)
async def receive_stock(
    resources: ResourcesDep,
    caller: Annotated[Principal, Depends(RequirePermission("inventory.stock.update"))],
    body: models.StockReceive,
) -> models.Movement:
    if len(body.reason.strip()) < 5:
        raise unprocessable(
            "The request breaks the rules; see errors.",
            "reason",
            "must be 5 to 255 characters of text",
        )
    warehouse_id = None if body.warehouse_id is MISSING else body.warehouse_id
    reference = None if body.reference is MISSING else body.reference
    now = datetime.now(UTC)
    async with resources.pool.connection() as conn, conn.transaction():
        product = await (
            await conn.execute(
                "SELECT id FROM products WHERE id = %s AND deleted_at IS NULL", (body.product_id,)
            )
        ).fetchone()
        if product is None:
            raise unprocessable(
                f"Product {body.product_id} does not exist.", "product_id", "unknown product"
            )
        if warehouse_id is None:
            found = await (
                await conn.execute(
                    "SELECT id FROM warehouses WHERE code = %s", (DEFAULT_WAREHOUSE_CODE,)
                )
            ).fetchone()
            if found is None:
                raise RuntimeError("the default warehouse is missing (the service seeds it)")
        else:
            found = await (
                await conn.execute("SELECT id FROM warehouses WHERE id = %s", (warehouse_id,))
            ).fetchone()
            if found is None:
                raise unprocessable(
                    f"Warehouse {warehouse_id} does not exist.", "warehouse_id", "unknown warehouse"
                )
        # The row lock of the upsert serialises concurrent receipts of the same stock row.
        stock = await (
            await conn.execute(
                "INSERT INTO stock AS s"
                " (product_id, warehouse_id, on_hand, reserved, min_quantity, updated_at)"
                " VALUES (%(product_id)s, %(warehouse_id)s, %(quantity)s, 0, %(min_quantity)s,"
                " %(now)s)"
                " ON CONFLICT (product_id, warehouse_id) DO UPDATE"
                " SET on_hand = s.on_hand + EXCLUDED.on_hand, updated_at = EXCLUDED.updated_at"
                " RETURNING s.on_hand, s.reserved",
                {
                    "product_id": body.product_id,
                    "warehouse_id": found["id"],
                    "quantity": body.quantity,
                    "min_quantity": DEFAULT_MIN_QUANTITY,
                    "now": now,
                },
            )
        ).fetchone()
        assert stock is not None  # INSERT … ON CONFLICT DO UPDATE returns the row
        if stock["on_hand"] > MAX_QUANTITY:
            raise unprocessable(
                f"The stock cannot change: on hand would exceed {MAX_QUANTITY}.",
                "quantity",
                f"on hand would exceed {MAX_QUANTITY}",
            )
        movement = await (
            await conn.execute(
                "INSERT INTO stock_movements (product_id, warehouse_id, type, quantity,"
                " on_hand_before, on_hand_after, reserved_before, reserved_after, reason,"
                " reference, user_id, created_at)"
                " VALUES (%(product_id)s, %(warehouse_id)s, 'in', %(quantity)s,"
                " %(on_hand)s - %(quantity)s, %(on_hand)s, %(reserved)s, %(reserved)s,"
                " %(reason)s, %(reference)s, %(user_id)s, %(now)s)"
                " RETURNING id, product_id, warehouse_id, type, quantity, on_hand_before,"
                " on_hand_after, reserved_before, reserved_after, reason, reference, user_id,"
                " created_at",
                {
                    "product_id": body.product_id,
                    "warehouse_id": found["id"],
                    "quantity": body.quantity,
                    "on_hand": stock["on_hand"],
                    "reserved": stock["reserved"],
                    "reason": body.reason,
                    "reference": reference,
                    "user_id": caller.user_id,
                    "now": now,
                },
            )
        ).fetchone()
    return models.Movement.model_validate(movement)


def main() -> None:
    parser = argparse.ArgumentParser(description="the FastAPI twin of the inventory service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18103)
    args = parser.parse_args()
    # As `erp serve` runs a service: one process, uvicorn's default loop and HTTP parser.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
