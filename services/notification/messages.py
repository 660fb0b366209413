"""What each consumed event says, and to whom: the template, the recipients and the values
(the event's payload plus the links into the front end, built from the public base URL)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from services.notification.settings import NotificationSettings


@dataclass(frozen=True, slots=True)
class Outgoing:
    template: str  # the e-mail template, named after the event
    recipients: list[str]  # e-mail addresses; none when the event names nobody
    variables: dict[str, Any]


def _link(settings: NotificationSettings, path: str, token: str | None = None) -> str:
    url = settings.public_url + path
    return url if token is None else f"{url}?token={quote(token, safe='')}"


def _order(settings: NotificationSettings, payload: dict[str, Any]) -> dict[str, str]:
    return {"order_url": _link(settings, f"/orders/{payload['order_id']}")}


def _tracking(settings: NotificationSettings, payload: dict[str, Any]) -> dict[str, str]:
    return {"tracking_url": _link(settings, f"/tracking/{quote(payload['tracking_code'])}")}


Links = Callable[[NotificationSettings, dict[str, Any]], dict[str, str]]
_LINKS: dict[str, Links] = {
    "auth.user.registered": lambda s, p: {
        "verify_url": _link(s, "/verify-email", p["email_verification_token"])
    },
    "auth.user.email_verification_requested": lambda s, p: {
        "verify_url": _link(s, "/verify-email", p["verification_token"])
    },
    "auth.user.password_reset_requested": lambda s, p: {
        "reset_url": _link(s, "/reset-password", p["reset_token"])
    },
    "inventory.stock.low_alert": lambda s, p: {
        "product_url": _link(s, f"/products/{p['product_id']}")
    },
    "financial.payment.processed": _order,
    "financial.payment.failed": _order,
    "sales.order.created": _order,
    "sales.order.confirmed": _order,
    "sales.order.cancelled": _order,
    "sales.order.completed": _order,
    "logistics.shipment.dispatched": _tracking,
    "logistics.shipment.delivered": _tracking,
}
EVENTS = frozenset(_LINKS)


def outgoing(event_name: str, payload: BaseModel, settings: NotificationSettings) -> Outgoing:
    """The e-mail `event_name` sends: to the staff address for a low-stock alert, to the user
    (auth's events) or to the customer otherwise — nobody when the event carries no address."""
    values = payload.model_dump(mode="json")
    if event_name == "inventory.stock.low_alert":
        recipients = [settings.staff_email]
    else:
        address = values.get("email") or values.get("customer_email")
        recipients = [address] if address else []
    return Outgoing(event_name, recipients, {**values, **_LINKS[event_name](settings, values)})
