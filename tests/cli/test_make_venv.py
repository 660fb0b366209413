"""`make`'s venv (tools/dev/make_venv.py): made by a supported interpreter, made again when another
interpreter made it, never left half-installed."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.processes import ROOT

SCRIPT = ROOT / "tools" / "dev" / "make_venv.py"


def _load_script() -> ModuleType:
    """tools/dev holds scripts, not a package: load the one under test by its path."""
    spec = importlib.util.spec_from_file_location("make_venv_under_test", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


venv_script = _load_script()

VERSION = platform.python_version()


def fake_venv(path: Path, version: str, home: str | None = None, stamp: str | None = None) -> Path:
    path.mkdir()
    (path / "pyvenv.cfg").write_text(
        f"home = {home or Path(sys.executable).parent}\nversion = {version}\n"
    )
    if stamp is not None:
        (path / venv_script.STAMP).write_text(stamp + "\n")
    return path


def dry_run(venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", str(venv)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_venv_made_by_another_python_is_made_again(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "venv", "3.9.18", stamp="3.9.18")
    result = dry_run(venv)
    assert result.returncode == 0, result.stderr
    assert f"was made by Python 3.9.18, this is Python {VERSION}: removing it" in result.stdout
    assert "would install" in result.stdout
    assert (venv / "pyvenv.cfg").exists()  # a dry run changes nothing


def test_a_venv_whose_interpreter_is_gone_is_made_again(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "venv", VERSION, home=str(tmp_path / "gone"), stamp=VERSION)
    assert "made by an interpreter that is gone" in dry_run(venv).stdout


def test_an_installed_venv_of_this_python_is_left_alone_quietly(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "venv", VERSION, stamp=VERSION)
    result = dry_run(venv)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_stamp_older_than_the_lock_means_installing_again(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "venv", VERSION, stamp=VERSION)
    long_ago = time.time() - 10 * 365 * 86400
    os.utime(venv / venv_script.STAMP, (long_ago, long_ago))
    assert "would install" in dry_run(venv).stdout


def test_the_supported_versions_are_read_from_pyproject() -> None:
    lowest, beyond = venv_script.supported_range(ROOT / "pyproject.toml")
    assert (lowest, beyond) == ((3, 11), (3, 14))
    assert venv_script.supported_names(lowest, beyond) == ["python3.13", "python3.12", "python3.11"]
    venv_script.check_interpreter((3, 12), lowest, beyond)
    for unsupported in ((3, 10), (3, 14)):
        with pytest.raises(venv_script.VenvError, match="is not supported: this project needs"):
            venv_script.check_interpreter(unsupported, lowest, beyond)


def project_copy(tmp_path: Path, requires_python: str | None = None) -> Path:
    """What `make venv` reads — the Makefile, the script, pyproject.toml and the lock — in a
    folder of its own."""
    copy = tmp_path / "project"
    (copy / "tools" / "dev").mkdir(parents=True)
    for name in ("Makefile", "requirements.lock", "pyproject.toml", "tools/dev/make_venv.py"):
        shutil.copy(ROOT / name, copy / name)
    if requires_python is not None:
        pyproject = copy / "pyproject.toml"
        text = pyproject.read_text().replace(
            'requires-python = ">=3.11,<3.14"', f'requires-python = "{requires_python}"'
        )
        pyproject.write_text(text)
    return copy


def make_venv(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "venv", f"PYTHON={sys.executable}"],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_make_refuses_an_unsupported_python_before_creating_anything(tmp_path: Path) -> None:
    project = project_copy(tmp_path, requires_python=">=3.99,<3.100")
    result = make_venv(project)
    assert result.returncode != 0
    assert f"install: Python {sys.version_info[0]}.{sys.version_info[1]} (" in result.stderr
    assert "is not supported: this project needs 3.99 to 3.99" in result.stderr
    assert not (project / ".venv").exists()


def test_a_failed_install_step_leaves_no_venv_behind(tmp_path: Path) -> None:
    project = project_copy(tmp_path)
    nowhere = tmp_path / "no-packages"
    nowhere.mkdir()
    # No index and an empty wheel folder: the pip step fails right after the venv is made.
    result = make_venv(project, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(nowhere))
    assert result.returncode != 0
    assert "install: [1/3] .venv with Python" in result.stdout
    assert "install: [2/3] pip" in result.stdout
    assert ".venv removed, so nothing half-installed looks ready" in result.stderr
    assert not (project / ".venv").exists()
