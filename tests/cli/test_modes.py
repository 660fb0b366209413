"""Every `erp` command picks embedded mode or the real servers by one rule and says which on
stderr; a server it cannot reach, or a command that has nothing to act on, is one clear line
and a non-zero exit, never a traceback.

"A machine without servers" is the same machine in a network namespace of its own
(`unshare --net`: nothing answers on 127.0.0.1 there), so these tests run `erp` exactly as a
developer would, with the real servers still up outside for the tests that want them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import psycopg
import pytest
import redis

from services.platform.core import settings as settings_module
from services.platform.core.settings import choose_mode
from tests.support.processes import ERP, ROOT, free_port
from tests.support.servers import POSTGRES_URL, RUN_ID

PASSWORD = "Cli-mode-pass-42"


def run_erp(
    *args: str, env: Mapping[str, str], offline: bool = False, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`erp ARGS` with only `env` of the ERP_* variables; `offline`: in a network namespace
    where no server answers."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ERP_") and k != "PORT"}
    command = ["unshare", "--net", "--", ERP, *args] if offline else [ERP, *args]
    return subprocess.run(
        command,
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def mode_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("erp: running ")]
    assert len(lines) == 1, f"expected one mode line:\n{result.stderr}"
    return lines[0]


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


def test_create_admin_without_servers_runs_embedded_and_says_so(tmp_path: Path) -> None:
    result = run_erp(
        "users", "create-admin", "ana@example.com", "--password", PASSWORD,
        env={"ERP_DATA_DIR": str(tmp_path)},
        offline=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    line = mode_line(result)
    assert "running embedded" in line
    assert "nothing answers on 127.0.0.1" in line
    assert str(tmp_path / "auth.db") in line
    with sqlite3.connect(tmp_path / "auth.db") as database:
        emails = [row[0] for row in database.execute("SELECT email FROM users")]
    assert emails == ["ana@example.com"]  # where `erp up` (embedded) will find it


def test_demo_seed_without_servers_runs_embedded_and_says_so(tmp_path: Path) -> None:
    result = run_erp("demo", "seed", "auth", env={"ERP_DATA_DIR": str(tmp_path)}, offline=True)
    assert result.returncode == 0, result.stderr
    line = mode_line(result)
    assert line.startswith("erp: running embedded (no server URL set")
    assert str(tmp_path / "auth.db") in line
    assert "demo data of auth loaded" in result.stdout


def test_serve_without_servers_runs_embedded_and_says_so(tmp_path: Path) -> None:
    env = {"ERP_DATA_DIR": str(tmp_path), "PORT": str(free_port())}
    base = {k: v for k, v in os.environ.items() if not k.startswith("ERP_") and k != "PORT"}
    with subprocess.Popen(
        ["unshare", "--net", "--", ERP, "serve", "auth"],
        env={**base, **env},
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stderr is not None
        try:
            first = process.stderr.readline()
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert first.startswith("erp: running embedded (no server URL set"), first


def test_an_unreachable_configured_server_is_one_clear_line_naming_it() -> None:
    port = free_port()  # nothing listens there
    result = run_erp(
        "users", "create-admin", "ana@example.com", "--password", PASSWORD,
        env={"ERP_AUTH_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/auth_db"},
    )  # fmt: skip
    assert result.returncode != 0
    no_traceback(result)
    assert "running on the servers (ERP_AUTH_DATABASE_URL set)" in mode_line(result)
    assert f"erp: cannot reach the servers (PostgreSQL 127.0.0.1:{port}/auth_db" in result.stderr


def test_dlq_of_a_service_that_consumes_nothing_is_a_clear_message() -> None:
    result = run_erp("dlq", "list", "auth", env={}, offline=True)
    assert result.returncode == 1
    no_traceback(result)
    assert result.stderr.strip().endswith(
        "erp: auth consumes no events, so it has no dead-letter queue."
    )


def test_dlq_in_embedded_mode_refuses_clearly(tmp_path: Path) -> None:
    result = run_erp("dlq", "list", "inventory", env={"ERP_DATA_DIR": str(tmp_path)}, offline=True)
    assert result.returncode == 1
    no_traceback(result)
    assert "running embedded" in mode_line(result)
    assert "erp: embedded mode keeps dead letters in the broker inside the running `erp up`" in (
        result.stderr
    )


def test_dlq_with_an_unreachable_broker_is_one_clear_line() -> None:
    port = free_port()
    result = run_erp(
        "dlq", "list", "inventory", env={"ERP_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/"}
    )
    assert result.returncode == 1
    no_traceback(result)
    assert "erp: cannot reach the servers (" in result.stderr
    assert f"RabbitMQ 127.0.0.1:{port}/" in result.stderr


@pytest.mark.integration
def test_create_admin_on_the_servers_says_which_database_it_writes(
    service_env: Mapping[str, str],
) -> None:
    result = run_erp(
        "users", "create-admin", "ana@example.com", "--password", PASSWORD, env=service_env
    )
    assert result.returncode == 0, result.stderr
    line = mode_line(result)
    assert "running on the servers" in line
    database = f"erptest_{RUN_ID}_auth_db"
    assert f"PostgreSQL 127.0.0.1:5432/{database}" in line
    with psycopg.connect(f"{POSTGRES_URL}/{database}") as connection:
        found = connection.execute("SELECT 1 FROM users WHERE email = 'ana@example.com'")
        assert found.fetchone() == (1,)


# --- the rule itself, with the probe of the default ports stood in for -----------------------


@pytest.fixture
def listening(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    ports: set[int] = set()
    monkeypatch.setattr(settings_module, "_accepts", lambda _host, port, _t: port in ports)
    return ports


def test_the_mode_names_its_reason(listening: set[int]) -> None:
    assert choose_mode({"ERP_EMBEDDED": "1"}).reason == "ERP_EMBEDDED=1"
    configured = choose_mode({"ERP_REDIS_URL": "redis://cache:6379/0", "ERP_AMQP_URL": " "})
    assert (configured.embedded, configured.reason) == (False, "ERP_REDIS_URL set")
    listening.add(6379)
    partial = choose_mode({})
    assert partial.embedded
    assert partial.reason.endswith("for postgresql :5432, rabbitmq :5672")
    listening.update({5432, 5672})
    local = choose_mode({})
    assert not local.embedded
    assert (
        local.reason
        == "no server URL set; local postgresql :5432, rabbitmq :5672, redis :6379 answer"
    )


def test_mail_in_embedded_mode_points_at_the_dev_mailbox(tmp_path: Path) -> None:
    result = run_erp("mail", "list", env={"ERP_DATA_DIR": str(tmp_path)}, offline=True)
    assert result.returncode == 1
    no_traceback(result)
    assert "running embedded" in mode_line(result)
    assert "open http://127.0.0.1:8006/dev/mailbox there instead" in result.stderr


@pytest.mark.integration
def test_mail_lists_and_shows_what_notification_kept_on_redis(
    scoped_env: Callable[[str], Mapping[str, str]],
) -> None:
    env = scoped_env("cli_mail")
    identifier = str(uuid.uuid4())
    kept = {
        "id": identifier,
        "to": "ana@example.com",
        "subject": "Confirm your e-mail address",
        "text": "Hello Ana,\n",
        "html": '<a href="http://localhost:5173/verify-email?token=t">',
        "links": ["http://localhost:5173/verify-email?token=t"],
        "kept_at": "2026-01-01T00:00:00Z",
    }
    client = redis.Redis.from_url(env["ERP_REDIS_URL"])
    client.lpush(f"{env['ERP_REDIS_PREFIX']}notification:mailbox", json.dumps(kept))
    client.close()
    listed = run_erp("mail", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert f"{identifier}  ana@example.com  Confirm your e-mail address" in listed.stdout
    shown = run_erp("mail", "show", identifier, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Hello Ana," in shown.stdout
    assert "link: http://localhost:5173/verify-email?token=t" in shown.stdout
    missing = run_erp("mail", "show", str(uuid.uuid4()), env=env)
    assert missing.returncode == 1
    no_traceback(missing)


def test_a_service_without_a_database_names_none() -> None:
    port = free_port()
    result = run_erp(
        "dlq", "list", "notification", env={"ERP_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/"}
    )
    assert result.returncode == 1
    no_traceback(result)
    line = mode_line(result)
    assert f"RabbitMQ 127.0.0.1:{port}/" in line
    assert "PostgreSQL" not in line
    assert "SQLite" not in line
