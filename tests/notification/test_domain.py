"""The notification service's pure rules: webhook targets and the addresses they may reach
(SSRF), the signature and its documented check, recipients, retries. No servers."""

from __future__ import annotations

import ipaddress

import pytest

from services.notification import domain
from services.notification.channels import ChannelError, Checked, WebhookSender, check_target
from services.notification.domain import AllowList, Target
from services.notification.settings import load_notification_settings
from services.platform import FieldError, SettingsError

FORBIDDEN = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("169.254.169.254", "link-local"),  # the cloud metadata service
    ("fe80::1", "link-local"),
    ("10.0.0.5", "private"),
    ("172.16.4.4", "private"),
    ("192.168.1.1", "private"),
    ("fd00::1", "private"),
    ("100.64.0.1", "shared (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.1.2.3", "private"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("192.0.2.10", "private"),  # documentation (TEST-NET-1)
]


@pytest.mark.parametrize(("address", "reason"), FORBIDDEN)
def test_every_forbidden_class_of_address_is_named(address: str, reason: str) -> None:
    assert domain.forbidden_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_a_public_address_is_allowed(address: str) -> None:
    assert domain.forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://partner.example.com/hook", "must be an http or https URL"),
        ("file:///etc/passwd", "must be an http or https URL"),
        ("https://user:pass@partner.example.com/hook", "must not carry user info"),
        ("https://partner.example.com@evil.example/hook", "must not carry user info"),
        ("https:///hook", "must name a host"),
        ("https://partner.example.com/hook#x", "must not have a fragment"),
        ("https://partner.example.com:99999/", "must be a valid URL"),
        (
            "https://partner.example.com/a b",
            "must be a URL without white space or control characters",
        ),
        (
            "https://partner.example.com/\r\nX: y",
            "must be a URL without white space or control characters",
        ),
    ],
)
def test_a_malformed_target_is_refused(url: str, message: str) -> None:
    assert domain.parse_target(url) == FieldError("recipient", message)


def test_a_target_keeps_where_to_connect_and_what_to_ask() -> None:
    target = domain.parse_target("https://Partner.Example.com:8443/hooks/erp?x=1")
    assert target == Target(
        "https://Partner.Example.com:8443/hooks/erp?x=1",
        "https",
        "partner.example.com",
        8443,
        "/hooks/erp?x=1",
    )
    assert isinstance(target, Target)
    assert target.host_header == "partner.example.com:8443"


def resolver_of(*answers: str):
    async def resolve(host: str, port: int) -> list[domain.IPAddress]:
        return [ipaddress.ip_address(answer) for answer in answers]

    return resolve


async def test_a_host_resolving_to_one_private_address_among_public_ones_is_refused() -> None:
    checked = await check_target(
        "https://partner.example.com/hook", AllowList(), resolver_of("93.184.215.14", "10.0.0.1")
    )
    assert checked == FieldError(
        "recipient", "must resolve only to public addresses (one is private)"
    )


async def test_a_host_resolving_to_public_addresses_is_accepted_without_connecting() -> None:
    checked = await check_target(
        "https://partner.example.com/hook", AllowList(), resolver_of("93.184.215.14")
    )
    assert isinstance(checked, Checked)
    assert checked.address == ipaddress.ip_address("93.184.215.14")


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    async def nothing(host: str, port: int) -> list[domain.IPAddress]:
        raise OSError("no such host")

    checked = await check_target("https://nowhere.invalid/", AllowList(), nothing)
    assert checked == FieldError("recipient", "has a host that does not resolve")


async def test_the_allow_list_lets_a_named_host_or_network_through() -> None:
    by_host = AllowList(hosts=frozenset({"hooks.internal"}))
    by_network = AllowList(networks=(ipaddress.ip_network("10.20.0.0/16"),))
    assert isinstance(
        await check_target("http://hooks.internal/x", by_host, resolver_of("10.9.9.9")), Checked
    )
    assert isinstance(
        await check_target("http://a.internal/x", by_network, resolver_of("10.20.3.4")), Checked
    )
    assert isinstance(
        await check_target("http://a.internal/x", by_network, resolver_of("10.21.3.4")), FieldError
    )


async def test_the_sender_refuses_a_forbidden_target_before_connecting() -> None:
    sender = WebhookSender("s" * 32, AllowList(), resolver_of("169.254.169.254"))
    try:
        with pytest.raises(ChannelError) as refused:
            await sender.post("http://metadata.example/", b"{}", delivery="d", event="e")
    finally:
        await sender.close()
    assert refused.value.permanent
    assert "link-local" in refused.value.reason


def test_the_signature_verifies_by_the_documented_recipe() -> None:
    secret, body, now = (
        "a-shared-secret-of-partners",
        b'{"event_name":"sales.order.created"}',
        1_736_942_400,
    )
    signed = domain.signature(secret, now, body)
    assert signed.startswith("v1=")
    assert len(signed) == 3 + 64
    assert domain.signature_valid(secret, str(now), body, signed, now=now + 10)
    assert not domain.signature_valid(secret, str(now), body + b" ", signed, now=now)
    assert not domain.signature_valid("another-secret-entirely", str(now), body, signed, now=now)
    # Outside the replay window: refused however good the signature.
    assert not domain.signature_valid(secret, str(now), body, signed, now=now + 301)


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("+5511987654321", True),
        ("+14155550123", True),
        ("5511987654321", False),
        ("+0511987654321", False),
        ("+55 11 98765", False),
        ("+5511\n987654321", False),
    ],
)
def test_sms_numbers_are_e164(number: str, valid: bool) -> None:
    assert (domain.phone_problem(number) is None) is valid


@pytest.mark.parametrize(
    ("status", "retries", "allowed"),
    [
        ("failed", 0, True),
        ("failed", 2, True),
        ("failed", 3, False),
        ("sent", 0, False),
        ("queued", 0, False),
    ],
)
def test_only_a_failed_notification_is_retried_at_most_three_times(
    status: str, retries: int, allowed: bool
) -> None:
    assert domain.can_retry(status, retries) is allowed


def test_a_subject_is_one_line_without_control_characters() -> None:
    assert domain.text_problem("Hello\r\nBcc: x@evil.example", "subject") is not None
    assert domain.text_problem("Hello\nthere", "subject") == FieldError(
        "subject", "must be a single line"
    )
    assert domain.text_problem("Line one\nline two", "text") is None
    assert domain.single_line("Order\r\n  42 \t ready") == "Order 42 ready"


def test_an_event_notification_has_the_same_id_every_time() -> None:
    event = __import__("uuid").uuid4()
    assert domain.notification_id(event, "email", "a@example.com") == domain.notification_id(
        event, "email", "a@example.com"
    )
    assert domain.notification_id(event, "email", "a@example.com") != domain.notification_id(
        event, "webhook", "a@example.com"
    )


def test_every_bad_setting_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as bad:
        load_notification_settings(
            {
                "ERP_NOTIFICATION_SMTP_PORT": "0",
                "ERP_NOTIFICATION_SMTP_USER": "mailer",
                "ERP_NOTIFICATION_FROM": "ERP <not an address>",
                "ERP_NOTIFICATION_PUBLIC_URL": "ftp://shop",
                "ERP_NOTIFICATION_WEBHOOK_SECRET": "short",
                "ERP_NOTIFICATION_WEBHOOKS": "auth.user.registered=https://p.example/h",
                "ERP_NOTIFICATION_WEBHOOK_ALLOW": "10.0.0.0/8,bad host!",
            }
        )
    named = {line.split(":")[0] for line in bad.value.errors}
    assert named == {
        "ERP_NOTIFICATION_SMTP_PORT",
        "ERP_NOTIFICATION_SMTP_USER",
        "ERP_NOTIFICATION_FROM",
        "ERP_NOTIFICATION_PUBLIC_URL",
        "ERP_NOTIFICATION_WEBHOOK_SECRET",
        "ERP_NOTIFICATION_WEBHOOKS",
        "ERP_NOTIFICATION_WEBHOOK_ALLOW",
    }
    assert not any("short" in line for line in bad.value.errors)  # never the secret


def test_webhooks_are_sent_only_for_subscribed_events_and_with_a_secret() -> None:
    settings = load_notification_settings(
        {
            "ERP_NOTIFICATION_WEBHOOK_SECRET": "x" * 32,
            "ERP_NOTIFICATION_WEBHOOKS": "sales.order.created=https://a.example/h,*=https://b.example/h",
        }
    )
    assert settings.webhooks_for("sales.order.created") == [
        "https://a.example/h",
        "https://b.example/h",
    ]
    assert settings.webhooks_for("logistics.shipment.delivered") == ["https://b.example/h"]
