"""The kit fixture service's generated files (kit.openapi.json, kit_models.py,
kit_operations.py) are exactly what the real codegen makes of kit.yaml, as `erp codegen --check`
checks generated/ — nobody writes an operation table by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.platform.fixtures import codegen


def test_the_generated_fixture_files_are_up_to_date(tmp_path: Path) -> None:
    stale = codegen.stale(tmp_path)
    assert stale == [], f"{stale} are stale: run python -m tests.platform.fixtures.codegen"


def test_an_edited_generated_file_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    committed = tmp_path / "committed"
    committed.mkdir()
    for name in codegen.GENERATED:
        shutil.copyfile(codegen.FIXTURES / name, committed / name)
    with (committed / codegen.OPERATIONS_FILE).open("a", encoding="utf-8") as edited:
        edited.write("# edited by hand\n")
    (committed / codegen.SPEC_FILE).unlink()
    monkeypatch.setattr(codegen, "FIXTURES", committed)
    out = tmp_path / "out"
    out.mkdir()
    assert codegen.stale(out) == [codegen.SPEC_FILE, codegen.OPERATIONS_FILE]
