"""An operation's request, parsed and checked as its spec declares, before any handler runs.

Built once per operation from the generated `OperationInfo` (validators compiled at start-up):

* parameters — path, query and header values coerced to their schema's type (as strings they
  came; a value that does not coerce stays a string and fails validation), checked, then turned
  into what the handler is typed with (`format: uuid` → UUID, `date-time` → datetime, `date` →
  date); defaults from the schema; a query parameter the operation does not declare is a 400;
  the Idempotency-Key header is the kit's, never the handler's;
* the JSON body — decoded (UTF-8, strict JSON: no NaN or Infinity), checked against the schema,
  then parsed into the operation's generated request model.

Every problem of a request is reported at once in one 400 (`errors: [{field, message}]`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from pydantic import BaseModel, ValidationError

from services.platform.core.contracts import (
    IDEMPOTENCY_KEY_HEADER,
    JsonSchema,
    OperationInfo,
    ParameterInfo,
)
from services.platform.core.problems import Problem, validation_problem
from services.platform.http.validation import (
    CompiledSchema,
    body_problem,
    each_field_once,
    parse_json,
)

# Longest unknown parameter name a refusal names back in full.
MAX_SHOWN_NAME = 64

JSON_SUFFIX = "json"


def _boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise ValueError(text)


_COERCE: Mapping[str, Callable[[str], Any]] = {"integer": int, "number": float, "boolean": _boolean}
_CONVERT: Mapping[str, Callable[[str], Any]] = {
    "uuid": UUID,
    "date-time": datetime.fromisoformat,
    "date": date.fromisoformat,
}


def _type_of(schema: JsonSchema, definitions: Mapping[str, Any]) -> JsonSchema:
    """The schema itself, or the definition it refers to (parameters use plain refs only)."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/definitions/"):
        found = definitions.get(ref.removeprefix("#/definitions/"))
        if isinstance(found, Mapping):
            return found
    return schema


def _first_type(schema: JsonSchema) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        return next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


class _Parameter:
    __slots__ = ("coerce", "convert", "default", "info", "schema")

    def __init__(self, info: ParameterInfo, definitions: Mapping[str, Any]) -> None:
        self.info = info
        resolved = _type_of(info.schema, definitions)
        kind = _first_type(resolved)
        self.coerce = _COERCE.get(kind or "")
        self.convert = _CONVERT.get(str(resolved.get("format"))) if kind == "string" else None
        self.default = resolved.get("default", info.schema.get("default"))
        self.schema = CompiledSchema(info.schema, definitions)

    def value(self, raw: str, errors: list[dict[str, str]]) -> Any:
        value: Any = raw
        if self.coerce is not None:
            # A value that does not coerce stays a string: validation names the type it lacks.
            with contextlib.suppress(ValueError):
                value = self.coerce(raw)
        found = self.schema.errors(value, self.info.wire_name)
        if found:
            errors += found
            return None
        return self.convert(value) if self.convert is not None else value


class RequestParser:
    """Parses and checks the requests of one operation."""

    def __init__(self, operation: OperationInfo, definitions: Mapping[str, Any]) -> None:
        self.operation = operation
        parameters = [_Parameter(p, definitions) for p in operation.parameters]
        self._query = {p.info.wire_name: p for p in parameters if p.info.location == "query"}
        self._path = [p for p in parameters if p.info.location == "path"]
        self._headers = [p for p in parameters if p.info.location == "header"]
        body = operation.body
        self._body_schema = None if body is None else CompiledSchema(body.schema, definitions)
        self._body_model: type[BaseModel] | None = None if body is None else body.model
        self._body_required = body is not None and body.required

    @property
    def has_body(self) -> bool:
        return self._body_model is not None

    def parameters(
        self, query_string: bytes, path: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[dict[str, Any], str | None]:
        """The handler's keyword arguments from the parameters, and the Idempotency-Key."""
        errors: list[dict[str, str]] = []
        query: dict[str, str] = {}
        if query_string:
            # The last of repeated values wins, as for any parameter that is not an array.
            query = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
            extra = sorted(name for name in query if name not in self._query)
            errors += [
                {"field": _shown_name(name), "message": "is not a parameter of this operation"}
                for name in extra
            ]
        arguments: dict[str, Any] = {}
        idempotency_key: str | None = None
        for parameter in self._path:
            self._take(parameter, path.get(parameter.info.wire_name), arguments, errors)
        for wire_name, parameter in self._query.items():
            self._take(parameter, query.get(wire_name), arguments, errors)
        for parameter in self._headers:
            raw = headers.get(parameter.info.wire_name.lower())
            if parameter.info.wire_name == IDEMPOTENCY_KEY_HEADER:
                if raw is not None and not parameter.schema.errors(raw, IDEMPOTENCY_KEY_HEADER):
                    idempotency_key = raw
                elif raw is not None:
                    errors += parameter.schema.errors(raw, IDEMPOTENCY_KEY_HEADER)
                elif parameter.info.required:
                    # An operation whose repeat would do harm (placing an order) requires it.
                    message = "is a required header parameter"
                    errors.append({"field": IDEMPOTENCY_KEY_HEADER, "message": message})
                continue
            self._take(parameter, raw, arguments, errors)
        if errors:
            raise validation_problem(errors)
        return arguments, idempotency_key

    @staticmethod
    def _take(
        parameter: _Parameter,
        raw: str | None,
        arguments: dict[str, Any],
        errors: list[dict[str, str]],
    ) -> None:
        info = parameter.info
        if raw is None:
            if info.required:
                errors.append(
                    {"field": info.wire_name, "message": f"is a required {info.location} parameter"}
                )
            elif parameter.default is not None:
                arguments[info.name] = parameter.default
            else:
                arguments[info.name] = None
            return
        value = parameter.value(raw, errors)
        arguments[info.name] = value

    def body(self, raw: bytes, content_type: str | None) -> tuple[BaseModel | None, Any]:
        """The body as the operation's request model, and its JSON value (None, None when an
        optional body is left out)."""
        if self._body_model is None or self._body_schema is None:
            return None, None
        if not raw:
            if self._body_required:
                raise body_problem("The request body is required.")
            return None, None
        if content_type is not None:
            media_type = content_type.partition(";")[0].strip().lower()
            if media_type and not media_type.endswith(JSON_SUFFIX):
                raise Problem(
                    415, detail=f"The body must be application/json, not {media_type[:80]}."
                )
        data = parse_json(raw)
        errors = self._body_schema.errors(data, "")
        if errors:
            raise validation_problem(errors)
        try:
            return self._body_model.model_validate(data), data
        except ValidationError as error:
            # The schema let it through but the model refuses it: still the client's input.
            # pydantic's `msg` never quotes the input (that is `e["input"]`, left out).
            raise validation_problem(
                each_field_once(
                    (".".join(str(part) for part in e["loc"]) or "body", e["msg"])
                    for e in error.errors()
                )
            ) from None


def _shown_name(name: str) -> str:
    # The caller chose it: named back, but never at any length (a 20 KB name came back whole).
    return name if len(name) <= MAX_SHOWN_NAME else name[:MAX_SHOWN_NAME] + "…"
