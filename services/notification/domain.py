"""Pure rules of the notification service: recipients, webhook targets and the addresses they
may reach (SSRF), webhook signatures, retries (ADR 0021)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias
from urllib.parse import urlsplit
from uuid import UUID, uuid5

from services.platform import FieldError

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_RETRIES: Final = 3
SIGNATURE_VERSION: Final = "v1"
REPLAY_WINDOW_SECONDS: Final = 300
# The events partners may subscribe webhooks to: business facts. auth's events carry one-time
# tokens, which must never leave by webhook.
WEBHOOK_EVENTS: Final = frozenset(
    {
        "inventory.stock.low_alert",
        "sales.order.created",
        "sales.order.confirmed",
        "sales.order.cancelled",
        "sales.order.completed",
        "logistics.shipment.dispatched",
        "logistics.shipment.delivered",
        "financial.payment.processed",
        "financial.payment.failed",
    }
)
_E164 = re.compile(r"^\+[1-9][0-9]{7,14}$")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# A stable namespace for the id of an event's notification to one recipient on one channel.
_NOTIFICATION_NAMESPACE = UUID("5b0c3c1e-7f38-4c1a-9a52-0d7e6f1a2b3c")


def notification_id(event_id: UUID, channel: str, recipient: str) -> UUID:
    """The same id every time the event is handled: a retried event updates its notification
    (and finds its sent-marker) instead of making a second one."""
    return uuid5(_NOTIFICATION_NAMESPACE, f"{event_id}:{channel}:{recipient}")


def can_retry(status: str, retries: int) -> bool:
    return status == "failed" and retries < MAX_RETRIES


def single_line(text: str) -> str:
    """A header value: every run of white space (CR and LF included) one space."""
    return " ".join(text.split())


def phone_problem(number: str, field: str = "recipient") -> FieldError | None:
    if _E164.fullmatch(number) is None:
        return FieldError(field, "must be an E.164 phone number like +5511987654321")
    return None


def text_problem(value: str, field: str) -> FieldError | None:
    """A subject may hold no line break (it would start a new header), nor any control char."""
    if any((ord(char) < 32 and char not in ("\n", "\t")) or ord(char) == 127 for char in value):
        return FieldError(field, "must not contain control characters")
    if field == "subject" and "\n" in value:
        return FieldError(field, "must be a single line")
    return None


@dataclass(frozen=True, slots=True)
class Target:
    """A webhook URL taken apart: where to connect and what to ask for."""

    url: str
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent on the request line

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def parse_target(url: str, field: str = "recipient") -> Target | FieldError:
    """An absolute http(s) URL with a host and without user info or fragment."""
    if any(ord(char) <= 32 or ord(char) == 127 for char in url):
        return FieldError(field, "must be a URL without white space or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return FieldError(field, "must be a valid URL")
    if parts.scheme not in ("http", "https"):
        return FieldError(field, "must be an http or https URL")
    if not parts.hostname:
        return FieldError(field, "must name a host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return FieldError(field, "must not carry user info")
    if parts.fragment:
        return FieldError(field, "must not have a fragment")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = 443 if parts.scheme == "https" else 80
    return Target(url, parts.scheme, parts.hostname.lower(), port or default, path)


def forbidden_reason(address: IPAddress) -> str | None:
    """Why a webhook must not connect to `address`, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            return forbidden_reason(mapped)
    # Order matters: 0.0.0.0 and 169.254/16 count as "private" too; name them precisely.
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "shared (CGNAT)"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:
        return "not public"
    return None


@dataclass(frozen=True, slots=True)
class AllowList:
    """Hosts and networks the operator lets webhooks reach though they are not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = field(default=())

    def allows(self, host: str, address: IPAddress) -> bool:
        if host.lower() in self.hosts:
            return True
        return any(address.version == net.version and address in net for net in self.networks)


def address_problem(
    target: Target, addresses: list[IPAddress], allow: AllowList, field: str = "recipient"
) -> FieldError | None:
    """Every address the host resolved to must be public (or allowed): one bad answer among
    good ones is refused too, since the connection could land on any of them."""
    if not addresses:
        return FieldError(field, "has a host that does not resolve")
    for address in addresses:
        reason = forbidden_reason(address)
        if reason is not None and not allow.allows(target.host, address):
            return FieldError(field, f"must resolve only to public addresses (one is {reason})")
    return None


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=<hex HMAC-SHA256>` over `<timestamp>.<body>`, what `X-ERP-Signature` carries."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signature_valid(secret: str, timestamp: str, body: bytes, received: str, now: float) -> bool:
    """The receiver's check (the recipe the spec documents): the timestamp is within the
    replay window and the signature matches, compared in constant time."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > REPLAY_WINDOW_SECONDS:
        return False
    return hmac.compare_digest(signature(secret, int(timestamp), body), received)
