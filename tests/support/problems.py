"""The one check every HTTP test makes of an error: an RFC 9457 problem with that status."""

from __future__ import annotations

from typing import Any


def problem(response: Any, status: int) -> dict[str, Any]:
    """The problem+json body of `response`, asserting its status and media type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body
