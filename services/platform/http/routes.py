"""The spec's paths and operations, in match order.

`RouteTable` finds a request's route template (metrics, access log), the methods a path allows
(405) and what an operation requires (permissions); `ConcretePathMiddleware` makes a concrete
path win over a template, as OpenAPI says.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


_PATH_PARAMETER = re.compile(r"\{[^}/]+\}")


@dataclass(frozen=True, slots=True)
class SpecOperation:
    operation_id: str
    method: str  # upper case
    template: str
    anonymous: bool  # `security: []` (or an empty alternative): no credentials needed
    permissions: tuple[str, ...]  # x-permissions, all required


@dataclass(frozen=True, slots=True)
class _PathTemplate:
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str]
    specificity: tuple[int, int]  # (fewer parameters, longer literal text) sorts first


class RouteTable:
    """Path templates and operations of one OpenAPI document (paths written in full)."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        root_security = spec.get("security") or []
        self.operations: dict[str, SpecOperation] = {}
        templates = []
        for template, item in (spec.get("paths") or {}).items():
            methods = set()
            for method, operation in item.items():
                if method not in HTTP_METHODS:
                    continue
                methods.add(method.upper())
                operation_id = operation.get("operationId")
                if operation_id:
                    security = operation.get("security", root_security)
                    self.operations[operation_id] = SpecOperation(
                        operation_id=operation_id,
                        method=method.upper(),
                        template=template,
                        anonymous=not security or any(not alt for alt in security),
                        permissions=tuple(operation.get("x-permissions") or ()),
                    )
            if "GET" in methods:
                methods.add("HEAD")  # Starlette answers HEAD on every GET route
            parts = _PATH_PARAMETER.split(template)
            pattern = "[^/]+".join(re.escape(part) for part in parts)
            templates.append(
                _PathTemplate(
                    template=template,
                    pattern=re.compile(f"^{pattern}$"),
                    methods=frozenset(methods),
                    specificity=(len(parts) - 1, -sum(len(part) for part in parts)),
                )
            )
        self._templates = sorted(templates, key=lambda t: t.specificity)

    def _matching(self, path: str) -> list[_PathTemplate]:
        return [t for t in self._templates if t.pattern.match(path)]

    def template(self, method: str, path: str) -> str | None:
        """The template a request is routed to, e.g. "/api/v1/users/{user_id}"."""
        matching = self._matching(path)
        for candidate in matching:
            if method.upper() in candidate.methods:
                return candidate.template
        return matching[0].template if matching else None

    def allowed_methods(self, path: str) -> list[str]:
        """Methods of the most specific template matching `path` (empty when none does)."""
        matching = self._matching(path)
        return sorted(matching[0].methods) if matching else []

    def operation(self, operation_id: str | None) -> SpecOperation | None:
        return self.operations.get(operation_id) if operation_id else None

    def concrete_first(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `spec` whose paths are ordered most specific first.

        OpenAPI matches concrete paths before templated ones; connexion registers routes in
        document order and Starlette takes the first match, so "/users/{id}" listed before
        "/users/me" would swallow it.
        """
        paths = spec.get("paths") or {}
        ordered = {t.template: copy.deepcopy(paths[t.template]) for t in self._templates}
        return {**copy.deepcopy(dict(spec)), "paths": ordered}


class ConcretePathMiddleware:
    """405 for a method the most specific matching path lacks, even if a template has it.

    Without it, DELETE /users/me would reach DELETE /users/{user_id} and fail as a bad id.
    """

    def __init__(self, app: ASGIApp, *, routes: RouteTable) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed = self.routes.allowed_methods(scope["path"])
            if allowed and scope["method"] not in allowed:
                raise HTTPException(405)
        await self.app(scope, receive, send)
