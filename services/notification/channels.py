"""The channel port and its adapters: e-mail (SMTP, and the dev mailbox), webhooks (signed HTTP
POSTs to public addresses only) and SMS (a provider port; the adapter here logs).

A channel raises `ChannelError` when it could not deliver: its `reason` is kept as the
notification's `last_error`, so it never holds a secret (no password, no body, no token).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Final, Protocol, TypeAlias

import aiosmtplib
import httpx
from redis.asyncio import Redis

from services.notification.domain import (
    AllowList,
    IPAddress,
    Target,
    address_problem,
    parse_target,
    signature,
)
from services.notification.history import Record
from services.platform import FieldError

log = logging.getLogger(__name__)

MAILBOX_SIZE: Final = 50
WEBHOOK_TIMEOUT_SECONDS: Final = 5.0
MAX_RESPONSE_BYTES: Final = 64 * 1024
_HREF = re.compile(r'href="([^"]+)"')

Resolver: TypeAlias = Callable[[str, int], Awaitable[list[IPAddress]]]


class ChannelError(Exception):
    """Delivery failed; `permanent` when trying again cannot help (a refused target)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Channel(Protocol):
    async def deliver(self, record: Record) -> None: ...


class Mailer(Protocol):
    async def send(self, message: EmailMessage, record: Record) -> None: ...


class SmsProvider(Protocol):
    async def send(self, number: str, text: str) -> None: ...


# ------------------------------------------------------------------ e-mail


@dataclass(frozen=True, slots=True)
class SmtpMailer:
    """Any SMTP server, through aiosmtplib (asyncio: no thread per message)."""

    host: str
    port: int
    user: str | None
    password: str | None
    starttls: bool
    timeout: float

    async def send(self, message: EmailMessage, record: Record) -> None:
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self.user,
                password=self.password,
                start_tls=self.starttls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPResponseException as refused:
            # The server's code and words: what an operator needs, nothing of ours.
            permanent = 500 <= refused.code < 600
            raise ChannelError(
                f"SMTP {refused.code}: {refused.message[:200]}", permanent=permanent
            ) from refused
        except (aiosmtplib.SMTPException, OSError) as error:
            raise ChannelError(f"SMTP server unreachable: {type(error).__name__}") from error


@dataclass(frozen=True, slots=True)
class MailboxMailer:
    """Keeps e-mails in Redis (newest first, bounded) for `/dev/mailbox`."""

    redis: Redis
    key: str  # the Redis list

    async def send(self, message: EmailMessage, record: Record) -> None:
        html = record.content.html or ""
        kept = {
            "id": str(record.id),
            "to": record.recipient,
            "subject": record.content.subject or "",
            "text": record.content.text,
            "html": html,
            "links": _HREF.findall(html),
            "kept_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.key, json.dumps(kept))
            pipe.ltrim(self.key, 0, MAILBOX_SIZE - 1)
            await pipe.execute()


async def kept_mail(redis: Redis, key: str) -> list[dict[str, Any]]:
    raws = await redis.lrange(key, 0, -1)
    return [json.loads(raw) for raw in raws]


@dataclass(frozen=True, slots=True)
class EmailChannel:
    sender: str
    mailers: Sequence[Mailer]

    async def deliver(self, record: Record) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        try:
            # The headers module refuses CR/LF in a value: no header can be injected.
            message["To"] = record.recipient
            message["Subject"] = record.content.subject or ""
        except ValueError as error:
            raise ChannelError(
                "the recipient or subject is not a valid header", permanent=True
            ) from error
        message["Message-ID"] = f"<{record.id}@erp.notification>"
        message.set_content(record.content.text)
        if record.content.html is not None:
            message.add_alternative(record.content.html, subtype="html")
        for mailer in self.mailers:
            await mailer.send(message, record)


# ------------------------------------------------------------------ webhooks


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (a literal address is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: dict[IPAddress, None] = {}
    for info in infos:
        found[ipaddress.ip_address(str(info[4][0]).split("%")[0])] = None
    return list(found)


@dataclass(frozen=True, slots=True)
class Checked:
    target: Target
    address: IPAddress


async def check_target(
    url: str, allow: AllowList, resolver: Resolver, field: str = "recipient"
) -> Checked | FieldError:
    """The URL's target and the address to connect to, once every address its host resolves to
    passed (a literal address, a CIDR or host on the allow-list)."""
    target = parse_target(url, field)
    if isinstance(target, FieldError):
        return target
    try:
        addresses = await resolver(target.host, target.port)
    except (OSError, UnicodeError):
        addresses = []
    problem = address_problem(target, addresses, allow, field)
    if problem is not None:
        return problem
    return Checked(target, addresses[0])


class WebhookSender:
    """POSTs signed JSON to a checked address: the connection goes to the address that was
    checked (the Host header and TLS name are the URL's), so a second DNS answer cannot
    redirect it (no DNS rebinding); redirects are not followed; the answer is read at most
    `MAX_RESPONSE_BYTES` far."""

    def __init__(
        self,
        secret: str | None,
        allow: AllowList,
        resolver: Resolver = system_resolver,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.secret = secret
        self.allow = allow
        self.resolver = resolver
        self.client = httpx.AsyncClient(
            timeout=WEBHOOK_TIMEOUT_SECONDS,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def post(self, url: str, body: bytes, *, delivery: str, event: str) -> None:
        if self.secret is None:
            raise ChannelError("webhooks are not configured (no signing secret)", permanent=True)
        checked = await check_target(url, self.allow, self.resolver)
        if isinstance(checked, FieldError):
            raise ChannelError(f"webhook URL refused: {checked.message}", permanent=True)
        target, address = checked.target, checked.address
        host = f"[{address}]" if address.version == 6 else str(address)
        timestamp = int(time.time())
        headers = {
            "Host": target.host_header,
            "Content-Type": "application/json",
            "User-Agent": "erp-notification/1.0",
            "X-ERP-Event": event,
            "X-ERP-Delivery": delivery,
            "X-ERP-Timestamp": str(timestamp),
            "X-ERP-Signature": signature(self.secret, timestamp, body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with self.client.stream(
                "POST",
                f"{target.scheme}://{host}:{target.port}{target.path}",
                content=body,
                headers=headers,
                extensions=extensions,
            ) as response:
                read = 0
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= MAX_RESPONSE_BYTES:
                        break
        except httpx.TimeoutException as error:
            raise ChannelError("webhook timed out") from error
        except httpx.HTTPError as error:
            raise ChannelError(f"webhook unreachable: {type(error).__name__}") from error
        if not 200 <= response.status_code < 300:
            raise ChannelError(f"webhook answered {response.status_code}")


@dataclass(frozen=True, slots=True)
class WebhookChannel:
    sender: WebhookSender

    async def deliver(self, record: Record) -> None:
        body = (record.content.body or "{}").encode()
        await self.sender.post(
            record.recipient,
            body,
            delivery=str(record.id),
            event=record.event_name or "notification.adhoc",
        )


# ------------------------------------------------------------------ SMS


class LoggingSmsProvider:
    """The SMS adapter of development and tests: logs the message (the number masked)."""

    async def send(self, number: str, text: str) -> None:
        log.info("SMS to %s…%s: %d characters", number[:4], number[-2:], len(text))


@dataclass(frozen=True, slots=True)
class SmsChannel:
    provider: SmsProvider

    async def deliver(self, record: Record) -> None:
        await self.provider.send(record.recipient, record.content.text)
