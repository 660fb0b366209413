"""Identifiers: ids are UUIDs (DESIGN §3); partner keys are known by their digest."""

from __future__ import annotations

import hashlib
from uuid import UUID


def parse_uuid(value: str | UUID | None) -> UUID | None:
    """The UUID `value` spells, or None (an unknown id, not an error)."""
    if value is None or isinstance(value, UUID):
        return value
    try:
        return UUID(value)
    except ValueError:
        return None


def api_key_digest(raw_key: str) -> str:
    """How a partner key is stored and looked up: SHA-256 hex (the keys are random 256-bit
    secrets, so a fast hash is enough)."""
    return hashlib.sha256(raw_key.encode()).hexdigest()
