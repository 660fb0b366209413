"""From what a handler returns to the bytes on the wire, as the operation's spec declares.

A handler returns its operation's generated response model (or None for a 204; the bytes of a
response whose media type is not JSON, such as a PDF); the kit sends it with the declared status
and media type, `ETag` from the model's `version` when the response declares ETag,
and `Location` for a created resource when the operation has a location template. A handler
that must answer otherwise (the health checks' 503, the metrics text, a model's JSON kept in a
cache) returns a `Reply`; JSON bytes in a Reply are still checked against the response schema.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from services.platform.core.contracts import OperationInfo
from services.platform.core.problems import BEARER_CHALLENGE, PROBLEM_JSON, Problem
from services.platform.http.versioning import etag

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer other than the operation's declared success: another status, extra headers,
    or a body that is not a model (bytes are sent as they are)."""

    body: BaseModel | Mapping[str, Any] | bytes | None
    status: int | None = None  # None: the operation's success status
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None  # None: the media type of the operation's success response


@dataclass(frozen=True, slots=True)
class Rendered:
    """A response ready to send (and to store for an idempotent replay)."""

    status: int
    body: bytes
    headers: dict[str, str]

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        return [(name.lower().encode(), value.encode()) for name, value in self.headers.items()]


def to_jsonable(value: Any) -> Any:
    """JSON-ready data: models dumped by alias in JSON mode (Decimal → "12.50", not 12.5)."""
    return to_jsonable_python(value, by_alias=True)


def render(operation: OperationInfo, result: object, *, keep_data: bool) -> tuple[Rendered, Any]:
    """The response for a handler's result, and (with `keep_data`, for response validation)
    its JSON value; None when there is no model body."""
    success = operation.success
    status = success.status if success is not None else 200
    headers: dict[str, str] = {}
    content_type = success.content_type if success is not None else JSON
    body: object = result
    if isinstance(result, Reply):
        status = result.status or status
        headers.update(result.headers)
        content_type = result.content_type or content_type
        body = result.body
    if body is None:
        return Rendered(status, b"", headers), None
    declared = success.headers if success is not None else ()
    if isinstance(body, bytes):
        # JSON kept from earlier (a cached page) is still checked against the schema.
        headers["content-type"] = content_type or "application/octet-stream"
        checked = keep_data and content_type == JSON
        return Rendered(status, body, headers), json.loads(body) if checked else None
    if isinstance(body, Mapping):
        headers["content-type"] = content_type or JSON
        data = to_jsonable(body)
        encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        return Rendered(status, encoded, headers), data if keep_data else None
    if not isinstance(body, BaseModel):
        raise TypeError(f"{operation.operation_id} returned a {type(body).__name__}, not a model")
    if "ETag" in declared:
        version = getattr(body, "version", None)
        if isinstance(version, int):
            headers["etag"] = etag(version)
    if operation.location is not None and status == 201:
        headers["location"] = operation.location.replace("{id}", str(getattr(body, "id", "")))
    headers["content-type"] = content_type or JSON
    if not keep_data:
        return Rendered(status, body.model_dump_json(by_alias=True).encode(), headers), None
    data = body.model_dump(mode="json", by_alias=True)
    encoded = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    return Rendered(status, encoded, headers), data


def render_problem(problem: Problem, instance: str | None) -> Rendered:
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
    }
    if problem.errors:
        body["errors"] = problem.errors
    headers = {
        key: value for key, value in problem.headers.items() if key.lower() != "content-type"
    }
    if problem.status == 401 and not any(k.lower() == "www-authenticate" for k in headers):
        headers["WWW-Authenticate"] = BEARER_CHALLENGE
    headers["content-type"] = PROBLEM_JSON
    encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Rendered(problem.status, encoded, headers)
