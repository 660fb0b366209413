"""Settings: where each URL comes from, and one clear error line per bad value."""

from __future__ import annotations

import socket

import pytest

from services.platform.core import settings as settings_module
from services.platform.core.settings import (
    DEFAULT_AMQP_URL,
    DEFAULT_REDIS_URL,
    SettingsError,
    detect_embedded,
    load_settings,
)


def test_defaults_point_at_local_servers() -> None:
    settings = load_settings("sales", 8003, {})
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/sales_db"
    assert settings.read_database_url is None
    assert settings.amqp_url == DEFAULT_AMQP_URL
    assert settings.redis_url == DEFAULT_REDIS_URL
    assert settings.redis_prefix == "erp:"
    assert settings.auth_url == "http://127.0.0.1:8001"
    assert settings.inventory_url == "http://127.0.0.1:8002"
    assert settings.port == 8003
    assert settings.retry_delays == (1.0, 2.0, 4.0)
    assert settings.log_level == "INFO"
    assert not settings.embedded
    assert (settings.jwt_issuer, settings.jwt_audience) == ("erp-auth", "erp")


def test_server_url_gets_the_service_database_and_the_psycopg_driver() -> None:
    env = {
        "ERP_DATABASE_URL": "postgresql://app:s3cret@db.internal:6543/ignored?sslmode=require",
        "ERP_READ_DATABASE_URL": "postgres://reader@replica:5432",
    }
    settings = load_settings("inventory", 8002, env)
    assert settings.database_url == (
        "postgresql+psycopg://app:s3cret@db.internal:6543/inventory_db?sslmode=require"
    )
    assert settings.read_database_url == "postgresql+psycopg://reader@replica:5432/inventory_db"


def test_per_service_url_wins_and_is_used_as_given() -> None:
    env = {
        "ERP_DATABASE_URL": "postgresql://postgres@server:5432",
        "ERP_SALES_DATABASE_URL": "postgresql+psycopg://u@other:5432/custom",
        "ERP_SALES_PORT": "9100",
        "PORT": "9000",
    }
    settings = load_settings("sales", 8003, env)
    assert settings.database_url == "postgresql+psycopg://u@other:5432/custom"
    assert settings.port == 9100
    assert load_settings("auth", 8001, env).port == 9000


def test_embedded_uses_sqlite_and_in_process_broker_and_redis() -> None:
    settings = load_settings("auth", 8001, {"ERP_EMBEDDED": "1", "ERP_DATA_DIR": "/tmp/erp-data"})
    assert settings.embedded
    assert settings.database_url == "sqlite+aiosqlite:////tmp/erp-data/auth.db"
    assert settings.amqp_url is None
    assert settings.redis_url is None


def test_explicit_urls_win_in_embedded_mode() -> None:
    env = {"ERP_EMBEDDED": "1", "ERP_REDIS_URL": "redis://cache:6379/1"}
    settings = load_settings("auth", 8001, env)
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.amqp_url is None


def test_empty_variables_count_as_unset() -> None:
    settings = load_settings("auth", 8001, {"ERP_AMQP_URL": "", "PORT": " ", "ERP_LOG_LEVEL": ""})
    assert settings.amqp_url == DEFAULT_AMQP_URL
    assert settings.port == 8001


def test_retry_delays_and_log_level_are_parsed() -> None:
    env = {"ERP_RETRY_DELAYS": "0.05, 0.1,0.2", "ERP_LOG_LEVEL": "debug"}
    settings = load_settings("auth", 8001, env)
    assert settings.retry_delays == (0.05, 0.1, 0.2)
    assert settings.log_level == "DEBUG"


def test_the_body_limit_is_a_setting() -> None:
    assert load_settings("auth", 8001, {}).max_body_bytes == 1 << 20
    assert load_settings("auth", 8001, {"ERP_MAX_BODY_BYTES": "4096"}).max_body_bytes == 4096


def test_the_header_limit_is_a_setting() -> None:
    assert load_settings("auth", 8001, {}).max_header_bytes == 16 << 10
    assert load_settings("auth", 8001, {"ERP_MAX_HEADER_BYTES": "8192"}).max_header_bytes == 8192


def test_no_proxy_is_trusted_unless_configured() -> None:
    assert load_settings("auth", 8001, {}).trusted_proxies == ()
    env = {"ERP_TRUSTED_PROXIES": "10.0.0.5, 10.1.0.0/16,::1"}
    assert load_settings("auth", 8001, env).trusted_proxies == ("10.0.0.5", "10.1.0.0/16", "::1")


def test_the_warehouse_address_has_defaults_and_takes_each_part_given() -> None:
    default = load_settings("logistics", 8004, {}).warehouse_address
    assert (default.city, default.state, default.zip_code, default.country) == (
        "Campinas",
        "SP",
        "13069-000",
        "BR",
    )
    env = {
        "ERP_WAREHOUSE_CITY": "Recife",
        "ERP_WAREHOUSE_STATE": "PE",
        "ERP_WAREHOUSE_COMPLEMENT": "",
    }
    given = load_settings("logistics", 8004, env).warehouse_address
    assert (given.city, given.state, given.street) == ("Recife", "PE", default.street)
    assert given.complement == default.complement  # empty counts as unset


def test_every_bad_value_is_reported_on_its_own_line() -> None:
    env = {
        "ERP_DATABASE_URL": "mysql://root@db/x",
        "ERP_AUTH_READ_DATABASE_URL": "postgresql://u@host:port/db",
        "ERP_AMQP_URL": "http://rabbit:5672/",
        "ERP_REDIS_URL": "redis://cache:notaport/0",
        "ERP_AUTH_URL": "ftp://auth",
        "ERP_INVENTORY_URL": "inventory:8002",
        "PORT": "eighty",
        "ERP_RETRY_DELAYS": "1,two,4",
        "ERP_LOG_LEVEL": "LOUD",
        "ERP_EMBEDDED": "maybe",
        "ERP_REDIS_PREFIX": "has space",
        "ERP_MAX_BODY_BYTES": "1MB",
        "ERP_TRUSTED_PROXIES": "10.0.0.1,proxy.internal",
        "ERP_MAX_HEADER_BYTES": "16k",
        "ERP_WAREHOUSE_STATE": "Sao Paulo",
        "ERP_WAREHOUSE_ZIP_CODE": "13069000",
        "ERP_WAREHOUSE_NUMBER": "1" * 21,
    }
    with pytest.raises(SettingsError) as raised:
        load_settings("auth", 8001, env)
    named = [line.split(":", 1)[0] for line in raised.value.errors]
    assert sorted(named) == sorted(env)
    message = str(raised.value)
    assert message.startswith("invalid configuration:")
    assert message.count("\n") == len(env)
    for bad in ("'mysql'", "'eighty'", "'1,two,4'"):
        assert bad in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ERP_AUTH_PORT", "0"),
        ("ERP_AUTH_PORT", "70000"),
        ("ERP_RETRY_DELAYS", "-1"),
        ("ERP_RETRY_DELAYS", "nan"),
        ("ERP_RETRY_DELAYS", ","),
        ("ERP_DATABASE_URL", "sqlite:///server.db"),  # a server URL, never a file
        ("ERP_DATABASE_URL", "postgresql:///no-host"),
        ("ERP_AMQP_URL", "amqp://"),
    ],
)
def test_single_bad_value(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings("auth", 8001, {variable: value})
    assert [line.split(":", 1)[0] for line in raised.value.errors] == [variable]


def test_bad_service_name() -> None:
    with pytest.raises(SettingsError):
        load_settings("Sales Service", 8003, {})


@pytest.fixture
def listening(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Which default ports `detect_embedded` sees accepting connections."""
    ports: set[int] = set()

    def accepts(_host: str, port: int, _timeout: float) -> bool:
        return port in ports

    monkeypatch.setattr(settings_module, "_accepts", accepts)
    return ports


def test_detect_embedded_when_nothing_is_configured_or_listening(listening: set[int]) -> None:
    assert detect_embedded({})


def test_detect_real_servers_when_all_listen(listening: set[int]) -> None:
    listening.update({5432, 5672, 6379})
    assert not detect_embedded({})


def test_detect_embedded_when_only_some_servers_listen(listening: set[int]) -> None:
    listening.add(6379)
    assert detect_embedded({})


def test_detect_honours_configuration(listening: set[int]) -> None:
    assert not detect_embedded({"ERP_SALES_DATABASE_URL": "postgresql://db/sales"})
    assert not detect_embedded({"ERP_EMBEDDED": "0"})
    listening.update({5432, 5672, 6379})
    assert detect_embedded({"ERP_EMBEDDED": "1"})


def test_accepts_probes_a_real_socket() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert settings_module._accepts("127.0.0.1", port, 0.5)
    assert not settings_module._accepts("127.0.0.1", port, 0.5)
