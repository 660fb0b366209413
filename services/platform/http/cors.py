"""CORS: which browser origins may call the API, decided in the app's one pass.

Built once at start-up from the allowed origins (`ERP_CORS_ORIGINS`) and the spec's operations:

* a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered 204 when
  the origin is allowed, the path has the requested method and every requested header is one
  the path's operations read; otherwise 403 problem+json saying which, with no CORS header;
* any other request from an allowed origin gets `Access-Control-Allow-Origin` and
  `Access-Control-Expose-Headers` (ETag, Location, the request ids, the rate-limit headers and
  every response header the spec declares); from another origin, no CORS header at all;
* `Vary: Origin` on every response once origins are configured (the answer depends on it, so
  a shared cache must not hand one origin's response to another); `*` allows every origin and
  needs no Vary.

No credentials mode: the API authenticates with headers (bearer token, X-API-Key), never
cookies, so `Access-Control-Allow-Credentials` is not sent and `*` stays safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from services.platform.core.contracts import OperationInfo
from services.platform.core.problems import Problem

ANY_ORIGIN: Final = "*"
PREFLIGHT_MAX_AGE: Final = 600  # seconds a browser may reuse a preflight answer
# Read by the kit on every request, whatever the operation (ids, body type).
KIT_REQUEST_HEADERS: Final = ("Content-Type", "X-Request-Id", "X-Correlation-Id")
# What a secured operation accepts (bearerAuth, apiKeyAuth).
CREDENTIAL_HEADERS: Final = ("Authorization", "X-API-Key")
# Sent by the kit beyond what operations declare; a browser app may read them.
KIT_RESPONSE_HEADERS: Final = (
    "ETag",
    "Location",
    "X-Request-Id",
    "X-Correlation-Id",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "Idempotent-Replayed",
)
# CORS-safelisted request headers: browsers may list them, they need no permission.
_SAFELISTED: Final = frozenset({"accept", "accept-language", "content-language", "content-type"})
_VARY_ORIGIN: Final = {"Vary": "Origin"}
_VARY_PREFLIGHT: Final = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


@dataclass(frozen=True, slots=True)
class PathRules:
    """What a browser may send to one path template: its methods and request headers."""

    methods: frozenset[str]  # upper case, HEAD included where GET is
    headers: frozenset[str]  # lower case
    allow_methods: str  # Access-Control-Allow-Methods
    allow_headers: str  # Access-Control-Allow-Headers


class CorsPolicy:
    """`CorsPolicy(origins, operations)`; `response_headers(origin)` for an ordinary response,
    `preflight(...)` for a preflight. Pure: no I/O, nothing per request but dict lookups."""

    def __init__(self, origins: Iterable[str], operations: Iterable[OperationInfo]) -> None:
        allowed = tuple(origins)
        self.enabled = bool(allowed)
        self.any_origin = ANY_ORIGIN in allowed
        self.origins = frozenset(o.lower().rstrip("/") for o in allowed if o != ANY_ORIGIN)
        operations = tuple(operations)
        self.rules = _path_rules(operations)
        declared = (header for op in operations if op.success for header in op.success.headers)
        self.expose = ", ".join(dict.fromkeys((*KIT_RESPONSE_HEADERS, *declared)))
        self._any_origin_headers = {
            "Access-Control-Allow-Origin": ANY_ORIGIN,
            "Access-Control-Expose-Headers": self.expose,
        }
        # Built once per allowed origin: a request from one costs a dict lookup.
        self._by_origin = {
            origin: {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Expose-Headers": self.expose,
                "Vary": "Origin",
            }
            for origin in self.origins
        }

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin.lower() in self.origins

    def response_headers(self, origin: str | None) -> Mapping[str, str]:
        """The CORS headers of an ordinary (not preflight) response to a request from `origin`."""
        if not self.enabled:
            return {}
        if self.any_origin:
            return self._any_origin_headers
        if origin is None:
            return _VARY_ORIGIN
        return self._by_origin.get(origin) or self._by_origin.get(origin.lower(), _VARY_ORIGIN)

    def preflight(
        self, origin: str, template: str | None, headers: Mapping[str, str]
    ) -> dict[str, str]:
        """The headers of a granted preflight for the route `template` (None: no such path);
        a refused one raises a 403 Problem naming why (its answer carries no CORS header)."""
        vary = {"Vary": _VARY_PREFLIGHT}
        if not self.enabled:
            raise Problem(
                403,
                detail="Cross-origin requests are not enabled on this service (ERP_CORS_ORIGINS).",
                headers=vary,
            )
        if not self.allows(origin):
            raise Problem(
                403,
                detail=f"The origin {origin} may not call this API (ERP_CORS_ORIGINS).",
                headers=vary,
            )
        rules = self.rules.get(template) if template is not None else None
        if rules is None:
            raise Problem(404, detail="No resource matches this path.", headers=vary)
        method = headers.get("access-control-request-method", "").strip().upper()
        if method not in rules.methods:
            raise Problem(
                403,
                detail=f"{method or 'That method'} is not allowed here; allowed: "
                f"{rules.allow_methods}.",
                headers=vary,
            )
        refused = [
            name
            for name in _header_list(headers.get("access-control-request-headers", ""))
            if name not in rules.headers and name not in _SAFELISTED
        ]
        if refused:
            raise Problem(
                403,
                detail=f"Request header(s) not allowed here: {', '.join(refused)}; allowed: "
                f"{rules.allow_headers}.",
                headers=vary,
            )
        return {
            "Access-Control-Allow-Origin": ANY_ORIGIN if self.any_origin else origin,
            "Access-Control-Allow-Methods": rules.allow_methods,
            "Access-Control-Allow-Headers": rules.allow_headers,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
            **vary,
        }


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    """A browser's CORS preflight, as opposed to a plain OPTIONS request."""
    if method != "OPTIONS":
        return False
    return "origin" in headers and "access-control-request-method" in headers


def _path_rules(operations: Iterable[OperationInfo]) -> dict[str, PathRules]:
    by_path: dict[str, list[OperationInfo]] = {}
    for operation in operations:
        by_path.setdefault(operation.path, []).append(operation)
    rules = {}
    for template, group in by_path.items():
        methods = {op.method for op in group}
        if "GET" in methods:
            methods.add("HEAD")  # the kit answers HEAD with the GET operation
        names = list(KIT_REQUEST_HEADERS)
        if any(not op.public for op in group):
            names += CREDENTIAL_HEADERS
        names += [p.wire_name for op in group for p in op.parameters if p.location == "header"]
        unique = list(dict.fromkeys(names))
        rules[template] = PathRules(
            methods=frozenset(methods),
            headers=frozenset(name.lower() for name in unique),
            allow_methods=", ".join(sorted(methods)),
            allow_headers=", ".join(unique),
        )
    return rules


def _header_list(value: str) -> list[str]:
    return [name.strip().lower() for name in value.split(",") if name.strip()]
