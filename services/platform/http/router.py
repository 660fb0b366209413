"""From a request's method and path to the operation that serves it, in one lookup.

Built once from the generated `OPERATIONS` table. Paths without parameters are a dict lookup;
templated paths are tried most specific first (more literal segments win, as OpenAPI says:
`/users/me` before `/users/{user_id}`), each one compiled to a regular expression.
A path that matches but lacks the method is a 405 listing every method the most specific
matching path has; a path nothing matches is a 404. A path with GET also answers HEAD (RFC 9110
§9.3.2: the GET operation, the app sends no body), and its `Allow` says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from services.platform.core.contracts import OperationInfo

_PARAMETER = re.compile(r"\{([^}/]+)\}")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route(Generic[T]):
    """One path template and what each of its methods leads to."""

    template: str
    methods: Mapping[str, T]
    pattern: re.Pattern[str] | None = None  # None: a path without parameters
    names: tuple[str, ...] = ()  # path parameter names, in order
    allow: str = ""  # the Allow header of a 405 on this path

    def parameters(self, path: str) -> dict[str, str] | None:
        if self.pattern is None:
            return {} if path == self.template else None
        match = self.pattern.fullmatch(path)
        return None if match is None else dict(zip(self.names, match.groups(), strict=True))


@dataclass(frozen=True, slots=True)
class Match(Generic[T]):
    route: Route[T]
    target: T | None  # None: the path exists but not with this method (405)
    path_parameters: dict[str, str] = field(default_factory=dict)


class Router(Generic[T]):
    """`Router({operation: target, ...})`: `match(method, path)` → `Match` or None (404)."""

    def __init__(self, targets: Iterable[tuple[OperationInfo, T]]) -> None:
        by_path: dict[str, dict[str, T]] = {}
        for operation, target in targets:
            by_path.setdefault(operation.path, {})[operation.method] = target
        for methods in by_path.values():
            if "GET" in methods:
                methods.setdefault("HEAD", methods["GET"])
        self._exact: dict[str, Route[T]] = {}
        templated: list[Route[T]] = []
        for template, methods in by_path.items():
            allow = ", ".join(sorted(methods))
            names = tuple(_PARAMETER.findall(template))
            if not names:
                self._exact[template] = Route(template, methods, allow=allow)
                continue
            regex = "".join(
                "([^/]+)" if _PARAMETER.fullmatch(part) else re.escape(part)
                for part in re.split(r"(\{[^}/]+\})", template)
                if part
            )
            templated.append(Route(template, methods, re.compile(regex), names, allow))
        # Most literal segments first; among equals, more segments first; then by name.
        templated.sort(key=lambda r: (-_literal_segments(r.template), r.template))
        self._templated = tuple(templated)

    def match(self, method: str, path: str) -> Match[T] | None:
        route = self._exact.get(path)
        if route is not None:
            return Match(route, route.methods.get(method))
        for route in self._templated:
            parameters = route.parameters(path)
            if parameters is not None:
                return Match(route, route.methods.get(method), parameters)
        return None

    def template(self, method: str, path: str) -> str | None:
        """The route template a request matches (metrics and logs label by it), else None."""
        found = self.match(method, path)
        return None if found is None else found.route.template


def _literal_segments(template: str) -> int:
    return sum(1 for part in template.split("/") if part and not _PARAMETER.fullmatch(part))
