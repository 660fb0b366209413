"""The notification service's own configuration, read from the environment at start-up (every
bad variable named at once, as the kit's settings do), kept in `ctx.state` (ADR 0021).

| variable | default | |
| --- | --- | --- |
| `ERP_NOTIFICATION_SMTP_HOST` | none | the SMTP server; none: e-mail is kept in the dev mailbox |
| `ERP_NOTIFICATION_SMTP_PORT` | `587` | |
| `ERP_NOTIFICATION_SMTP_USER`, `_SMTP_PASSWORD` | none | both or neither |
| `ERP_NOTIFICATION_SMTP_STARTTLS` | `1` | upgrade the connection with STARTTLS |
| `ERP_NOTIFICATION_SMTP_TIMEOUT` | `10` | seconds |
| `ERP_NOTIFICATION_FROM` | `ERP <no-reply@erp.local>` | the From header |
| `ERP_NOTIFICATION_STAFF_EMAIL` | `stock@erp.local` | who gets the low-stock alerts |
| `ERP_NOTIFICATION_PUBLIC_URL` | `http://localhost:5173` | the front end the links point to |
| `ERP_NOTIFICATION_MAILBOX` | `0` | keep e-mail in the dev mailbox even with an SMTP host |
| `ERP_NOTIFICATION_HISTORY_LIMIT` | `1000` | how many notifications the history keeps |
| `ERP_NOTIFICATION_WEBHOOK_SECRET` | none | the HMAC key of webhooks; none: no webhooks |
| `ERP_NOTIFICATION_WEBHOOKS` | none | `event=url` pairs, comma-separated (`*` for every event) |
| `ERP_NOTIFICATION_WEBHOOK_ALLOW` | none | hosts or CIDRs webhooks may reach though not public |
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Final
from urllib.parse import urlsplit

from services.notification.domain import WEBHOOK_EVENTS, AllowList, parse_target
from services.platform import FieldError, SettingsError, SettingsReader, stored_email

PREFIX: Final = "ERP_NOTIFICATION_"
MIN_SECRET_LENGTH: Final = 16


@dataclass(frozen=True, slots=True)
class Webhook:
    event: str  # an event name, or "*"
    url: str


@dataclass(frozen=True, slots=True)
class NotificationSettings:
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_timeout: float = 10.0
    sender: str = "ERP <no-reply@erp.local>"
    staff_email: str = "stock@erp.local"
    public_url: str = "http://localhost:5173"
    keep_mail: bool = False
    history_limit: int = 1000
    webhook_secret: str | None = field(default=None, repr=False)
    webhooks: tuple[Webhook, ...] = ()
    webhook_allow: AllowList = field(default_factory=AllowList)

    def webhooks_for(self, event: str) -> list[str]:
        """The URLs subscribed to `event` (none without a secret to sign with)."""
        if self.webhook_secret is None:
            return []
        return [hook.url for hook in self.webhooks if hook.event in ("*", event)]


def load_notification_settings(env: Mapping[str, str] = os.environ) -> NotificationSettings:
    reader = _Reader(env, PREFIX)
    host = reader.get("SMTP_HOST")
    user, password = reader.get("SMTP_USER"), reader.get("SMTP_PASSWORD")
    if (user is None) != (password is None):
        reader.fail("SMTP_USER", "set it together with ERP_NOTIFICATION_SMTP_PASSWORD, or neither")
    secret = reader.get("WEBHOOK_SECRET")
    if secret is not None and len(secret) < MIN_SECRET_LENGTH:
        reader.fail("WEBHOOK_SECRET", f"must be at least {MIN_SECRET_LENGTH} characters long")
    settings = NotificationSettings(
        smtp_host=host,
        smtp_port=reader.number("SMTP_PORT", 587, 1, 65535),
        smtp_user=user,
        smtp_password=password,
        smtp_starttls=reader.flag("SMTP_STARTTLS", default=True),
        smtp_timeout=float(reader.number("SMTP_TIMEOUT", 10, 1, 300)),
        sender=reader.sender("FROM", "ERP <no-reply@erp.local>"),
        staff_email=reader.email("STAFF_EMAIL", "stock@erp.local"),
        public_url=reader.public_url("PUBLIC_URL", "http://localhost:5173"),
        keep_mail=reader.flag("MAILBOX", default=False),
        history_limit=reader.number("HISTORY_LIMIT", 1000, 10, 100_000),
        webhook_secret=secret,
        webhooks=reader.webhooks("WEBHOOKS"),
        webhook_allow=reader.allow_list("WEBHOOK_ALLOW"),
    )
    if reader.errors:
        raise SettingsError(reader.errors)
    return settings


class _Reader(SettingsReader):
    """The kit's reader, with the checks of notification's own kinds of value."""

    def email(self, name: str, default: str) -> str:
        value = self.get(name) or default
        stored = stored_email(value, name)
        if isinstance(stored, FieldError):
            self.fail(name, stored.message)
            return default
        return stored

    def sender(self, name: str, default: str) -> str:
        value = self.get(name) or default
        display, address = parseaddr(value)
        if "\r" in value or "\n" in value or isinstance(stored_email(address), FieldError):
            self.fail(name, "expected an address like `ERP <no-reply@example.com>`")
            return default
        return str(Address(display_name=display, addr_spec=address))

    def public_url(self, name: str, default: str) -> str:
        value = (self.get(name) or default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            self.fail(
                name, "expected an http(s) URL without a query, like https://shop.example.com"
            )
            return default
        return value

    def webhooks(self, name: str) -> tuple[Webhook, ...]:
        value = self.get(name)
        if value is None:
            return ()
        hooks = []
        for item in (part.strip() for part in value.split(",") if part.strip()):
            event, _, url = item.partition("=")
            if event != "*" and event not in WEBHOOK_EVENTS:
                self.fail(name, f"{event!r} is not an event webhooks are sent for")
                continue
            target = parse_target(url.strip(), name)
            if isinstance(target, FieldError):
                self.fail(name, f"{event}: the URL {target.message}")
                continue
            hooks.append(Webhook(event, url.strip()))
        if hooks and self.get("WEBHOOK_SECRET") is None:
            self.fail(name, "webhooks need ERP_NOTIFICATION_WEBHOOK_SECRET to be signed with")
        return tuple(hooks)

    def allow_list(self, name: str) -> AllowList:
        value = self.get(name)
        if value is None:
            return AllowList()
        hosts: list[str] = []
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for item in (part.strip().lower() for part in value.split(",") if part.strip()):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                if not item.replace("-", "").replace(".", "").isalnum():
                    self.fail(name, f"expected host names or CIDR networks, got {item!r}")
                    continue
                hosts.append(item)
        return AllowList(frozenset(hosts), tuple(networks))
