"""Ids are UUIDs (DESIGN §3); text that is not one names nothing."""

from __future__ import annotations

from uuid import UUID


def parse_uuid(value: str | UUID | None) -> UUID | None:
    """The UUID `value` spells, or None (an unknown id, not an error)."""
    if value is None or isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except ValueError:
        return None
