"""From a bundled OpenAPI document: validation and `generated/<service>/operations.py`."""

from __future__ import annotations

import copy
import keyword
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
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
from tools.codegen.models import ModelIndex

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Served by the platform kit (its health and metrics handlers), not by the service's handlers.
KIT_OPERATIONS = frozenset({"get_health", "get_liveness", "get_readiness", "get_metrics"})

JSON_MEDIA_TYPE = "application/json"

_SCALAR_TYPES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


@dataclass(frozen=True)
class Parameter:
    name: str  # python name, as connexion passes it
    wire_name: str  # name in the request ("Idempotency-Key"; "body" for the body)
    location: str  # path | query | header | body
    required: bool
    annotation: str  # Python type of the argument
    default: str | None  # Python expression of the default, None when there is none
    schema: JsonObject = field(default_factory=dict)  # JSON Schema (draft 4) of the value


@dataclass(frozen=True)
class Body:
    """An `application/json` request body, as the kit validates and parses it."""

    required: bool
    schema: JsonObject  # JSON Schema (draft 4), `$ref`s into SCHEMAS
    schema_name: str | None  # the component schema it references; None when inline
    # Dotted paths of the properties marked `x-erp-secret: true` (kept out of what is stored).
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Success:
    """The operation's one 2xx response."""

    status: int
    content_type: str | None  # None: no body
    schema: JsonObject | None
    schema_name: str | None  # the component schema of a JSON body; None when inline or none
    headers: tuple[str, ...]
    # Dotted paths of the properties marked `x-erp-secret: true` (shown once, never stored).
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    summary: str
    permissions: tuple[str, ...]
    public: bool
    parameters: tuple[Parameter, ...]  # path, query and header parameters, then the body
    body: Body | None = None
    success: Success | None = None
    location: str | None = None  # the created resource's path template (a 201 with Location)

    @property
    def request_parameters(self) -> tuple[Parameter, ...]:
        """The path, query and header parameters (not the body)."""
        return tuple(p for p in self.parameters if p.location != "body")


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


# ------------------------------------------------------------- OpenAPI 3.0 → JSON Schema

JSON_SCHEMA_DIALECT = "http://json-schema.org/draft-04/schema#"
SCHEMA_REF_PREFIX = "#/components/schemas/"
DEFINITIONS_REF_PREFIX = "#/definitions/"

# Keywords of the OpenAPI 3.0 Schema Object that JSON Schema draft 4 does not have (or that
# are annotations only OpenAPI tooling reads); `x-*` extensions go too. `nullable` is turned
# into a "null" type (below) before it is dropped. readOnly/writeOnly go without a trace: the
# kit validates a request and a response against the same schema (none are used today).
_OPENAPI_ONLY = frozenset(
    {
        "nullable",
        "example",
        "examples",
        "discriminator",
        "xml",
        "externalDocs",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
_SCHEMA_MAPS = ("properties", "patternProperties")  # name → schema
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")  # [schema, ...]


def definition_ref(ref: str, where: str) -> str:
    """`#/components/schemas/X` → `#/definitions/X`; any other reference is an error."""
    if not ref.startswith(SCHEMA_REF_PREFIX) or "/" in ref[len(SCHEMA_REF_PREFIX) :]:
        raise CodegenError(f"{where}: {ref!r} is not a reference to a component schema")
    return DEFINITIONS_REF_PREFIX + ref[len(SCHEMA_REF_PREFIX) :]


def json_schema(schema: Any, where: str) -> JsonObject:
    """An OpenAPI 3.0 Schema Object as JSON Schema draft 4 (a new object; input untouched).

    * `nullable: true` adds "null" to `type` (and `None` to `enum` when there is one); a
      nullable `$ref` or composition (`allOf`/`anyOf`/`oneOf`) becomes
      `{"anyOf": [<schema>, {"type": "null"}]}` (its `default` kept outside);
    * OpenAPI-only keywords and `x-*` extensions are dropped (`_OPENAPI_ONLY`);
    * `$ref`s become `#/definitions/<Name>` (siblings of a `$ref` are ignored by both, and
      dropped); `format`, `default` and every validation keyword are kept as they are.

    Only schema positions are converted: a property named `example`, or an `enum`/`default`
    value that looks like a schema, is data and stays as it is.
    """
    if isinstance(schema, bool):
        return {} if schema else {"not": {}}
    if not isinstance(schema, dict):
        raise CodegenError(f"{where}: a schema must be an object, got {schema!r}")
    converted: JsonObject = {}
    ref = schema.get("$ref")
    if ref is not None:
        if not isinstance(ref, str):
            raise CodegenError(f"{where}: $ref must be a string")
        converted["$ref"] = definition_ref(ref, where)
    else:
        for key, value in schema.items():
            if key in _OPENAPI_ONLY or key.startswith("x-"):
                continue
            if key in _SCHEMA_MAPS:
                converted[key] = {
                    name: json_schema(sub, f"{where}.{key}.{name}") for name, sub in value.items()
                }
            elif key in _SCHEMA_LISTS:
                converted[key] = [
                    json_schema(sub, f"{where}.{key}[{i}]") for i, sub in enumerate(value)
                ]
            elif key == "not":
                converted[key] = json_schema(value, f"{where}.not")
            elif key == "items":
                converted[key] = (
                    [json_schema(sub, f"{where}.items[{i}]") for i, sub in enumerate(value)]
                    if isinstance(value, list)
                    else json_schema(value, f"{where}.items")
                )
            elif key == "additionalProperties" and isinstance(value, dict):
                converted[key] = json_schema(value, f"{where}.additionalProperties")
            else:
                converted[key] = copy.deepcopy(value)
    if schema.get("nullable") is True:
        converted = _nullable(converted)
    return converted


def _nullable(schema: JsonObject) -> JsonObject:
    if "$ref" in schema or any(key in schema for key in _SCHEMA_LISTS):
        outer: JsonObject = {"anyOf": [schema, {"type": "null"}]}
        if "default" in schema:
            outer["default"] = schema.pop("default")
        return outer
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        schema["type"] = types if "null" in types else [*types, "null"]
    # Without a type the schema already admits null, unless an enum leaves it out.
    if isinstance(schema.get("enum"), list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


def schema_refs(node: Any) -> list[str]:
    """The `$ref` strings under a node, in document order (with repeats)."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [
            ref for key, value in node.items() if key != "$ref" for ref in schema_refs(value)
        ]
    if isinstance(node, list):
        return [ref for item in node for ref in schema_refs(item)]
    return []


def used_schemas(document: JsonObject, source: str) -> list[str]:
    """The component schemas the document's operations use (parameters, bodies, responses,
    headers; through component parameters/responses/... and through other schemas), in the
    order of `components.schemas`."""
    schemas = (document.get("components") or {}).get("schemas") or {}
    seen_refs: set[str] = set()
    names: set[str] = set()
    pending = schema_refs(document.get("paths") or {})
    while pending:
        ref = pending.pop()
        if ref in seen_refs:
            continue
        seen_refs.add(ref)
        if ref.startswith(SCHEMA_REF_PREFIX):
            name = ref[len(SCHEMA_REF_PREFIX) :]
            if name not in schemas:
                raise CodegenError(f"{source}: {ref!r} does not resolve")
            names.add(name)
            pending.extend(schema_refs(schemas[name]))
        else:  # a component parameter, response, header, request body, example...
            pending.extend(schema_refs(deref(document, {"$ref": ref}, source)))
    return [name for name in schemas if name in names]


def schema_definitions(document: JsonObject, source: str) -> JsonObject:
    """`SCHEMAS` of operations.py: a draft 4 document whose `definitions` are the used
    component schemas, converted."""
    schemas = (document.get("components") or {}).get("schemas") or {}
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "definitions": {
            name: json_schema(schemas[name], f"{source}: components.schemas.{name}")
            for name in used_schemas(document, source)
        },
    }


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
    prefilled = sorted({"example", "examples"} & set(spec))
    if not required and prefilled:
        # Swagger UI pre-fills "Try it out" with an optional parameter's example: a filter then
        # empties the list, an If-Match fails with 412, a reused Idempotency-Key replays.
        raise CodegenError(
            f"{where}: optional {location} parameter {spec['name']!r} has {prefilled[0]!r}; "
            "Swagger UI pre-fills it in Try it out — give the example in the description "
            "instead (house rule: no example on optional parameters)"
        )
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
        schema=json_schema(spec.get("schema", {}), f"{where}: parameter {spec['name']}"),
    )


def _schema_name(schema: Any) -> str | None:
    """The component schema a media type's schema references (None when inline)."""
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref: str = schema["$ref"]
        if ref.startswith(SCHEMA_REF_PREFIX):
            return ref[len(SCHEMA_REF_PREFIX) :]
    return None


def _json_body(document: JsonObject, raw: Any, where: str) -> Body | None:
    """The `application/json` request body the kit validates (None when there is none)."""
    body = deref(document, raw, where)
    media = (body.get("content") or {}).get(JSON_MEDIA_TYPE)
    if media is None:
        return None
    schema = (media or {}).get("schema", {})
    return Body(
        required=bool(body.get("required", False)),
        schema=json_schema(schema, f"{where}: requestBody"),
        schema_name=_schema_name(schema),
        secrets=tuple(_secret_properties(document, schema, where)),
    )


def _success(document: JsonObject, operation: JsonObject, where: str) -> Success:
    """The operation's one 2xx response (several, a range such as `2XX`, or none: an error)."""
    responses = operation.get("responses") or {}
    successes = [(str(code), raw) for code, raw in responses.items() if str(code).startswith("2")]
    if len(successes) != 1 or not successes[0][0].isdigit():
        found = f"declares {[code for code, _ in successes]}" if successes else "declares none"
        raise CodegenError(
            f"{where}: an operation needs exactly one 2xx response with a numeric status "
            f"(the kit's success response); it {found}"
        )
    status, raw = successes[0]
    response = deref(document, raw, where)
    if not isinstance(response, dict):
        raise CodegenError(f"{where}: malformed {status} response")
    headers = tuple(str(name) for name in response.get("headers") or {})
    content = response.get("content") or {}
    if not content:
        return Success(int(status), None, None, None, headers)
    if JSON_MEDIA_TYPE in content:
        content_type = JSON_MEDIA_TYPE
    elif len(content) == 1:
        content_type = str(next(iter(content)))
    else:
        raise CodegenError(
            f"{where}: the {status} response offers {sorted(content)}; the kit sends one "
            f"media type (add {JSON_MEDIA_TYPE}, or keep only one)"
        )
    schema = (content[content_type] or {}).get("schema", {})
    return Success(
        status=int(status),
        content_type=content_type,
        schema=json_schema(schema, f"{where}: {status} response"),
        schema_name=_schema_name(schema),
        headers=headers,
        secrets=tuple(_secret_properties(document, schema, where)),
    )


def _secret_properties(
    document: JsonObject, schema: Any, where: str, prefix: str = ""
) -> list[str]:
    """Dotted paths of the properties marked `x-erp-secret: true`, through `$ref`s, `allOf`
    and nested objects (e.g. "key", "tokens.refresh_token")."""
    schema = deref(document, schema, where)
    if not isinstance(schema, dict):
        return []
    found: list[str] = []
    for name, prop in (schema.get("properties") or {}).items():
        resolved = deref(document, prop, where)
        if isinstance(resolved, dict) and resolved.get("x-erp-secret") is True:
            found.append(prefix + name)
        else:
            found += _secret_properties(document, prop, where, f"{prefix}{name}.")
    for part in schema.get("allOf") or []:
        found += _secret_properties(document, part, where, prefix)
    return found


def _has_property(document: JsonObject, schema: Any, name: str, where: str) -> bool:
    schema = deref(document, schema, where)
    if not isinstance(schema, dict):
        return False
    if name in (schema.get("properties") or {}):
        return True
    return any(_has_property(document, part, name, where) for part in schema.get("allOf") or [])


def _location(
    document: JsonObject,
    operation: JsonObject,
    path: str,
    success: Success,
    get_paths: set[str],
    where: str,
) -> str | None:
    """The created resource's path template, `{id}` standing for the response's `id`.

    For a 201 that declares a `Location` header: `x-location` on the operation when given,
    else the sibling GET path (`POST /things` → `/things/{id}` because `GET /things/{thing_id}`
    exists). Neither is an error, and so is `x-location` on any other operation.
    """
    explicit = operation.get("x-location")
    declares = success.status == 201 and any(h.lower() == "location" for h in success.headers)
    if not declares:
        if explicit is not None:
            raise CodegenError(
                f"{where}: x-location is only for a 201 response that declares a Location header"
            )
        return None
    if explicit is not None:
        if not isinstance(explicit, str) or not explicit.startswith("/") or "{id}" not in explicit:
            raise CodegenError(f"{where}: x-location must be a path template with {{id}}")
        location = explicit
    else:
        siblings = sorted(
            candidate
            for candidate in get_paths
            if candidate.startswith(path.rstrip("/") + "/")
            and re.fullmatch(r"{[^{}/]+}", candidate[len(path.rstrip("/")) + 1 :])
        )
        if not siblings:
            raise CodegenError(
                f"{where}: the 201 response declares Location, but there is no GET "
                f"{path.rstrip('/')}/{{...}} to point it at; add x-location: <path with {{id}}>"
            )
        location = path.rstrip("/") + "/{id}"
    if success.schema_name is None or not _has_property(
        document, {"$ref": SCHEMA_REF_PREFIX + success.schema_name}, "id", where
    ):
        raise CodegenError(
            f"{where}: the 201 response declares Location, but its schema has no `id` property "
            "to fill the location's {id} with"
        )
    return location


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
    get_paths = {path for path, method, _, _ in _path_item_operations(document) if method == "get"}
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
        body: Body | None = None
        if "requestBody" in operation:
            parameters.append(_body(document, operation["requestBody"], where))
            body = _json_body(document, operation["requestBody"], where)
        success = _success(document, operation, where)
        location = _location(document, operation, path, success, get_paths, where)
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
                body=body,
                success=success,
                location=location,
            )
        )
    return tuple(result)


# ---------------------------------------------------------------------------------- rendering


def _is_json(content_type: str) -> bool:
    return content_type == JSON_MEDIA_TYPE or content_type.endswith("+json")


def _model(index: ModelIndex, schema_name: str | None, direction: str, where: str) -> str:
    if schema_name is None:
        raise CodegenError(
            f"{where}: the {direction} schema is inline, so no model is generated for it; "
            "make it a $ref to a component schema"
        )
    return "models." + index.model_for(schema_name, direction, where)


def _operation_info(operation: Operation, index: ModelIndex, source: str) -> str:
    where = f"{source}: {operation.method} {operation.path}"
    parameters = "".join(
        f"ParameterInfo(name={p.name!r}, location={p.location!r}, required={p.required!r}, "
        f"wire_name={p.wire_name!r}, schema={py_literal(p.schema)}),"
        for p in operation.request_parameters
    )
    body = "None"
    if operation.body is not None:
        model = _model(index, operation.body.schema_name, "request", where)
        body_secrets = operation.body.secrets
        secrets = f", secrets={py_literal(body_secrets)}" if body_secrets else ""
        body = (
            f"BodyInfo(required={operation.body.required!r}, "
            f"schema={py_literal(operation.body.schema)}, model={model}{secrets})"
        )
    success = "None"
    if operation.success is not None:
        result = operation.success
        model = "None"
        if result.content_type is not None and _is_json(result.content_type):
            model = _model(index, result.schema_name, "response", where)
        secrets = f", secrets={py_literal(result.secrets)}" if result.secrets else ""
        success = (
            f"ResponseInfo(status={result.status!r}, model={model}, "
            f"schema={py_literal(result.schema)}, headers={py_literal(result.headers)}, "
            f"content_type={result.content_type!r}{secrets})"
        )
    return (
        f"OperationInfo(operation_id={operation.operation_id!r}, method={operation.method!r}, "
        f"path={operation.path!r}, permissions={py_literal(operation.permissions)}, "
        f"public={operation.public!r}, parameters=({parameters}), body={body}, "
        f"success={success}, location={operation.location!r}),"
    )


_READS = frozenset({"GET", "HEAD", "OPTIONS"})
# What the kit hands a handler for each schema (services.platform.http.requests converts so).
IDEMPOTENCY_KEY = "Idempotency-Key"
_FORMAT_TYPES = {"uuid": "UUID", "date-time": "datetime", "date": "date"}


def _value_type(document: JsonObject, schema: Any, where: str) -> str:
    """The Python type of a parameter's value as the kit passes it to the handler."""
    schema = deref(document, schema, where)
    if not isinstance(schema, dict):
        return "Any"
    kind = schema.get("type")
    if kind == "string":
        return _FORMAT_TYPES.get(str(schema.get("format")), "str")
    return _SCALAR_TYPES.get(str(kind), "Any")


def _kit_argument(operation: Operation) -> str:
    """`call: Call` for a read, `call: WriteCall` (with its unit of work) for a write."""
    return "call: Call" if operation.method in _READS else "call: WriteCall"


def _method(operation: Operation, document: JsonObject, index: ModelIndex, source: str) -> str:
    where = f"{source}: {operation.method} {operation.path}"
    arguments: list[tuple[bool, str]] = []  # (has a default, "name: type = default")
    raw = _raw_parameters(document, operation, where)
    for parameter in operation.request_parameters:
        if parameter.wire_name == IDEMPOTENCY_KEY:
            continue  # the kit's: handlers never see the key
        annotation = _value_type(document, raw.get(parameter.wire_name, {}), where)
        if parameter.required:
            arguments.append((False, f"{parameter.name}: {annotation}"))
        elif "default" in parameter.schema:
            default = py_literal(parameter.schema["default"])
            arguments.append((True, f"{parameter.name}: {annotation} = {default}"))
        else:
            arguments.append((True, f"{parameter.name}: {annotation} | None = None"))
    if operation.body is not None:
        model = _model(index, operation.body.schema_name, "request", where)
        if operation.body.required:
            arguments.append((False, f"body: {model}"))
        else:
            arguments.append((True, f"body: {model} | None = None"))
    result = "None"
    success = operation.success
    if success is not None and success.content_type is not None:
        # JSON: the response model; another media type (a PDF, XML): its bytes, sent as they are.
        is_json = _is_json(success.content_type)
        result = _model(index, success.schema_name, "response", where) if is_json else "bytes"
    # A Reply answers with another status or extra headers (services.platform.Reply).
    result = "Reply | None" if result == "None" else f"{result} | Reply"
    # Required first, so that the signature can be copied into a plain function.
    ordered = [text for _, text in sorted(arguments, key=lambda item: item[0])]
    keywords = "".join(f", {text}" for text in ordered)
    signature = f"self, {_kit_argument(operation)}" + (f", *{keywords}" if keywords else "")
    if operation.public:
        access = "Public."
    else:
        access = "Permissions: " + (", ".join(operation.permissions) or "any authenticated caller")
        access += "."
    summary = (operation.summary or operation.operation_id).rstrip(".") + "."
    doc = docstring(f"{operation.method} {operation.path} — {summary}\n\n{access}", 8)
    return (
        f"    async def {operation.operation_id}({signature}) -> {result}:\n"
        f"        {doc}\n"
        f"        ...\n"
    )


def _raw_parameters(document: JsonObject, operation: Operation, where: str) -> dict[str, Any]:
    """The OpenAPI schemas of the operation's parameters by wire name (for their Python type)."""
    item = deref(document, (document.get("paths") or {}).get(operation.path, {}), where)
    found: dict[str, Any] = {}
    shared = item.get("parameters") or []
    for raw in [*shared, *(item[operation.method.lower()].get("parameters") or [])]:
        spec = deref(document, raw, where)
        found[spec["name"]] = spec.get("schema", {})
    return found


def _set_literal(names: list[str]) -> str:
    return "{" + ", ".join(repr(name) for name in names) + "}" if names else "()"


def render_operations(
    service: str,
    document: JsonObject,
    source: str,
    index: ModelIndex,
    *,
    models_module: str | None = None,
) -> str:
    """The source of `generated/<service>/operations.py` (formatted afterwards by ruff).

    `index` names the generated model classes of the component schemas (models.ModelIndex);
    `models_module` is the module they are imported from (`generated.<service>.models`; the
    kit's own tests generate a fixture service elsewhere).
    """
    package, _, module = (models_module or f"generated.{service}.models").rpartition(".")
    models_import = f"from {package} import {module}" + (" as models" if module != "models" else "")
    ops = operations(document, source)
    protocol = f"{pascal(service)}Handlers"
    version = str((document.get("info") or {}).get("version", ""))
    served = [op for op in ops if op.operation_id not in KIT_OPERATIONS]
    kit = sorted(op.operation_id for op in ops if op.operation_id in KIT_OPERATIONS)
    methods = "\n".join(_method(op, document, index, source) for op in served) or "    pass\n"
    table = "\n".join(
        f"    {op.operation_id!r}: {_operation_info(op, index, source)}" for op in ops
    )
    schemas = py_literal(schema_definitions(document, source))
    module_doc = wrap_paragraphs(
        f"""HTTP operations of the {service} service, from {source}.

        `OPERATIONS` describes every operation for the platform kit, all of it read from the
        spec here, at generation time: method, path template, the permissions it requires
        (`x-permissions`; all of them, an empty tuple meaning any authenticated caller),
        whether it is public (`security: []`); its path, query and header parameters
        (`name` as connexion passes them with `pythonic_params=True`, e.g. `idempotency_key`;
        `wire_name` as the request spells them, e.g. `Idempotency-Key`; `schema`); its
        `application/json` request body (`body`: schema and the model to parse it into); its
        one 2xx response (`success`: status, model, schema, declared headers, media type); and
        for a 201 with a `Location` header the created resource's path template (`location`,
        `{{id}}` standing for the response's `id`).

        `SCHEMAS` is a JSON Schema draft 4 document whose `definitions` are the component
        schemas the operations use, converted from OpenAPI 3.0 (`nullable` as a "null" type,
        OpenAPI-only keywords dropped); every `schema` above points into it
        (`#/definitions/<Name>`): validate with `{{"definitions": SCHEMAS["definitions"],
        **schema}}`.

        `{protocol}` is the shape of the module `services.{service}.handlers`: one coroutine per
        operationId taking the kit's `Call` (reads) or `WriteCall` (writes, with the unit of
        work the kit commits), then keyword arguments named as above with the types the kit
        converts them to (`format: uuid` → UUID, `date-time` → datetime), `body` as the
        request model, and returning the response model (None for no body) or a `Reply` for
        another status or extra headers. The kit consumes
        the Idempotency-Key itself. A module satisfies a Protocol, so
        `handlers: {protocol} = services.{service}.handlers` makes mypy report a missing,
        misspelled or mistyped handler. The operational
        operations ({", ".join(kit) or "none"}) are served by the platform kit and are not part
        of it."""
    )
    return f'''{header(source)}
"""{module_doc}
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from datetime import date, datetime
from typing import Any, Protocol
from uuid import UUID

{models_import}
from services.platform import Call, Reply, WriteCall
from services.platform.core.contracts import BodyInfo, OperationInfo, ParameterInfo, ResponseInfo

SERVICE = {service!r}
SPEC_VERSION = {version!r}

KIT_OPERATIONS: frozenset[str] = frozenset({_set_literal(kit)})
"""OperationIds served by the platform kit rather than by `services.{service}.handlers`."""

SCHEMAS: Mapping[str, Any] = {schemas}
"""JSON Schema draft 4: the component schemas the operations use, under `definitions`."""

OPERATIONS: Mapping[str, OperationInfo] = MappingProxyType({{
{table}
}})


class {protocol}(Protocol):
    """The handler module of the {service} service (one coroutine per operationId)."""

{methods}'''
