"""Waiting for something that happens in the background (a consumer, the relay, a process)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]],
    *,
    within: float = ...,
    every: float = ...,
    what: str | None = ...,
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T | None],
    *,
    within: float = ...,
    every: float = ...,
    what: str | None = ...,
) -> T: ...


async def eventually(
    condition: Callable[[], object],
    *,
    within: float = 10,
    every: float = 0.02,
    what: str | None = None,
) -> object:
    """Call `condition` (sync or async) every `every` seconds until it returns something truthy,
    and return that; after `within` seconds fail, saying what was waited for (`what`, else the
    condition's source)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"not within {within} s: {what or _source(condition)}")
        await asyncio.sleep(every)


def _source(condition: Callable[[], object]) -> str:
    try:
        return inspect.getsource(condition).strip()
    except (OSError, TypeError):
        return repr(condition)
