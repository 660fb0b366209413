from services.platform.persistence.alembic_env import run_migrations
from tests.platform.kit_service import KitDemoTable

run_migrations(KitDemoTable.metadata)
