"""Model generation: common.yaml's components in `generated/common/models.py` once, imported by
every service's models (never re-defined), and no numbered duplicate class names."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tools.codegen import REPO_ROOT
from tools.codegen.common import CodegenError
from tools.codegen.models import (
    COMMON_MODULE,
    ModelIndex,
    common_schema_names,
    reexport_common,
    service_model_input,
    top_level_classes,
)
from tools.codegen.runner import GENERATED_DIR, openapi_services

SERVICES = openapi_services(REPO_ROOT)
COMMON_MODELS = REPO_ROOT / GENERATED_DIR / "common" / "models.py"


def _classes(path: Path) -> list[str]:
    return top_level_classes(path.read_text(encoding="utf-8"))


def _component_schemas(name: str) -> set[str]:
    spec = json.loads((REPO_ROOT / GENERATED_DIR / "specs" / f"{name}.openapi.json").read_text())
    return set(spec["components"]["schemas"])


@pytest.mark.parametrize("service", SERVICES)
def test_no_common_class_is_redefined_in_a_service(service: str) -> None:
    common = set(_classes(COMMON_MODELS))
    assert {"Problem", "Health", "PaginationMeta"} <= common
    models = REPO_ROOT / GENERATED_DIR / service / "models.py"
    assert not common & set(_classes(models))
    # The common components the service document uses are re-exported explicitly.
    tree = ast.parse(models.read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == COMMON_MODULE
        for alias in node.names
        if alias.asname == alias.name
    }
    assert imported == common & _component_schemas(service)


def test_generated_class_names_carry_no_duplicate_number() -> None:
    spelled = {name for service in SERVICES for name in _component_schemas(service)}
    for path in [COMMON_MODELS, *(REPO_ROOT / GENERATED_DIR / s / "models.py" for s in SERVICES)]:
        numbered = [
            name for name in _classes(path) if re.search(r"\d$", name) and name not in spelled
        ]
        assert not numbered, f"{path.relative_to(REPO_ROOT)}: {numbered}"


def test_service_models_share_the_common_classes() -> None:
    from generated.auth import models as auth
    from generated.common import models as common
    from generated.inventory import models as inventory

    assert auth.Problem is common.Problem is inventory.Problem
    assert inventory.Health.model_fields["status"].annotation is common.HealthStatus


# ------------------------------------------------------------------------------ the pieces

COMMON: dict[str, Any] = {
    "components": {"schemas": {"Problem": {"type": "object"}, "Money": {"type": "string"}}}
}


def test_the_model_input_points_common_refs_at_the_common_document(tmp_path: Path) -> None:
    document: dict[str, Any] = {
        "paths": {"/x": {"get": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        "components": {
            "schemas": {
                "Problem": {"type": "object"},
                "Thing": {"properties": {"p": {"$ref": "#/components/schemas/Problem"}}},
            }
        },
    }
    names = common_schema_names("things", document, COMMON)
    assert names == ["Problem"]
    derived = service_model_input(document, names, tmp_path / "common.json")
    target = f"{(tmp_path / 'common.json').resolve().as_posix()}#/components/schemas/Problem"
    assert derived["components"]["schemas"] == {"Thing": {"properties": {"p": {"$ref": target}}}}
    assert derived["paths"]["/x"]["get"]["schema"] == {"$ref": target}
    assert document["components"]["schemas"]["Problem"] == {"type": "object"}  # not mutated


def test_a_service_schema_under_a_common_name_must_be_the_common_one() -> None:
    document = {"components": {"schemas": {"Problem": {"type": "string"}}}}
    with pytest.raises(CodegenError, match=r"'Problem' differs from the one in common\.yaml"):
        common_schema_names("things", document, COMMON)


SOURCE = """# header

from __future__ import annotations

from pydantic import BaseModel
from generated.common.models import Problem


class Thing(BaseModel):
    problem: Problem
"""


def test_the_common_import_becomes_an_explicit_reexport() -> None:
    result = reexport_common(SOURCE, ["Money", "Problem"], ["Money", "Problem"])
    assert "from generated.common.models import Problem\n" not in result
    assert (
        "from pydantic import BaseModel\n\n"
        "from generated.common.models import (  # the common components this service uses\n"
        "    Money as Money,\n    Problem as Problem,\n)\n"
    ) in result
    compile(result, "models.py", "exec")


@pytest.mark.parametrize(
    ("source", "names", "message"),
    [
        (SOURCE, ["Nope"], r"has no classes \['Nope'\]"),
        (SOURCE.replace("class Thing", "class Problem"), ["Problem"], "re-define common"),
        (SOURCE.replace("import Problem", "import Problem as Problem_1"), [], "clashes"),
    ],
)
def test_reexport_errors(source: str, names: list[str], message: str) -> None:
    with pytest.raises(CodegenError, match=message):
        reexport_common(source, names, ["Problem"])


def test_the_model_index_picks_the_class_of_a_schema(tmp_path: Path) -> None:
    metadata = tmp_path / "meta.json"
    models = [
        {"class_name": "Thing", "source_path": ["components", "schemas", "Thing"]},
        {"class_name": "UserRequest", "source_path": ["components", "schemas", "User"]},
        {"class_name": "UserResponse", "source_path": ["components", "schemas", "User"]},
        {"class_name": "Inline", "source_path": ["paths", "/x", "get"]},
    ]
    metadata.write_text(json.dumps({"version": 1, "models": models}))
    index = ModelIndex.read(metadata)
    assert index.model_for("Thing", "request", "t") == "Thing"
    assert index.model_for("User", "request", "t") == "UserRequest"
    assert index.model_for("User", "response", "t") == "UserResponse"
    with pytest.raises(CodegenError, match="'Nope' has no generated class"):
        index.model_for("Nope", "response", "GET /x")
