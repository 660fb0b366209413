"""Validation of requests (and, when configured, responses) against the operation's schemas.

Each schema is compiled once, at start-up, with jsonschema-rs (a Rust validator: the fast path
every valid request and response takes, a few microseconds for a page of 15 rows where
fastjsonschema's generated Python took 150). Only when it refuses an instance does jsonschema
(Draft 4, in Python) walk it again to list every violation as `{field, message}`, so the
common case pays microseconds and a client still learns everything that is wrong at once:
each invalid field once, with the rule it breaks and its limit ("must be at most 128
characters long"), and never the submitted value — any field may hold a password or a token,
so messages are written from the schema, not from jsonschema's, which quote the instance.
Formats our specs use: date and date-time (RFC 3339, zone required) are checked natively by
both; uuid becomes a pattern and int32/int64 become bounds for the Rust side (Draft 4 does not
know them); email calls the rule pydantic applies (email-validator) on both sides.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from itertools import islice
from typing import Any

import jsonschema
import jsonschema_rs
from email_validator import EmailNotValidError, validate_email

from services.platform.core.contracts import JsonSchema
from services.platform.core.problems import MAX_FIELD_ERRORS, Problem

MAX_MESSAGE_LENGTH = 300
# Enough for every field a problem lists (a field may break several rules), never more.
MAX_EXPLAINED_ERRORS = 4 * MAX_FIELD_ERRORS
DRAFT_4 = "http://json-schema.org/draft-04/schema#"


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
    return hour < 24 and minute < 60 and second <= 60 and offset_ok and _in_utc_range(value)


def _in_utc_range(value: str) -> bool:
    # 9999-12-31T23:59:59-01:00 is year 10000 in UTC: no datetime (nor column) holds it.
    try:
        datetime.fromisoformat(value.replace(":60", ":59", 1)).astimezone(UTC)
    except (OverflowError, ValueError):
        return False
    return True


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


def _short(message: str) -> str:
    # A message quotes only the schema, but an enum or a pattern there may be long.
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 1] + "…"


def _join(base: str, path: Iterable[object]) -> str:
    return ".".join([base, *(str(part) for part in path)] if base else [str(p) for p in path])


_TYPE_NAMES: Mapping[str, str] = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}
_FORMAT_NAMES: Mapping[str, str] = {
    "email": "an e-mail address",
    "uuid": "a UUID",
    "date": "a date (YYYY-MM-DD)",
    "date-time": "an RFC 3339 date-time with a time zone, within years 1-9999 in UTC",
}


def _listed(values: Iterable[object]) -> str:
    return ", ".join(json.dumps(value) for value in values)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _rule_message(error: jsonschema.ValidationError) -> str:
    """What `error` asks of the value, in words, naming the limit it breaks.

    Built from the schema alone, never from the instance: jsonschema's own messages start with
    the submitted value (\"'hunter2…' is too long\"), and a field may be a password or a token.
    """
    rule, limit, schema = error.validator, error.validator_value, error.schema
    if rule == "type":
        kinds = [limit] if isinstance(limit, str) else list(limit)
        return "must be " + " or ".join(_TYPE_NAMES.get(str(k), str(k)) for k in kinds)
    if rule == "minLength":
        return "must not be empty" if limit == 1 else f"must be at least {limit} characters long"
    if rule == "maxLength":
        return f"must be at most {limit} characters long"
    if rule in ("minimum", "maximum"):
        exclusive = isinstance(schema, Mapping) and schema.get(f"exclusive{rule.title()}") is True
        if rule == "minimum":
            return f"must be greater than {limit}" if exclusive else f"must be at least {limit}"
        return f"must be less than {limit}" if exclusive else f"must be at most {limit}"
    if rule == "multipleOf":
        return f"must be a multiple of {limit}"
    if rule == "minItems":
        return f"must have at least {_plural(limit, 'item')}"
    if rule == "maxItems":
        return f"must have at most {_plural(limit, 'item')}"
    if rule == "uniqueItems":
        return "must not repeat an item"
    if rule == "minProperties":
        return f"must have at least {_plural(limit, 'field')}"
    if rule == "maxProperties":
        return f"must have at most {_plural(limit, 'field')}"
    if rule == "enum":
        return f"must be one of {_listed(limit)}"
    if rule == "pattern":
        return f"must match the pattern {limit}"
    if rule == "format":
        bounds = _INTEGER_BOUNDS.get(str(limit))
        if bounds is not None:
            return f"must be between {bounds[0]} and {bounds[1]} ({limit})"
        return f"must be {_FORMAT_NAMES.get(str(limit), f'a valid {limit}')}"
    if rule == "not" and isinstance(limit, Mapping) and "enum" in limit:
        return f"must not be {_listed(limit['enum'])}"
    if rule in ("oneOf", "anyOf"):
        return "must match one of the allowed forms"
    return f"breaks the schema's {rule!r} rule"


def each_field_once(problems: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """(field, message) pairs as {field, message}, one per field in first-seen order, its
    distinct messages joined by "; "."""
    messages: dict[str, list[str]] = {}
    for field, message in problems:
        listed = messages.setdefault(field, [])
        if message not in listed:
            listed.append(message)
    return [{"field": field, "message": "; ".join(found)} for field, found in messages.items()]


def schema_errors(
    validator: jsonschema.protocols.Validator, instance: Any, base: str
) -> list[dict[str, str]]:
    """Every invalid field once, as {field, message}; `field` is the dotted path below `base`.

    jsonschema reports `required` once per missing property, each error naming the whole list,
    may report a property again through `allOf` branches, and reports each broken rule of one
    field separately: a field appears once, with its distinct messages. Only the first
    `MAX_EXPLAINED_ERRORS` violations are explained: a 1 MB array of wrong items holds half a
    million, and explaining them all took a minute of the event loop.
    """
    return each_field_once(_field_problems(validator, instance, base))


def _field_problems(
    validator: jsonschema.protocols.Validator, instance: Any, base: str
) -> Iterator[tuple[str, str]]:
    explained = islice(validator.iter_errors(instance), MAX_EXPLAINED_ERRORS)
    for error in sorted(explained, key=lambda e: list(map(str, e.path))):
        field = _join(base, error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    yield _join(field, [name]), "is required"
            continue
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            declared = error.schema.get("properties", {})
            patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
            for name in error.instance:
                if name not in declared and not any(p.search(name) for p in patterns):
                    yield _join(field, [name]), "is not allowed"
            continue
        yield field or "body", _short(_rule_message(error))


def reject_json_constant(name: str) -> Any:
    """`json.loads`'s parse_constant: NaN and Infinity are not JSON, and no column holds them."""
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("a number is out of range")  # not the number: it may be a secret
    return value


FORMATS: Mapping[str, Callable[[object], bool]] = {
    "uuid": _is_uuid,
    "date": _is_date,
    "date-time": _is_date_time,
    "email": _is_email,
}
_INTEGER_BOUNDS = {"int32": INT32, "int64": INT64}
_UUID_PATTERN = _UUID.pattern


def _format_checker() -> jsonschema.FormatChecker:
    """A jsonschema format checker with exactly the checks of `FORMATS` (and integer bounds)."""
    checker = jsonschema.FormatChecker(formats=())
    checks = {**FORMATS, **{name: _in_range(b) for name, b in _INTEGER_BOUNDS.items()}}
    for name, check in checks.items():
        checker.checks(name)(check)
    return checker


_CHECKER = _format_checker()


def _for_rust(schema: Any) -> Any:
    """`schema` as jsonschema-rs checks it like `FORMATS` do: uuid as a pattern, int32/int64 as
    minimum/maximum (a copy)."""
    if isinstance(schema, list):
        return [_for_rust(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    copied = {key: _for_rust(value) for key, value in schema.items()}
    kind = schema.get("format")
    bounds = _INTEGER_BOUNDS.get(str(kind))
    if bounds is not None:
        copied.setdefault("minimum", bounds[0])
        copied.setdefault("maximum", bounds[1])
    if kind == "uuid":
        if "pattern" in copied:
            copied["allOf"] = [*copied.get("allOf", []), {"pattern": _UUID_PATTERN}]
        else:
            copied["pattern"] = _UUID_PATTERN
    return copied


class CompiledSchema:
    """One schema, compiled: `errors(instance, field)` is [] for a valid instance."""

    def __init__(self, schema: JsonSchema, definitions: Mapping[str, Any] | None = None) -> None:
        self._root: dict[str, Any] = {"$schema": DRAFT_4, **schema}
        if definitions:
            self._root["definitions"] = definitions
        self._check = jsonschema_rs.Draft4Validator(
            _for_rust(self._root),
            formats={"email": _is_email, "date-time": _is_date_time},
            validate_formats=True,
            ignore_unknown_formats=True,
        )
        self._detailed: jsonschema.protocols.Validator | None = None

    def is_valid(self, instance: Any) -> bool:
        return bool(self._check.is_valid(instance))

    def errors(self, instance: Any, field: str) -> list[dict[str, str]]:
        if self._check.is_valid(instance):
            return []
        found = schema_errors(self._explainer(), instance, field)
        if found:
            return found
        # The two validators disagree (they should not): name the place, not the value, since
        # jsonschema-rs's message quotes it too.
        first = next(iter(self._check.iter_errors(instance)), None)
        place = _join(field, first.instance_path) if first is not None else field
        return [{"field": place or "body", "message": "is not valid"}]

    def violations(self, instance: Any) -> list[jsonschema.ValidationError]:
        """Every violation as jsonschema reports it ([] for a valid instance), for a caller that
        words its own messages (the event consumers)."""
        if self._check.is_valid(instance):
            return []
        return list(islice(self._explainer().iter_errors(instance), MAX_EXPLAINED_ERRORS))

    def _explainer(self) -> jsonschema.protocols.Validator:
        # Built on the first refusal: valid instances never pay for it.
        if self._detailed is None:
            self._detailed = jsonschema.Draft4Validator(self._root, format_checker=_CHECKER)
        return self._detailed


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body, or a 400 problem saying what is wrong with it.

    NaN, Infinity and numbers beyond a float's range are refused: they are not JSON, and
    would reach the database as values no column holds. So is a lone UTF-16 surrogate written
    as an escape ("\\ud800"): no UTF-8 text, column or event can carry it.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise body_problem("The body is not valid UTF-8 text.") from None
    try:
        value = json.loads(text, parse_constant=reject_json_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as error:
        raise body_problem(f"The body is not valid JSON: {_short(str(error))}") from None
    if "\\u" in text and _has_lone_surrogate(value):  # only escapes can make one
        raise body_problem("The body holds a lone UTF-16 surrogate (\\ud800-\\udfff escape).")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    # A walk with a list, not recursion: json.loads nests deeper than the stack has room for
    # below this frame, and a RecursionError here would be a 500.
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def body_problem(message: str) -> Problem:
    return Problem(400, "Bad Request", message, errors=[{"field": "body", "message": message}])
