"""`erp` — the one command line of the platform.

Every command that touches data (serve, up, users, demo, dlq, mail) picks embedded mode or the real
servers by one rule (`choose_mode`: ERP_EMBEDDED, else any server URL set, else whether
PostgreSQL, RabbitMQ and Redis answer on their default local ports) and says on stderr which it
picked and why, before it acts. A server it cannot reach is one line naming it, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from functools import cache, partial
from typing import Any, TypeVar

import aiormq
import psycopg
import redis.exceptions
import sqlalchemy.exc
import uvicorn

from generated.topology import TOPOLOGY
from services.platform.core.settings import Mode, Settings, choose_mode, describe_servers
from services.registry import DEMO_DATA, SERVICES, load_definition, with_demo_data

T = TypeVar("T")

# What a server that is down or misaddressed raises, from each client library.
UNREACHABLE = (
    psycopg.OperationalError,
    sqlalchemy.exc.OperationalError,
    aiormq.exceptions.AMQPConnectionError,
    redis.exceptions.ConnectionError,
    ConnectionError,
    TimeoutError,
)
EXIT_REFUSED = 2  # the command cannot do what was asked (bad input, no such thing, no server)


def _demo_login() -> str:
    # Imported here: auth's domain (and its password list) is no business of `erp serve inventory`.
    from services.auth.demo import DEMO_USER_EMAIL, DEMO_USER_PASSWORD

    return f"{DEMO_USER_EMAIL} / {DEMO_USER_PASSWORD}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    code: int = args.run(args)
    sys.exit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="erp", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    codegen = commands.add_parser("codegen", help="generate models, stubs and topology from specs")
    codegen.add_argument("--check", action="store_true", help="fail when generated/ is stale")
    codegen.set_defaults(run=_codegen)

    serve = commands.add_parser("serve", help="run one service (HTTP, consumers, outbox relay)")
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=None)
    serve.set_defaults(run=_serve)

    up = commands.add_parser("up", help="run every service in one process")
    up.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    up.set_defaults(run=_up)

    users = commands.add_parser("users", help="manage users").add_subparsers(
        required=True, metavar="ACTION"
    )
    admin = users.add_parser("create-admin", help="create (or promote) a super-admin")
    admin.add_argument("email")
    admin.add_argument("--password", required=True)
    admin.add_argument("--name", default="Administrator")
    admin.set_defaults(run=_create_admin)

    demo = commands.add_parser("demo", help="the demo data set the docs' examples use")
    demo_actions = demo.add_subparsers(required=True, metavar="ACTION")
    demo_seed = demo_actions.add_parser(
        "seed", help="load it (idempotent; embedded `erp up` does it by itself)"
    )
    demo_seed.add_argument("service", nargs="*", help="these services; all when omitted")
    demo_seed.set_defaults(run=_demo_seed)

    dlq = commands.add_parser("dlq", help="inspect and replay dead letters").add_subparsers(
        required=True, metavar="ACTION"
    )
    dlq_list = dlq.add_parser("list", help="list the dead letters of a service")
    dlq_list.add_argument("service")
    dlq_list.add_argument("--limit", type=int, default=50)
    dlq_list.set_defaults(run=_dlq_list)
    dlq_show = dlq.add_parser("show", help="show one dead letter, whole")
    dlq_show.add_argument("service")
    dlq_show.add_argument("message_id")
    dlq_show.set_defaults(run=_dlq_show)
    dlq_replay = dlq.add_parser("replay", help="publish dead letters to where they came from")
    dlq_replay.add_argument("service")
    dlq_replay.add_argument("message_id", nargs="?", help="one message; all when omitted")
    dlq_replay.set_defaults(run=_dlq_replay)
    mail = commands.add_parser(
        "mail", help="the e-mails notification kept (no SMTP server configured)"
    ).add_subparsers(dest="action", required=True)
    mail_list = mail.add_parser("list", help="list the kept e-mails, newest first")
    mail_list.set_defaults(run=_mail_list)
    mail_show = mail.add_parser("show", help="show one kept e-mail, whole")
    mail_show.add_argument("notification_id")
    mail_show.set_defaults(run=_mail_show)
    return parser


def _codegen(args: argparse.Namespace) -> int:
    from tools.codegen import run

    return run(check=args.check)


def _settings(service: str, default_port: int) -> Settings:
    from services.platform.core.settings import SettingsError, load_settings

    try:
        return load_settings(service, default_port)
    except SettingsError as error:
        raise SystemExit(f"erp: invalid configuration\n{error}") from None


@cache  # once per command: the services it touches all run in the mode picked first
def _choose_mode() -> Mode:
    """Embedded or servers, by the one rule; ERP_EMBEDDED is set so every service loads the
    same settings."""
    mode = choose_mode(os.environ)
    os.environ["ERP_EMBEDDED"] = "1" if mode.embedded else "0"
    return mode


def _say_mode(mode: Mode, where: str) -> None:
    how = "running embedded" if mode.embedded else "running on the servers"
    print(f"erp: {how} ({mode.reason}) — {where}", file=sys.stderr, flush=True)


def _settings_in_mode(service: str) -> Settings:
    """The service's settings in the mode the rule picks, after saying which it is."""
    mode = _choose_mode()
    definition = load_definition(service)
    settings = _settings(definition.name, definition.default_port)
    _say_mode(mode, describe_servers(settings, with_database=definition.has_database))
    return settings


def _reaching(settings: Settings, run: Callable[[], T]) -> T:
    """`run()`, with a server that does not answer turned into one clear line."""
    try:
        return run()
    except UNREACHABLE as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise SystemExit(
            f"erp: cannot reach the servers ({describe_servers(settings)}): {reason}\n"
            "Start them (make servers), point the ERP_*_URL variables at them, or run "
            "embedded with ERP_EMBEDDED=1."
        ) from None


def _serve(args: argparse.Namespace) -> int:
    from services.platform.core.logs import configure_logging
    from services.platform.runtime.app import create_app, server_config

    definition = load_definition(args.service)
    settings = _settings_in_mode(definition.name)
    configure_logging(definition.name, settings.log_level, settings.log_format)
    port = args.port or settings.port
    app = create_app(definition, settings)
    uvicorn.Server(server_config(app, args.host, port)).run()
    return 0


class _SharedSignalServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `erp up`, which stops all at once."""

    def capture_signals(self) -> Any:
        return nullcontext()


def _up(args: argparse.Namespace) -> int:
    from services.platform.core.logs import configure_logging
    from services.platform.runtime.app import create_app, server_config

    mode = _choose_mode()
    every = {name: load_definition(name) for name in SERVICES}
    settings_of = {name: _settings(d.name, d.default_port) for name, d in every.items()}
    first = settings_of[next(iter(SERVICES))]
    if mode.embedded:
        data = os.environ.get("ERP_DATA_DIR") or ".data"
        _say_mode(mode, f"SQLite under {data}/, in-process broker, in-process Redis stand-in")
    else:
        _say_mode(mode, f"{describe_servers(first)} (each service its own database)")
    configure_logging("erp", first.log_level, first.log_format)
    servers: list[uvicorn.Server] = []
    lines: list[str] = []
    for name, definition in every.items():
        settings = settings_of[name]
        # Embedded mode is the demo: the data set the docs' examples use is loaded with it.
        lifespan = partial(with_demo_data, definition, settings) if mode.embedded else None
        app = create_app(definition, settings, lifespan=lifespan)
        config = server_config(app, args.host, settings.port)
        servers.append(_SharedSignalServer(config))
        base = f"http://{args.host}:{settings.port}"
        lines.append(
            f"  {name:<13} {base}  docs {base}/ui/  spec {base}/openapi.json  health {base}/health"
        )
    print("erp: services\n" + "\n".join(lines), flush=True)
    if mode.embedded:
        print(f"erp: demo data loaded; log in as {_demo_login()} (demo only)", flush=True)
        mailbox = f"http://{args.host}:{settings_of['notification'].port}/dev/mailbox"
        print(f"erp: e-mail is kept, not sent: {mailbox} (or `erp mail list`)", flush=True)
    asyncio.run(_serve_all(servers))
    return 0


async def _serve_all(servers: list[uvicorn.Server]) -> None:
    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    # Auth starts first and alone: the others fetch their JWKS from it.
    first, *rest = servers
    first_task = asyncio.create_task(first.serve())
    while not first.started and not first_task.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.05)
    await asyncio.gather(first_task, *(server.serve() for server in rest))


def _demo_seed(args: argparse.Namespace) -> int:
    names = args.service or list(DEMO_DATA)
    unknown = sorted(set(names) - set(DEMO_DATA))
    if unknown:
        print(f"erp: no demo data for {', '.join(unknown)}", file=sys.stderr)
        return EXIT_REFUSED
    for name in names:
        definition = load_definition(name)
        settings = _settings_in_mode(name)
        _reaching(settings, partial(asyncio.run, _seed(definition, settings)))
        print(f"demo data of {name} loaded")
    print(f"log in as {_demo_login()} (demo only: not for a production database)")
    return 0


async def _seed(definition: Any, settings: Any) -> None:
    async with with_demo_data(definition, settings):
        pass  # started (migrations, seeded roles), loaded, stopped


def _create_admin(args: argparse.Namespace) -> int:
    from services.auth.admin import AdminError, create_admin

    settings = _settings_in_mode("auth")
    try:
        user_id = _reaching(
            settings,
            lambda: asyncio.run(create_admin(settings, args.email, args.password, args.name)),
        )
    except AdminError as error:
        print(f"erp: cannot create the admin: {error}", file=sys.stderr)
        return EXIT_REFUSED
    print(f"super-admin {args.email} ready (id {user_id})")
    return 0


def _dlq_settings(service: str) -> Settings:
    """The settings to read `service`'s dead letters with; SystemExit with one clear line
    when it has none to read (it consumes nothing, or embedded mode has no RabbitMQ)."""
    from services.platform.messaging import dlq

    load_definition(service)  # an unknown service is named as such
    try:
        dlq.dead_letter_queues(service, TOPOLOGY)
    except LookupError as error:
        raise SystemExit(f"erp: {error}.") from None
    settings = _settings_in_mode(service)
    if settings.amqp_url is None:
        raise SystemExit(
            "erp: embedded mode keeps dead letters in the broker inside the running `erp up`, "
            "which another command cannot read; run on RabbitMQ (ERP_AMQP_URL) to use `erp dlq`."
        )
    return settings


def _dlq_list(args: argparse.Namespace) -> int:
    from services.platform.messaging import dlq

    settings = _dlq_settings(args.service)
    letters = _reaching(
        settings,
        lambda: asyncio.run(dlq.list_dead_letters(settings, TOPOLOGY, args.service, args.limit)),
    )
    for letter in letters:
        print(json.dumps(letter.summary(), sort_keys=True))
    print(f"{len(letters)} dead letter(s) in {args.service}.dlq", file=sys.stderr)
    return 0


def _dlq_show(args: argparse.Namespace) -> int:
    from services.platform.messaging import dlq

    settings = _dlq_settings(args.service)
    letter = _reaching(
        settings, lambda: asyncio.run(dlq.show(settings, TOPOLOGY, args.service, args.message_id))
    )
    if letter is None:
        print(f"no dead letter {args.message_id} in {args.service}.dlq", file=sys.stderr)
        return 1
    print(json.dumps(letter.to_dict(), indent=2, sort_keys=True))
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from services.platform.messaging import dlq

    settings = _dlq_settings(args.service)
    count = _reaching(
        settings,
        lambda: asyncio.run(
            dlq.replay(settings, TOPOLOGY, args.service, args.message_id or dlq.ALL)
        ),
    )
    print(f"replayed {count} message(s) from {args.service}.dlq")
    return 0 if count or args.message_id is None else 1


def _kept_mail() -> list[dict[str, Any]]:
    """What the notification service kept in Redis instead of sending, newest first."""
    from services.platform.persistence.redis import Keys, connect_redis

    settings = _settings_in_mode("notification")
    if settings.redis_url is None:
        raise SystemExit(
            "erp: embedded mode keeps e-mail in the Redis stand-in inside the running `erp up`; "
            "open http://127.0.0.1:8006/dev/mailbox there instead."
        )

    async def read() -> list[dict[str, Any]]:
        redis = connect_redis(settings)
        try:
            raws = await redis.lrange(Keys(settings.redis_prefix)("notification", "mailbox"), 0, -1)
        finally:
            await redis.aclose()
        return [json.loads(raw) for raw in raws]

    return _reaching(settings, lambda: asyncio.run(read()))


def _mail_list(args: argparse.Namespace) -> int:
    kept = _kept_mail()
    for mail in kept:
        print(f"{mail['kept_at']}  {mail['id']}  {mail['to']}  {mail['subject']}")
    print(f"{len(kept)} kept e-mail(s)", file=sys.stderr)
    return 0


def _mail_show(args: argparse.Namespace) -> int:
    found = [mail for mail in _kept_mail() if mail["id"] == args.notification_id]
    if not found:
        print(f"erp: no kept e-mail {args.notification_id}", file=sys.stderr)
        return 1
    mail = found[0]
    print(f"To: {mail['to']}\nSubject: {mail['subject']}\nKept: {mail['kept_at']}\n")
    print(mail["text"])
    for link in mail["links"]:
        print(f"link: {link}")
    return 0
