from services.platform import run_migrations
from services.sales.tables import metadata

run_migrations(metadata)
