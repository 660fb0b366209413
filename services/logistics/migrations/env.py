from services.logistics.tables import metadata
from services.platform import run_migrations

run_migrations(metadata)
