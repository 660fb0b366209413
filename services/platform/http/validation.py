"""Request validation fixes: format checks for uuid, date, date-time, email, int32, int64 on
the checker connexion uses, a JSON body validator that answers bad bytes or bad JSON with 400,
and a parameter validator that reports every bad field in `errors`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from datetime import date
from typing import Any

import jsonschema
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import BadRequestProblem
from connexion.utils import is_null, is_nullable
from connexion.validators import (
    FormDataValidator,
    JSONRequestBodyValidator,
    MultiPartFormDataValidator,
    ParameterValidator,
)
from email_validator import EmailNotValidError, validate_email
from starlette.types import Scope

from services.platform.core.problems import Problem, validation_problem

MAX_MESSAGE_LENGTH = 300


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})(?:\.\d+)?"
    r"(?:[Zz]|[+-](?P<oh>\d{2}):(?P<om>\d{2}))$"
)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _is_uuid(value: object) -> bool:
    return not isinstance(value, str) or bool(_UUID.match(value))


def _is_date(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time: a time zone is required; a leap second (:60) is allowed."""
    if not isinstance(value, str):
        return True
    match = _DATE_TIME.match(value)
    if match is None or not _is_date(match["date"]):
        return False
    hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"])
    offset_ok = match["oh"] is None or (int(match["oh"]) < 24 and int(match["om"]) < 60)
    return hour < 24 and minute < 60 and second <= 60 and offset_ok


def _is_email(value: object) -> bool:
    """The rule pydantic's EmailStr applies to the generated models and event payloads, so an
    address the HTTP contract accepts can always be stored and published."""
    if not isinstance(value, str):
        return True
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def _in_range(bounds: tuple[int, int]) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            return True
        return bounds[0] <= value <= bounds[1]

    return check


def register_formats(checker: jsonschema.FormatChecker | None = None) -> None:
    """Teach connexion's format checker the formats our specs use (idempotent).

    Connexion validates parameters, request and response bodies with the one instance
    `Draft4Validator.FORMAT_CHECKER`, which knows only email (any "@"), ipv4/6, regex: a bad
    uuid would reach `uuid.UUID()` in a handler and become a 500.
    """
    checker = checker or jsonschema.Draft4Validator.FORMAT_CHECKER
    checks: dict[str, Callable[[object], bool]] = {
        "uuid": _is_uuid,
        "date": _is_date,
        "date-time": _is_date_time,
        "email": _is_email,
        "int32": _in_range(INT32),
        "int64": _in_range(INT64),
    }
    for name, check in checks.items():
        checker.checks(name)(check)


def _short(message: str) -> str:
    # jsonschema quotes the offending value, which may be huge.
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 1] + "…"


def _join(base: str, path: Iterable[object]) -> str:
    return ".".join([base, *(str(part) for part in path)] if base else [str(p) for p in path])


def schema_errors(
    validator: jsonschema.protocols.Validator, instance: Any, base: str
) -> list[dict[str, str]]:
    """Every violation as {field, message}; `field` is the dotted path below `base`."""
    errors: list[dict[str, str]] = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path))):
        field = _join(base, error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    errors.append({"field": _join(field, [name]), "message": "is required"})
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            declared = error.schema.get("properties", {})
            patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
            for name in error.instance:
                if name not in declared and not any(p.search(name) for p in patterns):
                    errors.append({"field": _join(field, [name]), "message": "is not allowed"})
            continue
        errors.append({"field": field or "body", "message": _short(error.message)})
    return errors


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


class JsonBodyValidator(JSONRequestBodyValidator):  # type: ignore[misc]
    """Connexion's JSON body validator, answering every bad body with a 400 problem.

    Connexion decodes the bytes outside its try (non-UTF-8 → 500) and would accept NaN,
    Infinity and 1e999; its error names only the first violation.
    """

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return None
        try:
            text = raw.decode(self._encoding)
        except (UnicodeDecodeError, LookupError):
            raise _body_problem(f"The body is not valid {self._encoding} text.") from None
        try:
            return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as error:
            raise _body_problem(f"The body is not valid JSON: {_short(str(error))}") from None

    def _validate(self, body: Any) -> dict[str, Any] | None:
        if body is None and not self._required:
            return None  # an optional body left out (connexion would validate it as null)
        if not self._nullable and body is None:
            raise _body_problem("The request body must not be empty.")
        errors = schema_errors(self._validator, body, "")
        if errors:
            raise validation_problem(errors)
        return None

    async def wrap_receive(self, receive: Any, *, scope: Scope) -> Any:
        try:
            return await super().wrap_receive(receive, scope=scope)
        except BadRequestProblem as problem:  # "RequestBody is required"
            raise _body_problem(problem.detail) from None


def _body_problem(message: str) -> Problem:
    return Problem(400, "Bad Request", message, errors=[{"field": "body", "message": message}])


class ParametersValidator(ParameterValidator):  # type: ignore[misc]
    """Connexion's parameter validator, reporting every bad parameter (not just the first)."""

    def validate_request(self, request: Any) -> None:
        errors: list[dict[str, str]] = []
        if self.strict_validation:
            extra = self.validate_query_parameter_list(
                request, security_params=self.security_query_params
            )
            errors += [
                {"field": name, "message": "is not a parameter of this operation"}
                for name in sorted(extra)
            ]
        sources: dict[str, Callable[[str], Any]] = {
            "query": lambda name: request.query_params.get(name),
            "path": lambda name: request.path_params.get(name.replace("-", "_")),
            "header": lambda name: request.headers.get(name),
            "cookie": lambda name: request.cookies.get(name),
        }
        for location, read in sources.items():
            for parameter in self.parameters.get(location, []):
                errors += _parameter_errors(location, parameter, read(parameter["name"]))
        if errors:
            raise validation_problem(errors)


def _parameter_errors(
    location: str, parameter: Mapping[str, Any], value: Any
) -> list[dict[str, str]]:
    name = parameter["name"]
    if value is None:
        if parameter.get("required"):
            return [{"field": name, "message": f"is a required {location} parameter"}]
        return []
    if is_nullable(parameter) and is_null(value):
        return []
    validator = jsonschema.Draft4Validator(
        parameter.get("schema", parameter),
        format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER,
    )
    return schema_errors(validator, value, name)


def validator_map() -> dict[str, Any]:
    """Connexion's `validator_map` with the validators above (form bodies unchanged)."""
    return {
        "parameter": ParametersValidator,
        "body": MediaTypeDict(
            {
                "*/*json": JsonBodyValidator,
                "application/x-www-form-urlencoded": FormDataValidator,
                "multipart/form-data": MultiPartFormDataValidator,
            }
        ),
    }
