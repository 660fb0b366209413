from services.platform.persistence.alembic_env import run_migrations
from tests.integration.kit_service import KitDemoTable

run_migrations(KitDemoTable.metadata)
