"""Schemathesis over every financial operation, against `erp serve financial` (verifying tokens
through the JWKS of a real `erp serve auth`), authenticated as a super-admin."""

from __future__ import annotations

import pytest

from tests.contract.conftest import run_schemathesis
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.contract]


def test_every_financial_operation_conforms(
    financial_service: ServiceProcess, admin_token: str
) -> None:
    run_schemathesis(financial_service, f"Authorization: Bearer {admin_token}")
