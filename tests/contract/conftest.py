"""What the HTTP contract tests share: the platform running as real processes (the harness's
`auth_service`, `inventory_service`, `admin_token`) in databases and Redis keys of their own,
and one way to run Schemathesis over a service."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from tests.support.processes import ERP, ROOT, ServiceProcess

MAX_EXAMPLES = os.environ.get("ERP_SCHEMATHESIS_MAX_EXAMPLES", "25")
REPORTS = ROOT / ".schemathesis"  # reports and service logs, kept for reading after a failure


@pytest.fixture(scope="module")
def module_env(
    request: pytest.FixtureRequest, scoped_env: Callable[[str], Mapping[str, str]]
) -> Mapping[str, str]:
    # Schemathesis edits roles, deactivates users and trips rate limits: each contract module
    # gets databases and keys of its own, so one run never changes what another sees.
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return scoped_env(f"contract_{module.removesuffix('_http')}")


@pytest.fixture(scope="module")
def service_logs() -> Path:
    REPORTS.mkdir(exist_ok=True)
    return REPORTS


@pytest.fixture(scope="module")
def auth_url(auth_service: ServiceProcess) -> str:
    return auth_service.url


def run_schemathesis(service: ServiceProcess, *headers: str) -> None:
    """All checks, every phase (examples, coverage, fuzzing, stateful links); fails the test
    with the report when Schemathesis finds anything."""
    report = REPORTS / f"{service.service}.txt"
    options = [arg for header in headers for arg in ("--header", header)]
    result = subprocess.run(
        [
            str(Path(ERP).with_name("schemathesis")),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            MAX_EXAMPLES,
            *options,
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
        f"Schemathesis found failures (whole report: {report}):\n{result.stdout[-20000:]}\n"
        f"{result.stderr[-5000:]}\n--- service log ---\n{service.log()[-5000:]}"
    )
