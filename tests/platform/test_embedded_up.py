"""`erp up` in embedded mode: SQLite files, in-process broker and Redis stand-in, no servers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from services.registry import SERVICES
from tests.support.processes import ERP, ROOT, free_port


def test_erp_up_runs_embedded_and_serves_auth(tmp_path: Path) -> None:
    ports = {service: free_port() for service in SERVICES}
    port = ports["auth"]
    env = {
        key: value
        for key, value in os.environ.items()
        if not (key.startswith("ERP_") or key == "PORT")
    }
    env |= {"ERP_EMBEDDED": "1", "ERP_DATA_DIR": str(tmp_path / "data")}
    env |= {f"ERP_{service.upper()}_PORT": str(ports[service]) for service in SERVICES}
    env |= {"ERP_AUTH_URL": f"http://127.0.0.1:{port}"}
    process = subprocess.Popen(
        [ERP, "up"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health is not None, "erp up did not answer on the auth port"
        assert health.status_code == 200, health.text
        assert {name for name, check in health.json()["checks"].items()} == {
            "database",
            "redis",
            "rabbitmq",
        }

        registered = httpx.post(
            f"{base}/api/v1/auth/register",
            json={"name": "Ana", "email": "ana@example.com", "password": "Embedded-pass-1"},
        )
        assert registered.status_code == 201, registered.text
        token = registered.json()["tokens"]["access_token"]
        me = httpx.get(f"{base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.json()["email"] == "ana@example.com"
        assert (tmp_path / "data" / "auth.db").exists()
        for service, service_port in ports.items():
            # auth starts first (the others fetch its keys); the rest follow within moments.
            status = None
            while status is None and time.monotonic() < deadline:
                try:
                    url = f"http://127.0.0.1:{service_port}/health"
                    status = httpx.get(url, timeout=5).status_code
                except httpx.HTTPError:
                    time.sleep(0.3)
            assert status == 200, f"{service} is not healthy in embedded mode"
        # The welcome e-mail is kept in the dev mailbox, its verification link ready to open.
        mailbox = f"http://127.0.0.1:{ports['notification']}/dev/mailbox/messages"
        kept: list[dict[str, Any]] = []
        while not kept and time.monotonic() < deadline:
            kept = [
                m
                for m in httpx.get(mailbox, timeout=5).json()["data"]
                if m["to"] == "ana@example.com"
            ]
            time.sleep(0.1)
        assert kept, "the welcome e-mail is not in the dev mailbox"
        [link] = kept[0]["links"]
        assert link.startswith("http://localhost:5173/verify-email?token=")
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert "running embedded" in output
    for service_port in ports.values():
        assert f"http://127.0.0.1:{service_port}/ui/" in output
    assert f"http://127.0.0.1:{ports['notification']}/dev/mailbox" in output
