"""The code generator: `generated/` and `deploy/rabbitmq/definitions.json` from `specs/`.

`run(check=False)` regenerates; `run(check=True)` only verifies (exit code 1 on drift).
The command line is `erp codegen [--check]` or `python -m tools.codegen [--check]`.
"""

from __future__ import annotations

from tools.codegen.common import CodegenError
from tools.codegen.runner import REPO_ROOT, generate, run

__all__ = ["REPO_ROOT", "CodegenError", "generate", "run"]
