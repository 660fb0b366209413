"""ERP_CORS_ORIGINS and ERP_LOG_FORMAT: defaults by mode, and one clear line per bad value."""

from __future__ import annotations

import pytest

from services.platform.core.settings import DEV_CORS_ORIGINS, SettingsError, load_settings


def test_no_origin_is_allowed_by_default_on_real_servers() -> None:
    assert load_settings("auth", 8001, {}).cors_origins == ()


def test_embedded_mode_allows_the_local_dev_servers_by_default() -> None:
    origins = load_settings("auth", 8001, {"ERP_EMBEDDED": "1"}).cors_origins
    assert origins == DEV_CORS_ORIGINS
    assert {"http://localhost:5173", "http://localhost:3000", "http://127.0.0.1:5173"} <= set(
        origins
    )


def test_configured_origins_replace_the_defaults_in_any_mode() -> None:
    env = {"ERP_EMBEDDED": "1", "ERP_CORS_ORIGINS": "https://app.example.com/, http://a.test:81"}
    assert load_settings("auth", 8001, env).cors_origins == (
        "https://app.example.com",
        "http://a.test:81",
    )


def test_a_star_allows_every_origin() -> None:
    assert load_settings("auth", 8001, {"ERP_CORS_ORIGINS": "*"}).cors_origins == ("*",)


@pytest.mark.parametrize(
    "value",
    [
        "app.example.com",  # no scheme
        "https://app.example.com/path",
        "ftp://files.example.com",
        "https://app.example.com:notaport",
        "*, https://app.example.com",  # a star is alone or not at all
        ",",
    ],
)
def test_a_bad_origin_list_is_one_clear_error(value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings("auth", 8001, {"ERP_CORS_ORIGINS": value})
    [line] = raised.value.errors
    assert line.startswith("ERP_CORS_ORIGINS: expected comma-separated origins")


@pytest.mark.parametrize(
    ("value", "chosen"), [(None, None), ("JSON", "json"), ("console", "console")]
)
def test_the_log_format_is_json_console_or_left_to_the_terminal(
    value: str | None, chosen: str | None
) -> None:
    env = {} if value is None else {"ERP_LOG_FORMAT": value}
    assert load_settings("auth", 8001, env).log_format == chosen


def test_a_bad_log_format_is_one_clear_error() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings("auth", 8001, {"ERP_LOG_FORMAT": "pretty"})
    assert raised.value.errors == ("ERP_LOG_FORMAT: expected one of json, console, got 'pretty'",)
