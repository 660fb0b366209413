"""Forgotten passwords (issue 7, items 7 and 8), against the real servers.

* Nobody spends the account owner's own reset requests: the silent limit counts per address
  *and* client, so three requests by an attacker leave the owner's request working.
* The request does the same for a known and an unknown address — the same SQL (none) and the
  same Redis commands within the request — and the e-mail's work (token, event, audit) runs in
  a job after the answer, under the request's correlation id. Proven by recording what each
  request runs, not by timing it (no timed tests: they flake on a loaded machine);
  `tools/dev/forgot_password_timing.py` measures the medians.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine

from services.platform.core import scope
from services.platform.core.settings import Settings
from services.platform.runtime.service import ServiceContext, current_context
from tests.support.accounts import PASSWORD
from tests.support.http import Api, new_ip, unique_email
from tests.support.polling import eventually
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

FORGOT = "/api/v1/auth/forgot-password"
RESET_EVENT = "auth.user.password_reset_requested"


@pytest.fixture(scope="module")
def module_env(scoped_env: Callable[[str], Mapping[str, str]]) -> Mapping[str, str]:
    return scoped_env("security_password_reset")


@pytest.fixture(scope="module")
def engine(auth_settings: Settings, auth_server: ServerThread) -> Iterator[Engine]:
    database = create_engine(auth_settings.database_url)
    yield database
    database.dispose()


def register(api: Api) -> str:
    email = unique_email("owner")
    api.created("/api/v1/auth/register", {"name": "Owner", "email": email, "password": PASSWORD})
    return email


def ask_reset(api: Api, email: str) -> str:
    """Ask for a reset of `email`; the request's correlation id (its event carries it)."""
    correlation = str(uuid.uuid4())
    answer = api.post(FORGOT, json={"email": email}, headers={"X-Correlation-ID": correlation})
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"status": "accepted"}
    return correlation


def reset_events(engine: Engine, email: str) -> dict[str, dict[str, Any]]:
    """The reset events of `email` in the outbox, by correlation id."""
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT body FROM outbox WHERE event_name = :name"), {"name": RESET_EVENT}
        ).all()
    envelopes = [json.loads(body) for (body,) in rows]
    return {e["correlation_id"]: e for e in envelopes if e["payload"]["email"] == email}


def wait_for_event(engine: Engine, email: str, correlation: str) -> dict[str, Any]:
    found: dict[str, Any] = asyncio.run(
        eventually(
            lambda: reset_events(engine, email).get(correlation),
            what=f"the reset event of request {correlation}",
        )
    )
    return found


def test_others_cannot_spend_the_owners_reset_requests(
    auth_server: ServerThread, engine: Engine
) -> None:
    with Api(auth_server.url, ip=new_ip()) as owner:
        email = register(owner)
        attacker = owner.from_another_address()
        for _ in range(3):
            wait_for_event(engine, email, ask_reset(attacker, email))
        dropped = ask_reset(attacker, email)  # the attacker's fourth: silently not sent
        own = ask_reset(owner, email)
        event = wait_for_event(engine, email, own)
        assert event["payload"]["email"] == email
        # The queue is worked in order: the attacker's request was handled before the owner's.
        assert dropped not in reset_events(engine, email)


def test_known_and_unknown_addresses_do_the_same_work_in_the_request(
    auth_server: ServerThread, engine: Engine
) -> None:
    recorded: dict[str, list[str]] = defaultdict(list)

    def record_sql(conn: object, cursor: object, statement: str, *args: object) -> None:
        """SQLAlchemy's before_cursor_execute: every statement, by the request running it."""
        request = scope.request_id.get()
        if request is not None:
            recorded[request].append(statement)

    async def start_recording() -> None:
        ctx: ServiceContext = current_context()
        event.listen(ctx.database.engine.sync_engine, "before_cursor_execute", record_sql)
        redis_command: Callable[..., Awaitable[Any]] = ctx.redis.execute_command

        async def record_redis(*args: Any, **options: Any) -> Any:
            request = scope.request_id.get()
            if request is not None:
                recorded[request].append(f"redis {args[0]}")
            return await redis_command(*args, **options)

        ctx.redis.execute_command = record_redis  # type: ignore[method-assign]

    async def stop_recording() -> None:
        ctx: ServiceContext = current_context()
        event.remove(ctx.database.engine.sync_engine, "before_cursor_execute", record_sql)
        del ctx.redis.execute_command

    with Api(auth_server.url, ip=new_ip()) as api:
        known = register(api)
        auth_server.call(start_recording)
        try:
            requests = {"known": str(uuid.uuid4()), "unknown": str(uuid.uuid4())}
            correlation = str(uuid.uuid4())
            for which, email in (("known", known), ("unknown", unique_email("nobody"))):
                answer = api.from_another_address().post(
                    FORGOT,
                    json={"email": email},
                    headers={"X-Request-ID": requests[which], "X-Correlation-ID": correlation},
                )
                assert answer.status_code == 202, answer.text
        finally:
            auth_server.call(stop_recording)
    assert recorded[requests["known"]] == recorded[requests["unknown"]]
    assert not any(
        line.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE"))
        for line in recorded[requests["known"]]
    )
    # The e-mail's work happened afterwards, under the request's ids.
    sent = wait_for_event(engine, known, correlation)
    assert sent["metadata"]["trace_id"] == requests["known"]
