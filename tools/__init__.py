"""The platform's tools: `erp` (cli.py), the generator (codegen/), the dev scripts (dev/)."""

import warnings

# connexion imports starlette's test client, which warns about httpx on every import: not ours.
# Set here, before `erp` imports the kit (and with it connexion).
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
