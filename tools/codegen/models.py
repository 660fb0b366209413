"""The pydantic models of the OpenAPI documents: `generated/common/models.py` once, and each
service's `generated/<service>/models.py` importing the shared classes from it.

How the shared components are generated once (datamodel-code-generator does the work):

1. `common.yaml` is bundled like a service document (same `NO_NUL` house rule) and its
   component schemas become `generated/common/models.py`.
2. A service's bundled document carries copies of the common components it uses (the bundler
   hoists them under their own names and refuses a differing definition under a common name).
   For datamodel-code-generator the service gets a derived input, never published: every
   common component is removed from `components.schemas` and every `$ref` to one points into
   the bundled common document instead (`<scratch>/common.openapi.json#/components/schemas/X`).
   `--external-ref-mapping <that file>=generated.common.models` then makes the generator
   import those classes rather than emit them, resolving the names itself. Nothing is
   re-defined, so no `Status`/`Status1` pair can appear, and inline types of the common
   components (the `status` enums of `Health` and `HealthCheck`) exist in the common module
   only.
3. The import datamodel-code-generator writes names only the classes some service model
   refers to. It is replaced (deterministically, through the module's AST) by an explicit
   re-export (`X as X`) of every common component the service document uses, so that
   `generated.<service>.models` still offers every schema of the service's document
   (`models.Problem`, `models.Health`, ...), under mypy's no-implicit-reexport too.

`--naming-strategy full-path` names the inline types that would clash after their parents
(`HealthStatus`, `HealthCheckStatus`) instead of numbering them (`Status1`).

`--emit-model-metadata` writes, next to each module, which class came from which schema:
`ModelIndex` reads it, and operations.py names the request and response models through it.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.codegen.bundle import JsonObject
from tools.codegen.common import CodegenError

COMMON_MODULE = "generated.common.models"
COMMON_INPUT = "common.openapi.json"  # file name of the bundled common document (scratch)

OPENAPI_MODEL_OPTIONS: tuple[str, ...] = ("--naming-strategy", "full-path")
"""datamodel-code-generator options of the OpenAPI model jobs (on top of the shared ones)."""

_SCHEMA_PREFIX = "#/components/schemas/"


def common_schema_names(service: str, document: JsonObject, common: JsonObject) -> list[str]:
    """The component schemas of the service's bundled document that are common.yaml's, sorted.

    A service schema under a common name with a different definition is an error: the service
    models would import the common class for it.
    """
    ours = (document.get("components") or {}).get("schemas") or {}
    shared = (common.get("components") or {}).get("schemas") or {}
    names = sorted(name for name in ours if name in shared)
    for name in names:
        if ours[name] != shared[name]:
            raise CodegenError(
                f"specs/openapi/{service}.yaml: component schema {name!r} differs from the one "
                "in common.yaml (rename it, or reference common.yaml's)"
            )
    return names


def service_model_input(document: JsonObject, names: Iterable[str], common_file: Path) -> Any:
    """The derived document datamodel-code-generator reads for a service (see the module doc)."""
    shared = set(names)
    target = common_file.resolve().as_posix()

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            name = ref[len(_SCHEMA_PREFIX) :] if isinstance(ref, str) else None
            if isinstance(ref, str) and ref.startswith(_SCHEMA_PREFIX) and name in shared:
                return {**node, "$ref": target + ref}
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    derived = walk(document)
    schemas = derived.get("components", {}).get("schemas", {})
    for name in shared:
        schemas.pop(name, None)
    return derived


def external_ref_options(common_file: Path) -> tuple[str, ...]:
    return ("--external-ref-mapping", f"{common_file.resolve().as_posix()}={COMMON_MODULE}")


def top_level_classes(source: str) -> list[str]:
    """The names of the classes a module defines at top level, in order."""
    return [node.name for node in ast.parse(source).body if isinstance(node, ast.ClassDef)]


def reexport_common(source: str, names: Iterable[str], common_classes: Iterable[str]) -> str:
    """The service models module with its import from the common module replaced by an
    explicit re-export of `names` (sorted, one per line, after the module's last import)."""
    wanted = sorted(set(names))
    available = set(common_classes)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise CodegenError(f"{COMMON_MODULE} has no classes {missing}")
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    last_import = 0
    for node in tree.body:
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        end = node.end_lineno or node.lineno
        if isinstance(node, ast.ImportFrom) and node.module == COMMON_MODULE:
            for alias in node.names:
                if alias.asname not in (None, alias.name):
                    raise CodegenError(
                        f"datamodel-codegen imported {alias.name} as {alias.asname} from "
                        f"{COMMON_MODULE}: a service schema clashes with a common one"
                    )
                if alias.name not in available:
                    raise CodegenError(f"{COMMON_MODULE} has no class {alias.name!r}")
                if alias.name not in wanted:
                    wanted.append(alias.name)
            drop.update(range(node.lineno, end + 1))
        else:
            last_import = end
    defined = set(top_level_classes(source)) & set(wanted)
    if defined:
        raise CodegenError(f"service models re-define common classes {sorted(defined)}")
    if wanted and last_import == 0:
        raise CodegenError("the generated models module has no import to put the re-export after")
    block = (
        f"\nfrom {COMMON_MODULE} import (  # the common components this service uses\n"
        + "".join(f"    {name} as {name},\n" for name in sorted(wanted))
        + ")\n"
    )
    result: list[str] = []
    for number, line in enumerate(lines, start=1):
        if number not in drop:
            result.append(line)
        if wanted and number == last_import:
            result.append(block)
    return "".join(result)


@dataclass(frozen=True)
class ModelIndex:
    """Which generated classes come from which component schema (datamodel's metadata)."""

    classes: Mapping[str, tuple[str, ...]]  # component schema name → class names

    @classmethod
    def read(cls, *paths: Path) -> ModelIndex:
        classes: dict[str, list[str]] = {}
        for path in paths:
            metadata = json.loads(path.read_text(encoding="utf-8"))
            for model in metadata.get("models") or []:
                source = model.get("source_path") or []
                if len(source) == 3 and source[:2] == ["components", "schemas"]:
                    names = classes.setdefault(source[2], [])
                    if model["class_name"] not in names:
                        names.append(model["class_name"])
        return cls({name: tuple(found) for name, found in classes.items()})

    def model_for(self, schema_name: str, direction: str, where: str) -> str:
        """The class of component schema `schema_name` in a request or a response.

        One class per schema normally; with readOnly/writeOnly properties the generator
        (`--read-only-write-only-model-type request-response`) makes `<Name>Request` and
        `<Name>Response`, and the direction picks one.
        """
        found = self.classes.get(schema_name, ())
        if len(found) > 1:
            suffix = "Request" if direction == "request" else "Response"
            found = tuple(name for name in found if name.endswith(suffix)) or found
        if len(found) != 1:
            what = "no generated class" if not found else f"several classes {list(found)}"
            raise CodegenError(
                f"{where}: the {direction} schema {schema_name!r} has {what} "
                "(datamodel-codegen metadata)"
            )
        return found[0]
