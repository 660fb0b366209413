"""Schemathesis over every auth operation, against `erp serve auth` on the real servers.

Authenticated with a partner API key that holds every permission, so each operation is reached
past its security (a bearer token would be blacklisted by the run's own calls to logout).
"""

from __future__ import annotations

import httpx
import pytest

from tests.contract.conftest import run_schemathesis
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.contract]


@pytest.fixture(scope="module")
def partner_key(auth_service: ServiceProcess, admin_token: str) -> str:
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=auth_service.url, timeout=10, headers=headers) as client:
        catalogue = client.get("/api/v1/permissions")
        assert catalogue.status_code == 200, catalogue.text
        created = client.post(
            "/api/v1/api-keys",
            json={
                "name": "schemathesis",
                "permissions": [permission["slug"] for permission in catalogue.json()["data"]],
            },
        )
        assert created.status_code == 201, created.text
        key: str = created.json()["key"]
        return key


def test_every_auth_operation_conforms(auth_service: ServiceProcess, partner_key: str) -> None:
    run_schemathesis(auth_service, f"X-API-Key: {partner_key}")
