"""Schemathesis over every auth operation, against `erp serve auth` on the real servers.

All checks, every phase (examples, coverage, fuzzing, stateful links), authenticated with a
partner API key that holds every permission, so each operation is reached past its security.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from tests.processes import ERP, ROOT, ServiceProcess, erp

pytestmark = [pytest.mark.integration, pytest.mark.contract]

ADMIN_EMAIL = "contract-admin@example.com"
ADMIN_PASSWORD = "Sup3r-secret-pass"
MAX_EXAMPLES = os.environ.get("ERP_SCHEMATHESIS_MAX_EXAMPLES", "25")


@pytest.fixture(scope="module")
def auth_service(scoped_env: Callable[[str], Mapping[str, str]]) -> Iterator[ServiceProcess]:
    # Schemathesis edits roles and trips rate limits: its own database and keys.
    env = scoped_env("contract")
    erp("users", "create-admin", ADMIN_EMAIL, "--password", ADMIN_PASSWORD, env=env)
    logs = ROOT / ".schemathesis"  # kept beside the report for reading after a failure
    logs.mkdir(exist_ok=True)
    service = ServiceProcess("auth", env, logs).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def partner_key(auth_service: ServiceProcess) -> str:
    with httpx.Client(base_url=auth_service.url, timeout=10) as client:
        login = client.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, login.text
        token = login.json()["tokens"]["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        catalogue = client.get("/api/v1/permissions", headers=headers)
        assert catalogue.status_code == 200, catalogue.text
        created = client.post(
            "/api/v1/api-keys",
            headers=headers,
            json={
                "name": "schemathesis",
                "permissions": [permission["slug"] for permission in catalogue.json()["data"]],
            },
        )
        assert created.status_code == 201, created.text
        key: str = created.json()["key"]
        return key


def test_every_auth_operation_conforms(auth_service: ServiceProcess, partner_key: str) -> None:
    report = ROOT / ".schemathesis" / "auth.txt"  # the whole output, kept for reading
    report.parent.mkdir(exist_ok=True)
    result = subprocess.run(
        [
            str(Path(ERP).with_name("schemathesis")),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{auth_service.url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            MAX_EXAMPLES,
            "--header",
            f"X-API-Key: {partner_key}",
            "--seed",
            "1",
            "--no-color",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    report.write_text(result.stdout + result.stderr)
    print(result.stdout[-3000:])  # the summary, shown with `pytest -s`
    assert result.returncode == 0, (
        f"Schemathesis found failures:\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}\n"
        f"--- service log ---\n{auth_service.log()[-5000:]}"
    )
