"""Idempotency-Key for creating operations (DESIGN §3, IETF httpapi idempotency-key draft).

    rendered = await idempotent(
        ctx, operation_id="create_order", key=key, body=data, principal=caller.subject,
        run=effect,  # runs the handler on the unit of work and renders its response
    )

The kit does this for every operation that declares the Idempotency-Key header; handlers never
see the key.

* the same key with the same body replays the first response (`Idempotent-Replayed: true`);
* the same key with another body is a 422; a retry while the first request runs is a 409;
* keys are scoped by principal and operation, so two callers never see each other's responses;
* a response that carries secrets (the spec marks them `x-erp-secret`, e.g. a new API key) is
  stored without them and never replayed: a repeat is a 409 naming the created resource's
  `Location` (a secret is shown once; docs/adr/0006-abuse.md). Secrets of the request (a
  password) are left out of the body's fingerprint.

The key is first *claimed* in a short transaction of its own (so that a concurrent retry sees
it), then the response is stored in the transaction of the effect, so the effect and its stored
response commit together or not at all. When the effect fails the claim is released and the
request may be retried. A claim older than `lock_timeout` (its process died) is taken over.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from pydantic_core import to_jsonable_python
from sqlalchemy import and_, delete, or_, update
from sqlmodel import col

from services.platform.core.problems import Problem
from services.platform.core.rules import utc_now
from services.platform.core.scope import current_principal
from services.platform.http.responses import Rendered
from services.platform.persistence.db import Database, affected_rows, insert_ignoring_conflicts
from services.platform.persistence.tables import IdempotentRequest, kit_metadata
from services.platform.persistence.uow import Transactional, UnitOfWork

log = logging.getLogger(__name__)

REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX_LENGTH = 255
RETENTION = timedelta(hours=24)

Effect = Callable[[UnitOfWork], Awaitable[Rendered]]


@dataclass(frozen=True)
class _Scope:
    principal: str
    operation_id: str
    key: str

    def where(self) -> Any:
        return and_(
            col(IdempotentRequest.principal) == self.principal,
            col(IdempotentRequest.operation_id) == self.operation_id,
            col(IdempotentRequest.key) == self.key,
        )


async def idempotent(
    ctx: Transactional,
    *,
    operation_id: str,
    key: str | None,
    body: Any,
    run: Effect,
    principal: str | None = None,
    lock_timeout: float = 60.0,
    request_secrets: tuple[str, ...] = (),
    response_secrets: tuple[str, ...] = (),
) -> Rendered:
    """Run `run(uow)` at most once per (principal, operation, key) and commit its unit of work.

    `run` does the effect inside the given unit of work and returns the response; it must not
    commit. Without a key it simply runs. `principal` defaults to the caller's subject.
    `request_secrets` / `response_secrets`: dotted paths of the body's secret fields (the
    spec's `x-erp-secret`). Request secrets (a password) are left out of the fingerprint, so
    not even their hash is stored; response secrets are neither stored nor replayed.
    """
    if key is None:
        async with ctx.unit_of_work() as uow:
            response = await run(uow)
            await uow.commit()
            return response
    _check_key(key)
    scope = _Scope(principal or _current_subject(), operation_id, key)
    request_hash = fingerprint(body, without=request_secrets)
    claim = await _claim(ctx.database, scope, request_hash, lock_timeout, response_secrets)
    if isinstance(claim, Rendered):
        return claim
    try:
        async with ctx.unit_of_work() as uow:
            response = await run(uow)
            status, stored_body, headers = _stored_form(response, response_secrets)
            stored = await uow.session.execute(
                update(IdempotentRequest)
                .where(scope.where(), col(IdempotentRequest.lock_token) == claim)
                .values(
                    completed=True,
                    lock_token=None,
                    response_status=status,
                    response_body=stored_body,
                    response_headers=headers,
                    completed_at=utc_now(),
                )
            )
            if affected_rows(stored) != 1:
                # We ran past lock_timeout and a retry took the key over: let it win.
                raise _in_flight()
            await uow.commit()
    except BaseException:
        await _release(ctx.database, scope, claim)
        raise
    return response


def fingerprint(body: Any, without: tuple[str, ...] = ()) -> str:
    """SHA-256 of the body in canonical JSON (key order and spacing do not matter), leaving out
    the fields at the dotted paths `without` (secrets: a hash of a password is not stored)."""
    data = to_jsonable_python(body)  # a new object: the caller's body is left as it is
    for path in without:
        _drop(data, path.split("."))
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def purge_expired_keys(database: Database, older_than: timedelta = RETENTION) -> int:
    """Forget keys older than the retention period (24 h: clients retry within minutes)."""
    async with database.session() as session:
        result = await session.execute(
            delete(IdempotentRequest).where(
                col(IdempotentRequest.created_at) < utc_now() - older_than
            )
        )
        await session.commit()
    return affected_rows(result)


def _check_key(key: str) -> None:
    if not 0 < len(key) <= KEY_MAX_LENGTH or not key.isascii() or not key.isprintable():
        raise Problem(
            400,
            "Bad Request",
            f"Idempotency-Key must be 1 to {KEY_MAX_LENGTH} printable ASCII characters.",
            errors=[{"field": "Idempotency-Key", "message": "invalid key"}],
        )


def _current_subject() -> str:
    principal = current_principal()
    return f"{principal.kind}:{principal.subject}" if principal else "anonymous"


def _in_flight() -> Problem:
    return Problem(
        409,
        "Conflict",
        "A request with this Idempotency-Key is still being processed; retry later.",
        headers={"Retry-After": "1"},
    )


async def _claim(
    database: Database,
    scope: _Scope,
    request_hash: str,
    lock_timeout: float,
    secrets: tuple[str, ...],
) -> UUID | Rendered:
    """Claim the key (returns the claim's token) or answer from what is stored."""
    for _ in range(3):  # the row may vanish between our INSERT and SELECT (a released claim)
        token = uuid4()
        now = utc_now()
        async with database.session() as session:
            inserted = await session.execute(
                insert_ignoring_conflicts(
                    database.dialect,
                    kit_metadata.tables["idempotency_keys"],
                    {
                        "principal": scope.principal,
                        "operation_id": scope.operation_id,
                        "key": scope.key,
                        "request_hash": request_hash,
                        "lock_token": token,
                        "locked_at": now,
                        "completed": False,
                        "response_headers": {},
                        "created_at": now,
                    },
                )
            )
            if affected_rows(inserted) == 1:
                await session.commit()
                return token
            row = await session.get(
                IdempotentRequest, (scope.principal, scope.operation_id, scope.key)
            )
            if row is None:
                continue
            if row.request_hash != request_hash:
                raise Problem(
                    422,
                    "Unprocessable Content",
                    "This Idempotency-Key was already used with a different request body.",
                )
            if row.completed:
                return _replay(row, secrets)
            stale = row.locked_at is None or row.locked_at < now - timedelta(seconds=lock_timeout)
            if not stale:
                raise _in_flight()
            taken = await session.execute(
                update(IdempotentRequest)
                .where(
                    scope.where(),
                    col(IdempotentRequest.completed).is_(False),
                    or_(
                        col(IdempotentRequest.lock_token).is_(None),
                        col(IdempotentRequest.lock_token) == row.lock_token,
                    ),
                )
                .values(lock_token=token, locked_at=now)
            )
            if affected_rows(taken) == 1:
                await session.commit()
                log.warning("took over a stale idempotency claim on %s", scope.operation_id)
                return token
            raise _in_flight()
    raise _in_flight()


async def _release(database: Database, scope: _Scope, token: UUID) -> None:
    """Delete our claim after a failed effect, so that the client can retry."""
    try:
        async with database.session() as session:
            await session.execute(
                delete(IdempotentRequest).where(
                    scope.where(),
                    col(IdempotentRequest.lock_token) == token,
                    col(IdempotentRequest.completed).is_(False),
                )
            )
            await session.commit()
    except Exception:
        # The claim then expires after lock_timeout; the original error matters more.
        log.exception("could not release an idempotency claim on %s", scope.operation_id)


def _stored_form(
    response: Rendered, secrets: tuple[str, ...]
) -> tuple[int, str | None, dict[str, str]]:
    if not response.body:
        return response.status, None, response.headers
    if not secrets:
        return response.status, response.body.decode(), response.headers
    data = json.loads(response.body)
    for path in secrets:
        _drop(data, path.split("."))
    return response.status, json.dumps(data, ensure_ascii=False), response.headers


def _drop(data: Any, path: list[str]) -> None:
    """Remove the field at `path` (a secret) from a decoded JSON body, wherever it is present."""
    if not isinstance(data, dict) or path[0] not in data:
        return
    if len(path) == 1:
        del data[path[0]]
    else:
        _drop(data[path[0]], path[1:])


def _replay(row: IdempotentRequest, secrets: tuple[str, ...]) -> Rendered:
    if secrets and (row.response_status or 200) < 300:
        stored = row.response_headers
        location = next(
            (value for name, value in stored.items() if name.lower() == "location"), None
        )
        where = f" The created resource is at {location}." if location else ""
        raise Problem(
            409,
            "Conflict",
            "The request with this Idempotency-Key already succeeded. Its response carried a "
            "secret, which is shown only once and is kept nowhere, so it is not replayed."
            f"{where} If the secret was lost, revoke that one and create another.",
            headers={REPLAYED_HEADER: "true", **({"Location": location} if location else {})},
        )
    headers = {**row.response_headers, REPLAYED_HEADER: "true"}
    body = (row.response_body or "").encode()
    return Rendered(row.response_status or 200, body, headers)
