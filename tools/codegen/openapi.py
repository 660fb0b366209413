"""From a bundled OpenAPI document: validation and `generated/<service>/operations.py`."""

from __future__ import annotations

import copy
import keyword
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tools.codegen.bundle import JsonObject, resolve_pointer, split_ref
from tools.codegen.common import (
    CodegenError,
    docstring,
    header,
    pascal,
    py_literal,
    wrap_paragraphs,
)

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Served by the platform kit (its health and metrics handlers), not by the service's handlers.
KIT_OPERATIONS = frozenset({"get_health", "get_liveness", "get_readiness", "get_metrics"})

_SCALAR_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


@dataclass(frozen=True)
class Parameter:
    name: str  # python name, as connexion passes it
    wire_name: str  # name in the request ("Idempotency-Key"; "body" for the body)
    location: str  # path | query | header | body
    required: bool
    annotation: str  # Python type of the argument
    default: str | None  # Python expression of the default, None when there is none


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    summary: str
    permissions: tuple[str, ...]
    public: bool
    parameters: tuple[Parameter, ...]


def python_name(name: str) -> str:
    """The argument name connexion (`pythonic_params=True`) gives a parameter.

    Same function connexion uses, so that the generated Protocol cannot disagree with it.
    """
    with warnings.catch_warnings():  # connexion's import warns about starlette's test client
        warnings.simplefilter("ignore")
        from connexion.decorators.parameter import pythonic

    result = pythonic(name)
    if not isinstance(result, str) or not result.isidentifier() or keyword.iskeyword(result):
        raise CodegenError(f"parameter {name!r} has no Python name")
    return result


def validate_openapi(document: JsonObject, source: str) -> None:
    """Validate as connexion does at start-up (OpenAPI 3.0 schema, refs), plus house rules
    the generated code relies on: unique operationIds, declared path parameters, and
    `x-permissions` on every secured operation and on no public one."""
    with warnings.catch_warnings():  # connexion's import warns about starlette's test client
        warnings.simplefilter("ignore")
        from connexion.exceptions import InvalidSpecification
        from connexion.spec import OpenAPISpecification

    version = str(document.get("openapi", ""))
    if not version.startswith("3.0."):
        raise CodegenError(f"{source}: OpenAPI 3.0.x is required (connexion 3.3), got {version!r}")
    try:
        OpenAPISpecification(copy.deepcopy(document))
    except InvalidSpecification as error:
        raise CodegenError(f"{source}: invalid OpenAPI document: {error}") from error
    except Exception as error:  # connexion raises plain errors for unresolvable references
        raise CodegenError(f"{source}: invalid OpenAPI document: {error!r}") from error
    operations(document, source)


def deref(document: JsonObject, node: Any, where: str) -> Any:
    """Follow local `$ref`s until a node that is not a reference."""
    seen: set[str] = set()
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        file_part, pointer = split_ref(ref)
        if file_part:
            raise CodegenError(f"{where}: external reference {ref!r} left after bundling")
        if ref in seen:
            raise CodegenError(f"{where}: circular reference {ref!r}")
        seen.add(ref)
        node = resolve_pointer(document, pointer, where)
    return node


def _annotation(document: JsonObject, schema: Any, where: str) -> str:
    schema = deref(document, schema, where)
    if not isinstance(schema, dict):
        return "Any"
    kind = schema.get("type")
    if kind in _SCALAR_TYPES:
        annotation = _SCALAR_TYPES[kind]
    elif kind == "array":
        annotation = f"list[{_annotation(document, schema.get('items', {}), where)}]"
    elif kind == "object":
        annotation = "dict[str, Any]"
    else:
        annotation = "Any"
    if schema.get("nullable") is True and annotation != "Any":
        annotation += " | None"
    return annotation


def _parameter(document: JsonObject, raw: Any, where: str) -> Parameter:
    spec = deref(document, raw, where)
    if not isinstance(spec, dict) or "name" not in spec or "in" not in spec:
        raise CodegenError(f"{where}: malformed parameter {raw!r}")
    location = spec["in"]
    if location not in ("path", "query", "header"):
        raise CodegenError(f"{where}: {location} parameters are not supported ({spec['name']})")
    required = bool(spec.get("required", False)) or location == "path"
    schema = deref(document, spec.get("schema", {}), where)
    annotation = "str" if location == "path" and schema.get("type") != "integer" else ""
    annotation = annotation or _annotation(document, schema, where)
    default: str | None = None
    if not required:
        if location == "query" and isinstance(schema, dict) and "default" in schema:
            default = py_literal(schema["default"])  # connexion passes the default when absent
        else:
            if not annotation.endswith("| None") and annotation != "Any":
                annotation += " | None"
            default = "None"
    return Parameter(
        name=python_name(spec["name"]),
        wire_name=spec["name"],
        location=location,
        required=required,
        annotation=annotation,
        default=default,
    )


def _body(document: JsonObject, raw: Any, where: str) -> Parameter:
    body = deref(document, raw, where)
    if not isinstance(body, dict):
        raise CodegenError(f"{where}: malformed requestBody")
    required = bool(body.get("required", False))
    content = body.get("content") or {}
    schema: Any = {}
    for media_type in sorted(content):
        if "json" in media_type:
            schema = deref(document, (content[media_type] or {}).get("schema", {}), where)
            break
    kind = schema.get("type") if isinstance(schema, dict) else None
    annotation = "list[Any]" if kind == "array" else "dict[str, Any]"
    default: str | None = None
    if not required:
        annotation += " | None"
        default = "None"
    name = body.get("x-body-name", "body")
    return Parameter(
        name=python_name(name),
        wire_name="body",
        location="body",
        required=required,
        annotation=annotation,
        default=default,
    )


def _path_item_operations(document: JsonObject) -> Iterator[tuple[str, str, JsonObject, Any]]:
    for path, raw_item in (document.get("paths") or {}).items():
        item = deref(document, raw_item, f"paths.{path}")
        for method in item:
            if method in HTTP_METHODS:
                yield path, method, item[method], item.get("parameters") or []


def operations(document: JsonObject, source: str) -> tuple[Operation, ...]:
    """Every operation of the document, in document order, checked against the house rules."""
    root_security = document.get("security") or []
    result: list[Operation] = []
    seen: dict[str, str] = {}
    for path, method, operation, shared in _path_item_operations(document):
        where = f"{source}: {method.upper()} {path}"
        operation_id = operation.get("operationId")
        if not isinstance(operation_id, str) or not operation_id.isidentifier():
            raise CodegenError(f"{where}: operationId missing or not a Python identifier")
        if keyword.iskeyword(operation_id):
            raise CodegenError(f"{where}: operationId {operation_id!r} is a Python keyword")
        if operation_id in seen:
            raise CodegenError(
                f"{where}: operationId {operation_id!r} is also {seen[operation_id]}"
            )
        seen[operation_id] = f"{method.upper()} {path}"

        merged: dict[tuple[str, str], Any] = {}
        for raw in [*shared, *(operation.get("parameters") or [])]:
            spec = deref(document, raw, where)
            merged[(spec.get("in"), spec.get("name"))] = raw
        parameters = [_parameter(document, raw, where) for raw in merged.values()]
        declared = {p.wire_name for p in parameters if p.location == "path"}
        template = set(re.findall(r"{([^}]+)}", path))
        if declared != template:
            raise CodegenError(
                f"{where}: path parameters {sorted(declared)} do not match the template "
                f"{sorted(template)}"
            )
        if "requestBody" in operation:
            parameters.append(_body(document, operation["requestBody"], where))
        names = [p.name for p in parameters]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise CodegenError(f"{where}: parameters share Python names {duplicates}")

        security = operation.get("security", root_security)
        public = security == []
        permissions = operation.get("x-permissions")
        if public and permissions is not None:
            raise CodegenError(f"{where}: a public operation (security: []) has x-permissions")
        if not public and not isinstance(permissions, list):
            raise CodegenError(f"{where}: a secured operation needs x-permissions: [...]")
        if not all(isinstance(slug, str) for slug in permissions or []):
            raise CodegenError(f"{where}: x-permissions must be strings")
        result.append(
            Operation(
                operation_id=operation_id,
                method=method.upper(),
                path=path,
                summary=str(operation.get("summary", "")).strip(),
                permissions=tuple(permissions or ()),
                public=public,
                parameters=tuple(parameters),
            )
        )
    return tuple(result)


# ---------------------------------------------------------------------------------- rendering


def _operation_info(operation: Operation) -> str:
    parameters = "".join(
        f"ParameterInfo(name={p.name!r}, location={p.location!r}, required={p.required!r}),"
        for p in operation.parameters
    )
    return (
        f"OperationInfo(operation_id={operation.operation_id!r}, method={operation.method!r}, "
        f"path={operation.path!r}, permissions={py_literal(operation.permissions)}, "
        f"public={operation.public!r}, parameters=({parameters})),"
    )


def _method(operation: Operation) -> str:
    arguments = "".join(
        f", {p.name}: {p.annotation}" + (f" = {p.default}" if p.default is not None else "")
        # Required first, so that the signature can be copied into a plain function.
        for p in sorted(operation.parameters, key=lambda p: p.default is not None)
    )
    signature = f"self, *{arguments}" if arguments else "self"
    if operation.public:
        access = "Public."
    else:
        access = "Permissions: " + (", ".join(operation.permissions) or "any authenticated caller")
        access += "."
    summary = (operation.summary or operation.operation_id).rstrip(".") + "."
    doc = docstring(f"{operation.method} {operation.path} — {summary}\n\n{access}", 8)
    return (
        f"    async def {operation.operation_id}({signature}) -> HandlerResult:\n"
        f"        {doc}\n"
        f"        ...\n"
    )


def _set_literal(names: list[str]) -> str:
    return "{" + ", ".join(repr(name) for name in names) + "}" if names else "()"


def render_operations(service: str, document: JsonObject, source: str) -> str:
    """The source of `generated/<service>/operations.py` (formatted afterwards by ruff)."""
    ops = operations(document, source)
    protocol = f"{pascal(service)}Handlers"
    version = str((document.get("info") or {}).get("version", ""))
    served = [op for op in ops if op.operation_id not in KIT_OPERATIONS]
    kit = sorted(op.operation_id for op in ops if op.operation_id in KIT_OPERATIONS)
    methods = "\n".join(_method(op) for op in served) or "    pass\n"
    table = "\n".join(f"    {op.operation_id!r}: {_operation_info(op)}" for op in ops)
    module_doc = wrap_paragraphs(
        f"""HTTP operations of the {service} service, from {source}.

        `OPERATIONS` describes every operation for the platform kit: method, path template, the
        permissions it requires (`x-permissions`; all of them, an empty tuple meaning any
        authenticated caller), whether it is public (`security: []`) and its parameters under
        the names connexion passes them (`pythonic_params=True`: snake_case, `body` for the
        request body; headers such as `Idempotency-Key` become `idempotency_key`).

        `{protocol}` is the shape of the module `services.{service}.handlers`: one coroutine per
        operationId with keyword arguments as above. A module satisfies a Protocol, so
        `handlers: {protocol} = services.{service}.handlers` makes mypy report a missing,
        misspelled or mistyped handler. The operational operations
        ({", ".join(kit) or "none"}) are served by the platform kit and are not part of it."""
    )
    return f'''{header(source)}
"""{module_doc}
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias

from services.platform.core.contracts import OperationInfo, ParameterInfo

SERVICE = {service!r}
SPEC_VERSION = {version!r}

HandlerResult: TypeAlias = Any
"""What a handler returns: a response (the kit's `reply()`), a body, or (body, status)."""

KIT_OPERATIONS: frozenset[str] = frozenset({_set_literal(kit)})
"""OperationIds served by the platform kit rather than by `services.{service}.handlers`."""

OPERATIONS: Mapping[str, OperationInfo] = MappingProxyType({{
{table}
}})


class {protocol}(Protocol):
    """The handler module of the {service} service (one coroutine per operationId)."""

{methods}'''
