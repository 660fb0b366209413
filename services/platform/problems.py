"""RFC 9457 problem details: the `Problem` exception and the one renderer of every error.

Whatever goes wrong in a request — a use case raising `Problem`, connexion rejecting input or
credentials, an unknown route or method, a bug — the client gets `application/problem+json`
with `type`, `title`, `status`, `detail`, `instance` (the request path) and, for validation,
`errors: [{field, message}]`. Unexpected exceptions are logged with the request id and
answered with a generic 500 that leaks nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from connexion.exceptions import NonConformingResponse, ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

if TYPE_CHECKING:
    from services.platform.http import RouteTable

PROBLEM_JSON = "application/problem+json"
BEARER_CHALLENGE = "Bearer"
MAX_FIELD_ERRORS = 50

log = logging.getLogger("services.platform.problems")


def status_title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class Problem(ProblemException):  # type: ignore[misc]  # connexion ships no type hints
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
        super().__init__(
            status=status,
            title=title or status_title(status),
            detail=detail,
            type=type or "about:blank",
            headers=dict(headers or {}),
        )
        self.errors: list[dict[str, str]] = [
            {"field": str(error["field"]), "message": str(error["message"])}
            for error in errors or ()
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"

    def __repr__(self) -> str:
        return f"Problem({self.status}, {self.title!r}, {self.detail!r}, errors={self.errors!r})"


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
    return Problem(400, "Bad Request", detail, errors=errors)


def problem_response(problem: Problem, instance: str | None) -> ConnexionResponse:
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
    return ConnexionResponse(
        status_code=problem.status,
        mimetype=PROBLEM_JSON,
        content_type=PROBLEM_JSON,
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        headers=headers,
    )


class ProblemRenderer:
    """The exception handler of an app: turns any exception into a problem response.

    It knows the app's routes so that a 405 lists every method of the path in `Allow`
    (Starlette's own header lists the methods of one route only).
    """

    def __init__(self, routes: RouteTable) -> None:
        self.routes = routes

    async def handle(self, request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
        """The handler connexion calls (async: connexion runs sync handlers in a thread)."""
        path = request.scope.get("path", "")
        problem = self.to_problem(exc, path, request.scope.get("method", ""))
        return problem_response(problem, path or None)

    def to_problem(self, exc: Exception, path: str, method: str) -> Problem:
        if isinstance(exc, Problem):
            self._log_client_error(exc, method, path)
            return exc
        if isinstance(exc, NonConformingResponse):
            # Our bug, not the client's: the detail names schema internals, so only log it.
            log.error("response of %s %s breaks the contract: %s", method, path, exc.detail)
            return Problem(500, detail="The server produced a response outside its contract.")
        if isinstance(exc, ProblemException):
            problem = Problem(exc.status, exc.title, exc.detail, type=exc.type, headers=exc.headers)
            self._log_client_error(problem, method, path)
            return problem
        if isinstance(exc, HTTPException):
            return self._http_problem(exc, path, method)
        log.error("unhandled error in %s %s", method, path, exc_info=exc)
        return Problem(
            500,
            detail="An unexpected error occurred; the request id identifies it in the logs.",
        )

    def _http_problem(self, exc: HTTPException, path: str, method: str) -> Problem:
        headers = dict(exc.headers or {})
        detail: str | None = exc.detail if exc.detail != status_title(exc.status_code) else None
        if exc.status_code == 404 and detail is None:
            detail = "No resource matches this path."
        elif exc.status_code == 405:
            allowed = self.routes.allowed_methods(path)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
            detail = f"{method} is not allowed here; allowed: {headers.get('Allow', 'none')}."
        problem = Problem(exc.status_code, detail=detail, headers=headers)
        self._log_client_error(problem, method, path)
        return problem

    @staticmethod
    def _log_client_error(problem: Problem, method: str, path: str) -> None:
        # The access log already has every 4xx; the detail helps when debugging.
        level = logging.DEBUG if problem.status < 500 else logging.ERROR
        log.log(level, "%s %s -> %s %s", method, path, problem.status, problem.detail)
