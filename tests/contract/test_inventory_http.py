"""Schemathesis over every inventory operation, against `erp serve inventory` (verifying tokens
through the JWKS of a real `erp serve auth`), authenticated as a super-admin."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from tests.contract.conftest import REPORTS, run_schemathesis
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.contract]


@pytest.fixture(scope="module")
def inventory_service(
    contract_env: Mapping[str, str], auth_service: ServiceProcess
) -> Iterator[ServiceProcess]:
    env = {**contract_env, "ERP_AUTH_URL": auth_service.url}
    service = ServiceProcess("inventory", env, REPORTS).start()
    try:
        yield service
    finally:
        service.stop()


def test_every_inventory_operation_conforms(
    inventory_service: ServiceProcess, admin_token: str
) -> None:
    run_schemathesis(inventory_service, f"Authorization: Bearer {admin_token}")
