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


def refusal(response: Any, status: int) -> dict[str, Any]:
    """`problem(response, status)` of the kit's generic kind (`type` about:blank, as every
    refusal of the specs is): what a security probe asserts of each refusal."""
    body = problem(response, status)
    assert body["type"] == "about:blank", body
    return body
