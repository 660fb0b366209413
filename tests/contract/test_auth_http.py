"""Schemathesis over every auth operation, against `erp serve auth` on the real servers.

Authenticated with a partner API key that holds every permission, so each operation is reached
past its security (a bearer token would be blacklisted by the run's own calls to logout).
"""

from __future__ import annotations

import pytest

from tests.contract.conftest import run_schemathesis
from tests.support.http import Api
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.contract]


@pytest.fixture
def partner_key(auth_service: ServiceProcess, admin_token: str) -> str:
    with Api(auth_service.url, admin_token) as auth:
        catalogue = auth.get("/api/v1/permissions")
        assert catalogue.status_code == 200, catalogue.text
        permissions = [permission["slug"] for permission in catalogue.json()["data"]]
        key: str = auth.created(
            "/api/v1/api-keys", {"name": "schemathesis", "permissions": permissions}
        )["key"]
        return key


def test_every_auth_operation_conforms(auth_service: ServiceProcess, partner_key: str) -> None:
    run_schemathesis(auth_service, f"X-API-Key: {partner_key}")
