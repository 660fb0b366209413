"""Optimistic concurrency over HTTP (DESIGN §3): resources carry a `version`, served as a
strong ETag; an update with If-Match applies only to the version the client saw."""

from __future__ import annotations

from services.platform.core.problems import Problem


def etag(version: int) -> str:
    return f'"{version}"'


def if_match_satisfied(if_match: str | None, version: int) -> bool:
    """RFC 9110 If-Match with strong comparison: `*`, or one of the listed tags."""
    if if_match is None:
        return True
    tags = [tag.strip() for tag in if_match.split(",")]
    return "*" in tags or etag(version) in tags


def require_if_match(if_match: str | None, version: int) -> None:
    """412 when the client's If-Match names another version than the current one."""
    if not if_match_satisfied(if_match, version):
        raise Problem(412, detail=f"The resource has changed (current ETag {etag(version)}).")
