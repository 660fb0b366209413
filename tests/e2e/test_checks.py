"""The wire checks of tests/support/capture.py on messages made here (no servers): each can
fail, and fails for the reason it names."""

from __future__ import annotations

import uuid

import pytest

from tests.support.capture import check_causality
from tests.support.events import envelope
from tests.support.orders import order_created


def test_causality_is_checked() -> None:
    created = order_created([])
    order_id = created["payload"]["order_id"]
    answer = envelope(
        "inventory.stock.reserved",
        {"order_id": order_id},
        correlation_id=created["correlation_id"],
        causation_id=created["event_id"],
    )
    check_causality([created, answer])
    stranger = {**answer, "correlation_id": str(uuid.uuid4())}
    orphan = {**answer, "causation_id": str(uuid.uuid4())}
    unexplained = {**answer, "causation_id": None}
    for broken, reason in [
        ([created, stranger], "correlation_id"),
        ([created, orphan], "is no event that arrived before it"),
        ([answer, created], "the first event is caused by a later one"),
        ([created, unexplained], "no causation_id"),
    ]:
        with pytest.raises(AssertionError, match=reason):
            check_causality(broken)
