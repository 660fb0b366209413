"""RFC 9457 problem details: the `Problem` exception, raised anywhere below a handler.

`services.platform.http.errors` renders it (and every other error) as problem+json.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus

from services.platform.core.rules import FieldError

PROBLEM_JSON = "application/problem+json"
BEARER_CHALLENGE = "Bearer"
MAX_FIELD_ERRORS = 50


def status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Problem(Exception):  # noqa: N818 - RFC 9457 names it
    """An error answered as problem+json; raise it anywhere below a handler.

    `errors` are field-level messages, e.g. `[{"field": "email", "message": "already used"}]`;
    `headers` are added to the response (`Retry-After`, `WWW-Authenticate`, ...).
    """

    def __init__(
        self,
        status: int,
        title: str | None = None,
        detail: str | None = None,
        *,
        type: str | None = None,  # the RFC 9457 member name
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail)
        self.status = status
        self.title = title or status_title(status)
        self.detail = detail
        self.type = type or "about:blank"
        self.headers: dict[str, str] = dict(headers or {})
        self.errors: list[dict[str, str]] = [
            {"field": _printable(error["field"]), "message": _printable(error["message"])}
            for error in errors or ()
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"

    def __repr__(self) -> str:
        return f"Problem({self.status}, {self.title!r}, {self.detail!r}, errors={self.errors!r})"


def _printable(value: object) -> str:
    # Field names echo the request (an unknown query parameter's name): the published schemas
    # promise no U+0000 in any text, so it is written as the escape a reader would type.
    return str(value).replace("\x00", "\\u0000")


def unauthorized(detail: str) -> Problem:
    """A 401 that tells the client how to authenticate (RFC 9110 requires the challenge)."""
    return Problem(401, detail=detail, headers={"WWW-Authenticate": BEARER_CHALLENGE})


def validation_problem(errors: Sequence[Mapping[str, str]]) -> Problem:
    """A 400 listing field errors; `detail` repeats the message when there is only one."""
    errors = list(errors)[:MAX_FIELD_ERRORS]
    if len(errors) == 1:
        only = errors[0]
        detail = f"{only['field']}: {only['message']}" if only["field"] else only["message"]
    else:
        detail = f"The request has {len(errors)} invalid fields; see errors."
    return Problem(400, "Bad Request", _printable(detail), errors=errors)


def resource_not_found(kind: str, identifier: object) -> Problem:
    """A 404 for something the URL names that does not exist ("Product 1f… not found.")."""
    return Problem(404, detail=f"{kind} {identifier} not found.")


def unprocessable(detail: str, errors: Sequence[FieldError]) -> Problem:
    """A 422: a well-formed body that breaks a domain rule, each broken rule by its field."""
    return Problem(422, detail=detail, errors=[error.as_dict() for error in errors])


def check_rules(errors: Sequence[FieldError]) -> None:
    """Raise the 422 when a service's domain rules found problems."""
    if errors:
        raise unprocessable("The request breaks the rules; see errors.", errors)
