"""Schemathesis over every logistics operation, against `erp serve logistics` (verifying tokens
through the JWKS of a real `erp serve auth`), authenticated as a super-admin."""

from __future__ import annotations

import pytest

from tests.contract.conftest import run_schemathesis
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.contract]


def test_every_logistics_operation_conforms(
    logistics_service: ServiceProcess, admin_token: str
) -> None:
    run_schemathesis(logistics_service, f"Authorization: Bearer {admin_token}")
