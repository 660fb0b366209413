"""Error examples that say what the server answers to the operation they document.

A shared error response (`common.yaml#/components/responses/BadRequest`, ...) is written once,
but the server's problem+json names the request's path in `instance`. In the bundled document
every operation that uses a shared response whose example has an `instance` gets its own copy,
with `instance` the path of the operation's example request (path parameters filled with
their examples, which are ids of the demo data set: docs/adr/0008-docs-that-work.md), and a
403's `detail` naming the operation's own `x-permissions`, as the server words it.

House rule: every path parameter has an `example`, so each operation has a request that works
as written in Swagger UI and an error example with its exact `instance`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from tools.codegen.common import CodegenError

JsonObject = dict[str, Any]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
RESPONSES = "#/components/responses/"
PARAMETERS = "#/components/parameters/"
MISSING_PERMISSION = "Missing permission: "  # services/platform/http/security.py words it so


def _parameter(document: JsonObject, raw: Any) -> Any:
    ref = raw.get("$ref") if isinstance(raw, dict) else None
    if isinstance(ref, str) and ref.startswith(PARAMETERS):
        return document.get("components", {}).get("parameters", {}).get(ref[len(PARAMETERS) :])
    return raw


def example_path(document: JsonObject, path: str, parameters: list[Any], where: str) -> str:
    """`path` with each `{name}` replaced by the example of its path parameter."""
    examples: dict[str, Any] = {}
    for raw in parameters:
        parameter = _parameter(document, raw)
        if isinstance(parameter, dict) and parameter.get("in") == "path":
            examples[str(parameter.get("name"))] = parameter.get("example")

    def fill(match: re.Match[str]) -> str:
        value = examples.get(match.group(1))
        if value is None:
            raise CodegenError(
                f"{where}: path parameter {match.group(1)!r} has no example (house rule: the "
                "docs' example requests use the demo data set's ids)"
            )
        return str(value)

    return re.sub(r"{([^}]+)}", fill, path)


def place_error_examples(document: JsonObject, source: str) -> JsonObject:
    """`document` (bundled) with each shared error example's `instance` per operation."""
    shared = document.get("components", {}).get("responses", {})
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            where = f"{source}: {method.upper()} {path}"
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            instance = example_path(document, path, parameters, where)
            responses = operation.get("responses", {})
            for status, response in responses.items():
                ref = response.get("$ref") if isinstance(response, dict) else None
                if not isinstance(ref, str) or not ref.startswith(RESPONSES):
                    continue
                located = _located(
                    shared.get(ref[len(RESPONSES) :]), instance, operation.get("x-permissions")
                )
                if located is not None:
                    responses[status] = located
    return document


def _located(response: Any, instance: str, permissions: Any) -> JsonObject | None:
    """A copy of `response` whose examples name `instance`; None when none has an instance."""
    if not isinstance(response, dict):
        return None
    result = copy.deepcopy(response)
    changed = False
    for media in result.get("content", {}).values():
        example = media.get("example") if isinstance(media, dict) else None
        if isinstance(example, dict) and "instance" in example:
            example["instance"] = instance
            if example.get("status") == 403 and isinstance(permissions, list) and permissions:
                example["detail"] = f"{MISSING_PERMISSION}{', '.join(map(str, permissions))}"
            changed = True
    return result if changed else None
