"""Every template renders from the AsyncAPI examples of its event (all three parts of an
e-mail, the links built from the public base URL); values are data, never template text. No
servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError

from generated.events.publishers import ENVELOPE_MODELS
from services.notification import templates
from services.notification.messages import EVENTS, outgoing
from services.notification.settings import NotificationSettings

ASYNCAPI = Path(__file__).parents[2] / "generated" / "specs" / "erp.asyncapi.json"
DOCUMENT = json.loads(ASYNCAPI.read_text())
SETTINGS = NotificationSettings(
    public_url="https://shop.example.com", staff_email="stock@shop.example"
)


def examples(event: str) -> list[dict[str, Any]]:
    found = [
        example["payload"]
        for message in DOCUMENT["components"]["messages"].values()
        if message["name"] == event
        for example in message.get("examples", [])
    ]
    assert found, f"{event} has no example in the AsyncAPI document"
    return found


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_each_event_template_renders_from_the_examples_of_its_event(event: str) -> None:
    for example in examples(event):
        envelope = ENVELOPE_MODELS[event].model_validate(example)
        message = outgoing(event, envelope.payload, SETTINGS)  # type: ignore[attr-defined]
        assert message.recipients, f"{event}'s example names nobody"
        rendered = templates.render(message.template, "email", message.variables)
        assert rendered.subject
        assert "\n" not in rendered.subject
        assert rendered.text.strip()
        assert rendered.html is not None
        assert rendered.html.startswith("<!DOCTYPE html>")
        assert "https://shop.example.com/" in rendered.text
        assert 'href="https://shop.example.com/' in rendered.html


def test_every_consumed_event_has_an_email_template_and_every_template_is_listed() -> None:
    listed = {(info.name, info.channel) for info in templates.catalogue()}
    assert {(event, "email") for event in EVENTS} <= listed
    assert ("adhoc.message", "email") in listed
    assert ("adhoc.message", "sms") in listed


def test_the_catalogue_names_the_variables_each_template_uses() -> None:
    info = templates.find("auth.user.password_reset_requested", "email")
    assert info is not None
    assert info.variables == ("expires_at", "name", "reset_url")


def test_the_links_carry_the_token_url_encoded() -> None:
    [example] = examples("auth.user.password_reset_requested")
    envelope = ENVELOPE_MODELS["auth.user.password_reset_requested"].model_validate(example)
    message = outgoing("auth.user.password_reset_requested", envelope.payload, SETTINGS)  # type: ignore[attr-defined]
    assert message.recipients == ["maria@example.com"]
    token = example["payload"]["reset_token"]
    assert (
        message.variables["reset_url"] == f"https://shop.example.com/reset-password?token={token}"
    )


def test_a_low_stock_alert_goes_to_the_staff_address() -> None:
    [example] = examples("inventory.stock.low_alert")
    envelope = ENVELOPE_MODELS["inventory.stock.low_alert"].model_validate(example)
    message = outgoing("inventory.stock.low_alert", envelope.payload, SETTINGS)  # type: ignore[attr-defined]
    assert message.recipients == ["stock@shop.example"]


def test_a_value_that_looks_like_a_template_is_printed_literally_and_escaped() -> None:
    hostile = "{{ 7*7 }} {% raw %}<script>alert(1)</script>"
    rendered = templates.render(
        "adhoc.message", "email", {"name": hostile, "message": "{{ config }}"}
    )
    assert "{{ 7*7 }}" in rendered.text
    assert "49" not in rendered.text
    assert "{{ config }}" in rendered.text
    assert rendered.html is not None
    assert "&lt;script&gt;" in rendered.html
    assert "<script>" not in rendered.html
    assert "{{ 7*7 }}" in rendered.html


def test_a_missing_variable_is_an_error_never_an_empty_string() -> None:
    with pytest.raises(templates.RenderError):
        templates.render("adhoc.message", "email", {"name": "Maria"})


def test_the_environment_is_sandboxed() -> None:
    unsafe = templates.environment().from_string("{{ ''.__class__.__mro__ }}")
    with pytest.raises(SecurityError):
        unsafe.render()


def test_a_plain_text_becomes_escaped_html_paragraphs() -> None:
    html = templates.plain_html("Hello <b>Maria</b>,\n\nline one\nline two")
    assert "<p>Hello &lt;b&gt;Maria&lt;/b&gt;,</p><p>line one<br>line two</p>" in html
