"""The end-to-end harness: the six services as separate `erp serve` processes on the real
PostgreSQL, RabbitMQ and Redis — databases, a vhost and Redis keys of their own — with every
message any of them publishes captured (`wire`, a `Capture` declared before the first service
starts; see tests/support/capture.py), and notification's e-mail sent to a real SMTP server
(`mail`, aiosmtpd: tests/support/mailsink.py).

Fixtures (session-wide, shared by every module here):

* `platform`: the running services by name (`platform["sales"].url`); when a test fails, each
  service's log is added to its report;
* `wire`: the capture (`wire.messages`, `await wire.wait_for_event(name, order_id)`);
* `mail`: the SMTP server notification writes to (`mail.wait_for(address, count)`);
* `staff`: a super-admin of the run; `inventory_api`, `sales_api`, `logistics_api`,
  `financial_api`: async clients of each service as that super-admin (a fresh token per test);
* `channel`: an AMQP channel (publisher confirms) on the run's vhost, to play a producer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping

import aio_pika
import httpx
import pytest

from tests.support.accounts import Account, create_super_admin
from tests.support.capture import Capture
from tests.support.mailsink import SmtpSink, smtp_sink
from tests.support.processes import Platform, own_vhost
from tests.support.servers import AMQP_SERVER

LOG_LINES = 200  # of each service, in the report of a failed test


@pytest.fixture(scope="session")
def mail() -> Iterator[SmtpSink]:
    with smtp_sink() as sink:
        yield sink


@pytest.fixture(scope="session")
def e2e_env(
    amqp_vhost: str, scoped_env: Callable[[str], Mapping[str, str]], mail: SmtpSink
) -> Iterator[Mapping[str, str]]:
    with own_vhost(f"{amqp_vhost}-e2e") as vhost:
        yield {
            **scoped_env("e2e"),
            "ERP_AMQP_URL": f"{AMQP_SERVER}/{vhost}",
            "ERP_NOTIFICATION_SMTP_HOST": mail.host,
            "ERP_NOTIFICATION_SMTP_PORT": str(mail.port),
            "ERP_NOTIFICATION_SMTP_STARTTLS": "0",
        }


@pytest.fixture(scope="session")
async def wire(e2e_env: Mapping[str, str]) -> AsyncIterator[Capture]:
    capture = await Capture.start(e2e_env["ERP_AMQP_URL"])
    try:
        yield capture
    finally:
        await capture.stop()


@pytest.fixture(scope="session")
def staff(e2e_env: Mapping[str, str]) -> Account:
    # Before auth starts: this makes and migrates auth's database, which auth then finds ready.
    return create_super_admin(e2e_env)


@pytest.fixture(scope="session")
def platform(
    e2e_env: Mapping[str, str],
    wire: Capture,
    staff: Account,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Platform]:
    with Platform(e2e_env, tmp_path_factory.mktemp("e2e-logs")).start() as running:
        yield running


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    running = getattr(item, "funcargs", {}).get("platform")
    if report.failed and isinstance(running, Platform):
        for name, log in running.logs().items():
            tail = "\n".join(log.splitlines()[-LOG_LINES:])
            report.sections.append((f"erp serve {name} (last {LOG_LINES} lines)", tail))


@pytest.fixture
def staff_token(staff: Account, platform: Platform) -> str:
    return staff.login(platform["auth"].url)


def _client(platform: Platform, service: str, token: str) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=platform[service].url, headers=headers, timeout=30)


@pytest.fixture
async def inventory_api(platform: Platform, staff_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(platform, "inventory", staff_token) as client:
        yield client


@pytest.fixture
async def sales_api(platform: Platform, staff_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(platform, "sales", staff_token) as client:
        yield client


@pytest.fixture
async def logistics_api(platform: Platform, staff_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(platform, "logistics", staff_token) as client:
        yield client


@pytest.fixture
async def financial_api(platform: Platform, staff_token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(platform, "financial", staff_token) as client:
        yield client


@pytest.fixture(scope="session")
async def channel(
    e2e_env: Mapping[str, str], platform: Platform
) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect_robust(e2e_env["ERP_AMQP_URL"])
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()
