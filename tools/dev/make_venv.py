"""`make install`'s Python part: the virtual environment, made by a supported interpreter and
never left half-made.

    python3 tools/dev/make_venv.py .venv            # what make runs (PYTHON=python3.12: another)
    python3 tools/dev/make_venv.py --dry-run .venv  # says what it would do, changes nothing

* The interpreter running this script must be one `requires-python` in pyproject.toml allows;
  otherwise it stops before touching anything, naming the supported interpreters on PATH.
* A venv made by another interpreter (its `pyvenv.cfg` names another X.Y, or a base
  interpreter that no longer exists) is removed and made again: pip would otherwise mix two
  Pythons' packages in one venv.
* The venv is up to date when its stamp names this interpreter and is newer than
  pyproject.toml and requirements.lock; then nothing is printed.
* Each step prints one line; if one fails, the venv is removed, so nothing half-installed ever
  looks ready.

Standard library only, and syntax old interpreters still parse: it must be able to refuse them.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIP_VERSION = "25.3"
STAMP = ".installed"
_REQUIRES = re.compile(r'^requires-python\s*=\s*"([^"]+)"', re.MULTILINE)


class VenvError(Exception):
    """The interpreter cannot build this project's venv; the message says what to do."""


def supported_range(pyproject: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """(lowest, first unsupported) X.Y from `requires-python = ">=3.11,<3.14"`."""
    found = _REQUIRES.search(pyproject.read_text())
    bounds = dict(
        (op, (int(major), int(minor)))
        for op, major, minor in re.findall(
            r"(>=|<)\s*(\d+)\.(\d+)", found.group(1) if found else ""
        )
    )
    if ">=" not in bounds or "<" not in bounds:
        raise VenvError(f'{pyproject}: requires-python must read like ">=3.11,<3.14"')
    return bounds[">="], bounds["<"]


def supported_names(lowest: tuple[int, int], beyond: tuple[int, int]) -> list[str]:
    """python3.X names of every supported version, newest first."""
    return [f"python{lowest[0]}.{minor}" for minor in range(beyond[1] - 1, lowest[1] - 1, -1)]


def check_interpreter(
    version: tuple[int, int], lowest: tuple[int, int], beyond: tuple[int, int]
) -> None:
    if lowest <= version < beyond:
        return
    names = supported_names(lowest, beyond)
    on_path = [name for name in names if shutil.which(name)]
    hint = (
        f"found {', '.join(on_path)} on PATH: run e.g. `make up PYTHON={on_path[0]}`"
        if on_path
        else f"install one of {', '.join(names)} and run e.g. `make up PYTHON={names[0]}`"
    )
    raise VenvError(
        f"Python {version[0]}.{version[1]} ({sys.executable}) is not supported: this project "
        f"needs {lowest[0]}.{lowest[1]} to {beyond[0]}.{beyond[1] - 1}; {hint}."
    )


def venv_python(venv: Path) -> tuple[str | None, str | None]:
    """(X.Y.Z version, base interpreter directory) that `venv/pyvenv.cfg` names."""
    config = venv / "pyvenv.cfg"
    if not config.is_file():
        return None, None
    values = {}
    for line in config.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    version = values.get("version") or values.get("version_info")  # venv / uv spell it so
    return version, values.get("home")


def foreign_reason(venv: Path, version: str) -> str | None:
    """Why an existing `venv` was not made by this interpreter, or None when it was."""
    made_by, home = venv_python(venv)
    if made_by is None:
        return f"{venv} has no readable pyvenv.cfg"
    if made_by.split(".")[:2] != version.split(".")[:2]:
        return f"{venv} was made by Python {made_by}, this is Python {version}"
    if home is not None and not Path(home).is_dir():
        return f"{venv} was made by an interpreter that is gone ({home})"
    return None


def up_to_date(venv: Path, version: str) -> bool:
    stamp = venv / STAMP
    if not stamp.is_file() or stamp.read_text().strip() != version:
        return False
    newest_input = max(
        (ROOT / name).stat().st_mtime for name in ("pyproject.toml", "requirements.lock")
    )
    return stamp.stat().st_mtime > newest_input


def say(message: str) -> None:
    print(f"install: {message}", flush=True)


def run_step(number: int, total: int, what: str, command: list[str]) -> None:
    say(f"[{number}/{total}] {what}")
    subprocess.run(command, check=True, cwd=ROOT)


def ensure(venv: Path, dry_run: bool) -> None:
    version = platform.python_version()
    check_interpreter(sys.version_info[:2], *supported_range(ROOT / "pyproject.toml"))
    reason = foreign_reason(venv, version) if venv.exists() else None
    if reason is None and venv.exists() and up_to_date(venv, version):
        return
    if reason is not None:
        say(f"{reason}: removing it to make it again")
    if dry_run:
        say(f"would install {venv} with Python {version} ({sys.executable})")
        return
    if reason is not None:
        shutil.rmtree(venv)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    steps = [
        (f"{venv} with Python {version} ({sys.executable})", [sys.executable, "-m", "venv"]),
        (f"pip {PIP_VERSION}", [*pip, "--upgrade", f"pip=={PIP_VERSION}"]),
        (
            "the pinned packages of requirements.lock and this project (a minute or two)",
            [*pip, "-c", "requirements.lock", "-e", ".[dev]"],
        ),
    ]
    steps[0][1].append(str(venv))
    try:
        if venv.exists():
            (venv / STAMP).unlink(missing_ok=True)  # not ready until every step has passed
        for number, (what, command) in enumerate(steps, start=1):
            run_step(number, len(steps), what, command)
    except (subprocess.CalledProcessError, OSError) as error:
        shutil.rmtree(venv, ignore_errors=True)
        raise VenvError(f"{error}; {venv} removed, so nothing half-installed looks ready") from None
    (venv / STAMP).write_text(version + "\n")
    say(f"{venv} ready (Python {version})")


def main() -> int:
    parser = argparse.ArgumentParser(description="Make the venv make needs, or say why not.")
    parser.add_argument("venv", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="say what would be done")
    args = parser.parse_args()
    try:
        ensure(args.venv, args.dry_run)
    except VenvError as refused:
        print(f"install: {refused}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
