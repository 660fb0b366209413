"""Schemathesis over every notification operation, against `erp serve notification` (verifying
tokens through the JWKS of a real `erp serve auth`), authenticated as a super-admin."""

from __future__ import annotations

import pytest

from tests.contract.conftest import run_schemathesis
from tests.support.processes import ServiceProcess

pytestmark = [pytest.mark.integration, pytest.mark.contract]


def test_every_notification_operation_conforms(
    notification_service: ServiceProcess, admin_token: str
) -> None:
    run_schemathesis(notification_service, f"Authorization: Bearer {admin_token}")
