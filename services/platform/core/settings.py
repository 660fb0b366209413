"""Configuration of one service, read from `ERP_*` environment variables and validated once.

Where each URL comes from (first match wins):

* database: `ERP_<SERVICE>_DATABASE_URL` (a full URL, used as it is) → `ERP_DATABASE_URL` (a
  PostgreSQL *server* URL; the service's database is `<service>_db` on it) → embedded:
  `sqlite+aiosqlite:///<ERP_DATA_DIR>/<service>.db` → the local default server
  `postgresql://postgres@127.0.0.1:5432/<service>_db`.
* broker / Redis: `ERP_AMQP_URL` / `ERP_REDIS_URL` → embedded: `None` (in-process broker,
  fakeredis) → the local defaults `amqp://guest:guest@127.0.0.1:5672/`, `redis://127.0.0.1:6379/0`.

"Embedded" is `ERP_EMBEDDED=1`. `load_settings` never probes the network, so a service always
starts the same way for the same environment; every `erp` command that touches data calls
`choose_mode` first (one rule, and it says which mode and why) and sets `ERP_EMBEDDED=1` when
nothing is configured and no server answers on the default ports. An explicitly configured URL
always wins, also in embedded mode.

Empty variables count as unset (compose files often pass `VAR=` through).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_SERVER = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_AUTH_URL = "http://127.0.0.1:8001"
DEFAULT_INVENTORY_URL = "http://127.0.0.1:8002"
DEFAULT_RETRY_DELAYS = (1.0, 2.0, 4.0)
DEFAULT_PORTS = {"postgresql": 5432, "rabbitmq": 5672, "redis": 6379}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "console")
# Browser origins embedded mode allows when ERP_CORS_ORIGINS is unset: the dev servers of the
# usual front-end tool chains (Vite 5173, create-react-app/Next 3000, Angular 4200, 8080).
DEV_CORS_ORIGINS = tuple(
    f"http://{host}:{port}"
    for host in ("localhost", "127.0.0.1")
    for port in (3000, 4200, 5173, 8080)
)

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg"}
_SQLITE_DRIVERS = {"sqlite", "sqlite+aiosqlite"}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class WarehouseAddress:
    """Where logistics ships from (every shipment's origin), `ERP_WAREHOUSE_*`: STREET, NUMBER,
    COMPLEMENT, NEIGHBORHOOD, CITY, STATE (UF), ZIP_CODE (CEP `NNNNN-NNN`), COUNTRY."""

    street: str = "Rodovia Anhanguera"
    number: str = "km 104"
    complement: str | None = "Galpão 3"
    neighborhood: str = "Distrito Industrial"
    city: str = "Campinas"
    state: str = "SP"
    zip_code: str = "13069-000"
    country: str = "BR"


# (field, longest, pattern) of each warehouse variable, as the events' Address schema has them.
_WAREHOUSE_FIELDS = (
    ("street", 255, None),
    ("number", 20, None),
    ("complement", 255, None),
    ("neighborhood", 255, None),
    ("city", 255, None),
    ("state", 2, re.compile(r"^[A-Z]{2}$")),
    ("zip_code", 9, re.compile(r"^\d{5}-\d{3}$")),
    ("country", 2, re.compile(r"^[A-Z]{2}$")),
)


class SettingsError(Exception):
    """Invalid configuration; `errors` holds one "VARIABLE: what is wrong" line per bad value."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("invalid configuration:\n" + "\n".join(f"  {e}" for e in errors))


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    read_database_url: str | None
    amqp_url: str | None  # None = embedded in-process broker
    redis_url: str | None  # None = embedded fakeredis
    redis_prefix: str
    auth_url: str
    port: int
    retry_delays: tuple[float, ...]
    log_level: str
    embedded: bool
    jwt_issuer: str = "erp-auth"
    jwt_audience: str = "erp"
    data_dir: Path = Path(".data")
    # Check every success response against the operation's schema (a 500 when it breaks the
    # contract). On by default: it costs microseconds per response (make bench measures it).
    validate_responses: bool = True
    # Request bodies larger than this are refused with 413 before they are read any further.
    max_body_bytes: int = 1 << 20
    # Browser origins allowed to call the API (CORS); "*" allows any, () none.
    cors_origins: tuple[str, ...] = ()
    # "json" or "console"; None: console on a terminal, JSON otherwise (core/logs.py).
    log_format: str | None = None
    # A request line plus header fields larger than this is refused with 431 as it streams in.
    max_header_bytes: int = 16 << 10
    # Addresses (IPs or CIDR networks) whose X-Forwarded-For / X-Forwarded-Proto are believed.
    # Empty: nobody's, so a client can never choose the address its rate limits count against.
    trusted_proxies: tuple[str, ...] = ()
    # Where inventory's API answers (sales asks it for a product its replica lacks). Embedded
    # `erp up` serves every service on its default port, so the default reaches it there too.
    inventory_url: str = DEFAULT_INVENTORY_URL
    # The origin of logistics' shipments.
    warehouse_address: WarehouseAddress = WarehouseAddress()


def service_variable(service: str, name: str) -> str:
    """`ERP_<SERVICE>_<NAME>`, e.g. ("auth", "DATABASE_URL") -> "ERP_AUTH_DATABASE_URL"."""
    return f"ERP_{service.upper().replace('-', '_')}_{name}"


def load_settings(service: str, default_port: int, env: Mapping[str, str] = os.environ) -> Settings:
    """Read and validate the settings of `service`; raise SettingsError listing every bad value."""
    if not _SERVICE_NAME.match(service):
        raise SettingsError([f"service name {service!r}: expected lower-case letters and digits"])
    reader = SettingsReader(env)
    embedded = reader.flag("ERP_EMBEDDED", default=False)
    data_dir = Path(reader.get("ERP_DATA_DIR") or ".data")

    database_url = reader.database(
        service_variable(service, "DATABASE_URL"), "ERP_DATABASE_URL", f"{service}_db"
    )
    if database_url is None:
        database_url = (
            f"sqlite+aiosqlite:///{data_dir / f'{service}.db'}"
            if embedded
            else _service_database(DEFAULT_DATABASE_SERVER, f"{service}_db")
        )
    read_database_url = reader.database(
        service_variable(service, "READ_DATABASE_URL"), "ERP_READ_DATABASE_URL", f"{service}_db"
    )
    amqp_url = reader.url("ERP_AMQP_URL", ("amqp", "amqps"))
    redis_url = reader.url("ERP_REDIS_URL", ("redis", "rediss", "unix"))
    if not embedded:
        amqp_url = amqp_url or DEFAULT_AMQP_URL
        redis_url = redis_url or DEFAULT_REDIS_URL

    port_variable = service_variable(service, "PORT")
    port = reader.port(port_variable) if reader.get(port_variable) else reader.port("PORT")
    settings = Settings(
        service=service,
        database_url=database_url,
        read_database_url=read_database_url,
        amqp_url=amqp_url,
        redis_url=redis_url,
        redis_prefix=reader.redis_prefix("ERP_REDIS_PREFIX"),
        auth_url=reader.url("ERP_AUTH_URL", ("http", "https")) or DEFAULT_AUTH_URL,
        port=port or default_port,
        retry_delays=reader.delays("ERP_RETRY_DELAYS"),
        log_level=reader.log_level("ERP_LOG_LEVEL"),
        embedded=embedded,
        jwt_issuer=reader.text("ERP_JWT_ISSUER", "erp-auth"),
        jwt_audience=reader.text("ERP_JWT_AUDIENCE", "erp"),
        data_dir=data_dir,
        validate_responses=reader.flag("ERP_VALIDATE_RESPONSES", default=True),
        max_body_bytes=reader.size("ERP_MAX_BODY_BYTES", default=1 << 20),
        cors_origins=reader.origins("ERP_CORS_ORIGINS", DEV_CORS_ORIGINS if embedded else ()),
        log_format=reader.log_format("ERP_LOG_FORMAT"),
        max_header_bytes=reader.size("ERP_MAX_HEADER_BYTES", default=16 << 10),
        trusted_proxies=reader.networks("ERP_TRUSTED_PROXIES"),
        inventory_url=reader.url("ERP_INVENTORY_URL", ("http", "https")) or DEFAULT_INVENTORY_URL,
        warehouse_address=reader.warehouse("ERP_WAREHOUSE_"),
    )
    if reader.errors:
        raise SettingsError(reader.errors)
    return settings


@dataclass(frozen=True)
class Mode:
    """Embedded or real servers, and why: what every `erp` command says before it acts."""

    embedded: bool
    reason: str


def choose_mode(env: Mapping[str, str] = os.environ, timeout: float = 0.3) -> Mode:
    """The one rule every `erp` command follows (see `detect_embedded`), with its reason."""
    explicit = (env.get("ERP_EMBEDDED") or "").strip().lower()
    if explicit in _TRUE | _FALSE:
        return Mode(explicit in _TRUE, f"ERP_EMBEDDED={env['ERP_EMBEDDED'].strip()}")
    configured = sorted(
        key
        for key, value in env.items()
        if value.strip()
        and key.startswith("ERP_")
        and key.endswith(("DATABASE_URL", "AMQP_URL", "REDIS_URL"))
    )
    if configured:
        return Mode(False, f"{', '.join(configured)} set")
    with ThreadPoolExecutor(max_workers=len(DEFAULT_PORTS)) as pool:
        reachable = dict(
            zip(
                DEFAULT_PORTS,
                pool.map(lambda port: _accepts("127.0.0.1", port, timeout), DEFAULT_PORTS.values()),
                strict=True,
            )
        )
    listening = ", ".join(f"{name} :{DEFAULT_PORTS[name]}" for name, up in reachable.items() if up)
    if all(reachable.values()):
        return Mode(False, f"no server URL set; local {listening} answer")
    missing = ", ".join(
        f"{name} :{DEFAULT_PORTS[name]}" for name, up in reachable.items() if not up
    )
    return Mode(True, f"no server URL set and nothing answers on 127.0.0.1 for {missing}")


def detect_embedded(env: Mapping[str, str] = os.environ, timeout: float = 0.3) -> bool:
    """Whether `erp` commands should run embedded.

    `ERP_EMBEDDED` decides when set. Otherwise: any configured server URL means real servers;
    with none configured, real servers are used only when PostgreSQL, RabbitMQ and Redis all
    accept TCP on 127.0.0.1 at their default ports. A partial set (say, only a local Redis)
    runs embedded, because a half-local platform would fail at start-up.
    """
    return choose_mode(env, timeout).embedded


def describe_servers(settings: Settings, *, with_database: bool = True) -> str:
    """Where `settings` point, passwords hidden: "PostgreSQL 127.0.0.1:5432/auth_db, ..." or,
    embedded, the SQLite file and the in-process stand-ins; `with_database=False` for a
    service that has none (notification) leaves the database out."""

    def where(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port}{parts.path}" if parts.hostname else url

    database = make_url(settings.database_url)
    if database.drivername.startswith("sqlite"):
        store = f"SQLite {database.database}"
    else:
        store = f"PostgreSQL {database.host}:{database.port or 5432}/{database.database}"
    broker = f"RabbitMQ {where(settings.amqp_url)}" if settings.amqp_url else "in-process broker"
    redis = f"Redis {where(settings.redis_url)}" if settings.redis_url else "in-process Redis"
    return ", ".join([store, broker, redis] if with_database else [broker, redis])


def _accepts(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _is_origin(value: str) -> bool:
    """What a browser sends as `Origin`: scheme, host and optional port, nothing more."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not (parts.path or parts.query or parts.fragment or parts.username)
    )


def _service_database(server_url: str, database: str) -> str:
    url = _with_async_driver(make_url(server_url)).set(database=database)
    return url.render_as_string(hide_password=False)


def _with_async_driver(url: URL) -> URL:
    if url.drivername in _POSTGRES_DRIVERS:
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in _SQLITE_DRIVERS:
        return url.set(drivername="sqlite+aiosqlite")
    return url


class SettingsReader:
    """Reads variables, collecting one error line per bad value instead of stopping at the first;
    `raise SettingsError(reader.errors)` once all are read. A service with variables of its own
    (`ERP_NOTIFICATION_*`) reads them with `prefix`, and names them without it."""

    def __init__(self, env: Mapping[str, str], prefix: str = "") -> None:
        self.env = env
        self.prefix = prefix
        self.errors: list[str] = []

    def get(self, name: str) -> str | None:
        value = self.env.get(self.prefix + name, "").strip()
        return value or None

    def fail(self, name: str, problem: str) -> None:
        self.errors.append(f"{self.prefix}{name}: {problem}")

    def number(self, name: str, default: int, low: int, high: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        if not value.isdigit() or not low <= int(value) <= high:
            self.fail(name, f"expected a whole number from {low} to {high}")
            return default
        return int(value)

    def flag(self, name: str, *, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        self.fail(name, f"expected 1/0 (or true/false), got {value!r}")
        return default

    def text(self, name: str, default: str) -> str:
        return self.get(name) or default

    def warehouse(self, prefix: str) -> WarehouseAddress:
        """The address the `<prefix><FIELD>` variables give, each unset one its default."""
        given: dict[str, str] = {}
        for field, longest, pattern in _WAREHOUSE_FIELDS:
            name = f"{prefix}{field.upper()}"
            value = self.get(name)
            if value is None:
                continue
            if len(value) > longest:
                self.fail(name, f"expected at most {longest} characters")
            elif pattern is not None and not pattern.match(value):
                self.fail(name, f"expected to match {pattern.pattern}")
            else:
                given[field] = value
        return WarehouseAddress(**given)

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as error:
            self.fail(name, f"not a valid URL ({error})")
            return None
        if parts.scheme not in schemes:
            self.fail(name, f"scheme must be one of {', '.join(schemes)}, got {value!r}")
            return None
        if parts.scheme != "unix" and not parts.hostname:
            self.fail(name, f"URL has no host: {value!r}")
            return None
        return value

    def database(self, override: str, server: str, database: str) -> str | None:
        """A full per-service URL, else a server URL with the service's database name."""
        if self.get(override) is not None:
            full = self._database_url(override, allow_sqlite=True)
            return full.render_as_string(hide_password=False) if full else None
        base = self._database_url(server, allow_sqlite=False)
        if base is None:
            return None
        return base.set(database=database).render_as_string(hide_password=False)

    def _database_url(self, name: str, *, allow_sqlite: bool) -> URL | None:
        value = self.get(name)
        if value is None:
            return None
        try:
            url = make_url(value)
            url.port  # noqa: B018 - a non-numeric port only fails on access
        except (ArgumentError, ValueError) as error:
            self.fail(name, f"not a valid database URL ({error})")
            return None
        allowed = _POSTGRES_DRIVERS | (_SQLITE_DRIVERS if allow_sqlite else set())
        if url.drivername not in allowed:
            expected = "postgresql:// or sqlite:///" if allow_sqlite else "postgresql://"
            self.fail(name, f"expected a {expected} URL, got scheme {url.drivername!r}")
            return None
        if url.drivername in _POSTGRES_DRIVERS and not url.host:
            self.fail(name, f"PostgreSQL URL has no host: {value!r}")
            return None
        return _with_async_driver(url)

    def port(self, name: str) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        if not value.isdigit() or not 0 < int(value) < 65536:
            self.fail(name, f"expected a TCP port number 1-65535, got {value!r}")
            return None
        return int(value)

    def size(self, name: str, *, default: int) -> int:
        value = self.get(name)
        if value is None:
            return default
        if not value.isdigit() or not 0 < int(value) <= 1 << 30:
            self.fail(name, f"expected a number of bytes 1-{1 << 30}, got {value!r}")
            return default
        return int(value)

    def networks(self, name: str) -> tuple[str, ...]:
        """Comma-separated IP addresses or CIDR networks (`10.0.0.5,10.1.0.0/16`)."""
        value = self.get(name)
        if value is None:
            return ()
        items = tuple(item.strip() for item in value.split(","))
        try:
            for item in items:
                ipaddress.ip_network(item, strict=False)
        except ValueError:
            self.fail(name, f"expected comma-separated IPs or CIDR networks, got {value!r}")
            return ()
        return items

    def delays(self, name: str) -> tuple[float, ...]:
        value = self.get(name)
        if value is None:
            return DEFAULT_RETRY_DELAYS
        try:
            delays = tuple(float(item) for item in value.split(","))
        except ValueError:
            delays = ()
        if not delays or any(not 0 <= delay < 3600 for delay in delays):
            self.fail(name, f"expected comma-separated seconds like 1,2,4 (0-3600), got {value!r}")
            return DEFAULT_RETRY_DELAYS
        return delays

    def log_level(self, name: str) -> str:
        value = (self.get(name) or "INFO").upper()
        if value not in LOG_LEVELS:
            self.fail(name, f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
            return "INFO"
        return value

    def origins(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        """Comma-separated `scheme://host[:port]` origins, or `*` alone."""
        value = self.get(name)
        if value is None:
            return default
        origins = tuple(item.strip().rstrip("/") for item in value.split(",") if item.strip())
        if origins == ("*",):
            return origins
        bad = [origin for origin in origins if not _is_origin(origin)]
        if bad or not origins:
            self.fail(
                name,
                "expected comma-separated origins like https://app.example.com,"
                f"http://localhost:5173 (or * alone), got {value!r}",
            )
            return default
        return origins

    def log_format(self, name: str) -> str | None:
        value = self.get(name)
        if value is None:
            return None
        if value.lower() not in LOG_FORMATS:
            self.fail(name, f"expected one of {', '.join(LOG_FORMATS)}, got {value!r}")
            return None
        return value.lower()

    def redis_prefix(self, name: str) -> str:
        value = self.get(name) or "erp:"
        if any(char.isspace() for char in value):
            self.fail(name, f"must not contain white space, got {value!r}")
            return "erp:"
        return value
