"""The external tools the generator drives: datamodel-code-generator and ruff.

Both run as subprocesses of the current interpreter (`python -m ...`), so that the versions
pinned in the project are the ones used, and each run starts from a clean state.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.codegen.common import CodegenError

# datamodel-code-generator 0.89 (pinned): deterministic output, no timestamp (STACK_NOTES.md).
DATAMODEL_OPTIONS: tuple[str, ...] = (
    "--preset",
    "standard-py311-20261027",
    "--read-only-write-only-model-type",
    "request-response",
    "--use-missing-sentinel",
    "--target-pydantic-version",
    "2.14",
)

# Same settings as the project's ruff configuration (pyproject.toml), given explicitly so
# that the output does not depend on where the generator runs.
RUFF_FORMAT_OPTIONS: tuple[str, ...] = (
    "--isolated",
    "--line-length",
    "100",
    "--target-version",
    "py311",
    "--quiet",
)


@dataclass(frozen=True)
class ModelJob:
    """One datamodel-code-generator run: `source` (a file) → `output` (a Python module)."""

    source: Path
    input_file_type: str  # "openapi" | "jsonschema"
    output: Path
    header: str
    options: tuple[str, ...] = ()  # after DATAMODEL_OPTIONS
    metadata: Path | None = None  # --emit-model-metadata: which class came from which schema


def _environment() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONWARNINGS"] = "ignore"  # keep library deprecation chatter off stderr
    environment["NO_COLOR"] = "1"
    return environment


def run_datamodel(jobs: Sequence[ModelJob]) -> None:
    """Run every job (in parallel); raise CodegenError naming each failure."""
    running: list[tuple[ModelJob, subprocess.Popen[str]]] = []
    for job in jobs:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "datamodel_code_generator",
            "--input",
            str(job.source),
            "--input-file-type",
            job.input_file_type,
            "--output",
            str(job.output),
            "--custom-file-header",
            job.header,
            *DATAMODEL_OPTIONS,
            *job.options,
        ]
        if job.metadata is not None:
            command += ["--emit-model-metadata", str(job.metadata)]
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(),
        )
        running.append((job, process))
    failures: list[str] = []
    for job, process in running:
        stdout, stderr = process.communicate()
        written = job.output.is_file() and (job.metadata is None or job.metadata.is_file())
        if process.returncode != 0 or not written:
            failures.append(
                f"datamodel-codegen failed on {job.source.name} (exit {process.returncode}):\n"
                f"{stderr.strip() or stdout.strip()}"
            )
    if failures:
        raise CodegenError("\n".join(failures))


def ruff_format(paths: Sequence[Path]) -> None:
    """Format Python files in place with the pinned ruff."""
    if not paths:
        return
    command = [sys.executable, "-m", "ruff", "format", *RUFF_FORMAT_OPTIONS, *map(str, paths)]
    completed = subprocess.run(
        command, capture_output=True, text=True, env=_environment(), check=False
    )
    if completed.returncode != 0:
        raise CodegenError(
            "ruff format failed (is the dev extra installed? pip install -e '.[dev]'):\n"
            + (completed.stderr.strip() or completed.stdout.strip())
        )
