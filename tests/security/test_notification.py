"""The notification service under attack: SSRF through an ad hoc webhook (every class of
non-public address, spelled every way), header injection through the recipient and subject,
template injection through values, and who may read or send (staff only: the history holds
other people's addresses)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.accounts import Members
from tests.support.http import Api, new_ip, unique_email
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.integration

NOTIFICATIONS = "/api/v1/notifications"
SSRF_TARGETS = [
    "http://127.0.0.1/",
    "http://127.1/",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0x7f.0.0.1/",
    "http://localhost:8001/api/v1/users",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.0.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://224.0.0.1/",
    "https://user:pass@example.com/",
    "https://example.com@127.0.0.1/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_FLUSHALL",
    "ftp://example.com/",
]


@pytest.fixture(scope="module")
def api(notification_app: ServiceProcess, root_token: str) -> Iterator[Api]:
    with Api(notification_app.url, root_token, ip=new_ip()) as client:
        yield client


def refused(api: Api, body: dict[str, Any], field: str) -> None:
    response = api.post(NOTIFICATIONS, json=body)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in {error["field"] for error in response.json().get("errors", [])}


@pytest.mark.parametrize("url", SSRF_TARGETS)
def test_an_adhoc_webhook_to_a_non_public_address_is_refused_before_any_request(
    api: Api, url: str
) -> None:
    refused(api, {"channel": "webhook", "recipient": url, "text": "ping"}, "recipient")
    assert api.get(NOTIFICATIONS, params={"recipient": url}).json()["data"] == []


@pytest.mark.parametrize(
    "recipient",
    [
        "victim@example.com\r\nBcc: everyone@example.com",
        "victim@example.com\nBcc: everyone@example.com",
        "victim@example.com, other@example.com",
        "Victim <victim@example.com>",
    ],
)
def test_a_recipient_cannot_inject_headers_or_more_recipients(api: Api, recipient: str) -> None:
    refused(
        api, {"channel": "email", "recipient": recipient, "subject": "s", "text": "t"}, "recipient"
    )


@pytest.mark.parametrize(
    "subject", ["Hello\r\nBcc: everyone@example.com", "Hello\nX-Injected: 1", "Hello\rX: 1"]
)
def test_a_subject_cannot_inject_headers(api: Api, subject: str) -> None:
    body = {"channel": "email", "recipient": unique_email("subj"), "subject": subject, "text": "t"}
    refused(api, body, "subject")


def test_a_template_value_is_rendered_literally_and_escaped(api: Api) -> None:
    address = unique_email("ssti")
    hostile = "{{ 7*7 }}{% for x in range(3) %}loop{% endfor %}<img src=x onerror=alert(1)>"
    sent = api.created(
        NOTIFICATIONS,
        {
            "channel": "email",
            "recipient": address,
            "template": "adhoc.message",
            "variables": {"name": hostile, "message": "{{ ''.__class__.__mro__ }}"},
        },
    )
    assert sent["status"] == "sent"
    kept = api.as_caller(None).get("/dev/mailbox/messages").json()["data"]
    [mail] = [m for m in kept if m["to"] == address]
    assert "{{ 7*7 }}" in mail["text"]
    assert "49" not in mail["text"]
    assert "looploop" not in mail["text"]
    assert "{{ ''.__class__.__mro__ }}" in mail["text"]
    assert "<img" not in mail["html"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in mail["html"]


def test_a_plain_text_is_escaped_in_the_html_part(api: Api) -> None:
    address = unique_email("plain")
    api.created(
        NOTIFICATIONS,
        {"channel": "email", "recipient": address, "subject": "Hi", "text": "<script>x()</script>"},
    )
    [mail] = [
        m
        for m in api.as_caller(None).get("/dev/mailbox/messages").json()["data"]
        if m["to"] == address
    ]
    assert "<script>" not in mail["html"]
    assert "&lt;script&gt;" in mail["html"]


def test_a_template_of_the_callers_own_is_not_accepted(api: Api) -> None:
    body = {"channel": "email", "recipient": unique_email("tpl"), "template": "{{ 7*7 }}"}
    response = api.post(NOTIFICATIONS, json=body)
    assert response.status_code == 400
    body = {"channel": "email", "recipient": unique_email("tpl"), "template": "email/../../x"}
    assert api.post(NOTIFICATIONS, json=body).status_code == 400


def test_only_staff_read_or_send(api: Api, members: Members) -> None:
    nobody = members.new([], tag="notif-nobody")
    seller = members.new(["sales"], tag="notif-seller")
    manager = members.new(["manager"], tag="notif-manager")
    some = api.get(NOTIFICATIONS).json()["data"]
    probe = some[0]["id"] if some else str(uuid.uuid4())
    body = {"channel": "email", "recipient": unique_email("perm"), "subject": "s", "text": "t"}
    for member in (nobody, seller):
        token = member.access_token
        assert api.get(NOTIFICATIONS, token=token).status_code == 403
        assert api.get(f"{NOTIFICATIONS}/{probe}", token=token).status_code == 403
        assert api.get("/api/v1/templates", token=token).status_code == 403
        assert api.post(NOTIFICATIONS, json=body, token=token).status_code == 403
        assert api.post(f"{NOTIFICATIONS}/{probe}/retry", token=token).status_code == 403
    # The manager role reads and sends.
    assert api.get(NOTIFICATIONS, token=manager.access_token).status_code == 200
    assert api.post(NOTIFICATIONS, json=body, token=manager.access_token).status_code == 201


def test_anonymous_callers_get_nothing(api: Api) -> None:
    for method, path in (
        ("GET", NOTIFICATIONS),
        ("GET", "/api/v1/templates"),
        ("POST", NOTIFICATIONS),
    ):
        assert api.as_caller(None)(method, path).status_code == 401
