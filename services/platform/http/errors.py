"""The one renderer of every error as RFC 9457 problem+json.

Whatever goes wrong in a request — a use case raising `Problem`, connexion rejecting input or
credentials, an unknown route or method, a bug — the client gets `application/problem+json`
with `type`, `title`, `status`, `detail`, `instance` (the request path) and, for validation,
`errors: [{field, message}]`. Unexpected exceptions are logged with the request id and
answered with a generic 500 that leaks nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from connexion.exceptions import NonConformingResponse, ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from services.platform.core.problems import BEARER_CHALLENGE, PROBLEM_JSON, Problem, status_title
from services.platform.http.routes import RouteTable

log = logging.getLogger("services.platform.problems")


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
