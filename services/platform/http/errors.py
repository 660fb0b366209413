"""Every error a request can meet, as RFC 9457 problem+json.

Whatever goes wrong — a use case raising `Problem`, invalid input or credentials, an unknown
route or method, a bug — the client gets `application/problem+json` with `type`, `title`,
`status`, `detail`, `instance` (the request path) and, for validation, `errors: [{field,
message}]`. Unexpected exceptions are logged with the request id and answered with a generic
500 that leaks nothing.
"""

from __future__ import annotations

import logging

from services.platform.core.problems import Problem

log = logging.getLogger("services.platform.problems")

INTERNAL_ERROR = "An unexpected error occurred; the request id identifies it in the logs."


def to_problem(error: BaseException, method: str, path: str) -> Problem:
    """The problem a client gets for `error`; unexpected errors are logged here."""
    if isinstance(error, Problem):
        # The access log already has every 4xx; the detail helps when debugging.
        level = logging.DEBUG if error.status < 500 else logging.ERROR
        log.log(level, "%s %s -> %s %s", method, path, error.status, error.detail)
        return error
    log.error("unhandled error in %s %s", method, path, exc_info=error)
    return Problem(500, detail=INTERNAL_ERROR)


def not_found() -> Problem:
    return Problem(404, detail="No resource matches this path.")


def method_not_allowed(method: str, allow: str) -> Problem:
    return Problem(
        405,
        detail=f"{method} is not allowed here; allowed: {allow or 'none'}.",
        headers={"Allow": allow},
    )


def contract_breach(method: str, path: str, errors: list[dict[str, str]]) -> Problem:
    """Our bug, not the client's: a response outside the operation's schema. The errors name
    schema internals, so they are only logged."""
    log.error("response of %s %s breaks the contract: %s", method, path, errors)
    return Problem(500, detail="The server produced a response outside its contract.")
