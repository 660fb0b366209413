"""`python -m tools.codegen [--check]`."""

from __future__ import annotations

import sys

from tools.codegen.runner import main

sys.exit(main())
