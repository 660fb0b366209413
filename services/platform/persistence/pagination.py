"""List paging (DESIGN §3): `?page=&per_page=` with a `meta` block, and opaque keyset cursors.

page = Page.of(page, per_page)
rows, meta = await paginate(session, select(Product).order_by(Product.name), page)
return reply({"data": rows, "meta": meta})
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel.sql.expression import SelectOfScalar

from services.platform.core.problems import Problem

DEFAULT_PER_PAGE = 15
MAX_POSITION = 2**63 - 1  # PostgreSQL BIGINT
MAX_PER_PAGE = 100

T = TypeVar("T")


class PageMeta(TypedDict):
    page: int
    per_page: int
    total: int
    last_page: int


@dataclass(frozen=True)
class Page:
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    @classmethod
    def of(
        cls,
        page: int | None = None,
        per_page: int | None = None,
        *,
        max_per_page: int = MAX_PER_PAGE,
    ) -> Page:
        """Validate query values (the spec checks them too; this guards other callers)."""
        page = 1 if page is None else page
        per_page = DEFAULT_PER_PAGE if per_page is None else per_page
        errors = []
        if page < 1:
            errors.append({"field": "page", "message": "must be at least 1"})
        if not 1 <= per_page <= max_per_page:
            errors.append({"field": "per_page", "message": f"must be 1 to {max_per_page}"})
        if errors:
            raise Problem(400, "Bad Request", "Invalid paging parameters.", errors=errors)
        return cls(page, per_page)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def limit(self) -> int:
        return self.per_page

    def meta(self, total: int) -> PageMeta:
        return {
            "page": self.page,
            "per_page": self.per_page,
            "total": total,
            "last_page": max(1, math.ceil(total / self.per_page)),
        }


async def paginate(
    session: AsyncSession, statement: Select[T], page: Page
) -> tuple[Sequence[T], PageMeta]:
    """One page of a single-entity SELECT and the meta block (COUNT over the same query)."""
    count = select(func.count()).select_from(statement.order_by(None).subquery())
    total = int((await session.execute(count)).scalar_one())
    rows = (await session.scalars(statement.offset(page.offset).limit(page.limit))).all()
    return rows, page.meta(total)


def encode_cursor(position: Mapping[str, Any]) -> str:
    """An opaque cursor for a keyset position, e.g. {"created_at": ..., "id": ...}."""
    raw = json.dumps(to_jsonable_python(position), separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str, fields: Sequence[str] | None = None) -> dict[str, Any]:
    """The position in a cursor; Problem 400 when it is not one we issued (or lacks `fields`)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        position = None
    if not isinstance(position, dict) or any(name not in position for name in fields or ()):
        raise _invalid_cursor()
    return position


def _invalid_cursor() -> Problem:
    return Problem(
        400,
        "Bad Request",
        "The cursor is not valid; use the next_cursor of a previous page.",
        errors=[{"field": "cursor", "message": "invalid cursor"}],
    )


@dataclass(frozen=True, slots=True)
class KeysetPage(Generic[T]):
    rows: Sequence[T]
    next_cursor: str | None
    per_page: int


async def newest_first(
    session: AsyncSession,
    statement: SelectOfScalar[T],
    key: Any,
    cursor: str | None,
    per_page: int,
) -> KeysetPage[T]:
    """A page of an append-only collection, newest first, keyset-paged on `key`, an increasing
    integer column of the selected table (`col(Table.id)`): stable while rows are added, unlike
    OFFSET."""
    name: str = key.key
    if cursor:  # an empty cursor (`?cursor=`) is the first page, as no cursor is
        position = decode_cursor(cursor, [name])[name]
        # Ours are positive BIGINT ids: anything else was not issued here (and beyond 2^63
        # the database could not even compare it).
        if not isinstance(position, int) or isinstance(position, bool):
            raise _invalid_cursor()
        if not 0 < position <= MAX_POSITION:
            raise _invalid_cursor()
        statement = statement.where(key < position)
    found = await session.scalars(statement.order_by(key.desc()).limit(per_page + 1))
    rows = list(found.all())
    more = len(rows) > per_page
    rows = rows[:per_page]
    next_cursor = encode_cursor({name: getattr(rows[-1], name)}) if more and rows else None
    return KeysetPage(rows, next_cursor, per_page)


ListModel = TypeVar("ListModel", bound=BaseModel)


def page_of(model: type[ListModel], rows: Iterable[object], meta: PageMeta) -> ListModel:
    """A `{data, meta}` list reply of the generated list `model`, from table rows (or models)
    and the page's meta: `return page_of(models.ProductList, rows, meta)`."""
    return model.model_validate({"data": list(rows), "meta": meta}, from_attributes=True)


def keyset_of(model: type[ListModel], page: KeysetPage[Any]) -> ListModel:
    """A `{data, meta: {per_page, next_cursor}}` list reply of `model` from a keyset page."""
    meta = {"per_page": page.per_page, "next_cursor": page.next_cursor}
    return model.model_validate({"data": list(page.rows), "meta": meta}, from_attributes=True)
