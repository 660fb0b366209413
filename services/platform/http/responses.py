"""What a handler returns: `reply()` — JSON from pydantic models (mode="json", aliases, no
MISSING fields) with its Content-Type set, which connexion needs when an operation declares
both `application/json` and `application/problem+json` (connexion issue #1956) — and the same
encoding for anything else connexion serializes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from connexion.decorators.response import BaseResponseDecorator
from connexion.exceptions import NonConformingResponseHeaders
from connexion.jsonifier import Jsonifier
from connexion.lifecycle import ConnexionResponse
from connexion.utils import extract_content_type
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

JSON = "application/json"


def to_jsonable(value: Any) -> Any:
    """JSON-ready data: models dumped by alias in JSON mode (Decimal → "12.50", not 12.5)."""
    return to_jsonable_python(value, by_alias=True)


def dumps(value: Any) -> str:
    return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))


def reply(
    body: BaseModel | Mapping[str, Any] | Sequence[Any] | None = None,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    *,
    content_type: str = JSON,
) -> ConnexionResponse:
    """A handler's response: `return reply(model, 201, {"Location": url})`; no body → none."""
    response_headers = dict(headers or {})
    if body is None:
        return ConnexionResponse(status_code=int(status), headers=response_headers)
    return ConnexionResponse(
        status_code=int(status),
        mimetype=content_type,
        content_type=content_type,
        body=dumps(body),
        headers=response_headers,
    )


class _Encoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        return to_jsonable(o)


def jsonifier() -> Jsonifier:
    """Connexion's serializer for bodies a handler returns without `reply()`."""
    return Jsonifier(json, cls=_Encoder)


_connexion_infer_content_type = BaseResponseDecorator._infer_content_type


def _infer_content_type(data: Any, headers: dict[str, str]) -> str | None:
    try:
        return _connexion_infer_content_type(data, headers)  # type: ignore[no-any-return]
    except NonConformingResponseHeaders:
        from connexion.context import operation

        # Issue #1956: several declared media types and none set → no body needs none; a
        # body is JSON when the operation declares JSON.
        if extract_content_type(headers) is None:
            if data is None:
                return None
            if JSON in operation.produces:
                return JSON
        raise


def fix_content_type_inference() -> None:
    """Patch connexion so a handler returning a bare dict/model/None is not a 500 (idempotent)."""
    BaseResponseDecorator._infer_content_type = staticmethod(_infer_content_type)
