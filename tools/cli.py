"""`erp` — the one command line of the platform."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial
from typing import Any

import uvicorn

from generated.topology import TOPOLOGY
from services.auth.demo import DEMO_USER_EMAIL, DEMO_USER_PASSWORD
from services.registry import DEMO_DATA, SERVICES, load_definition, with_demo_data

# connexion imports starlette's test client, which warns about httpx on every start: not ours.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

DEMO_LOGIN = f"{DEMO_USER_EMAIL} / {DEMO_USER_PASSWORD}"


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
    return parser


def _codegen(args: argparse.Namespace) -> int:
    from tools.codegen import run

    return run(check=args.check)


def _settings(service: str, default_port: int) -> Any:
    from services.platform.core.settings import SettingsError, load_settings

    try:
        return load_settings(service, default_port)
    except SettingsError as error:
        raise SystemExit(f"erp: invalid configuration\n{error}") from None


def _serve(args: argparse.Namespace) -> int:
    from services.platform.core.logs import configure_logging
    from services.platform.runtime.app import create_app, server_config

    definition = load_definition(args.service)
    settings = _settings(definition.name, definition.default_port)
    configure_logging(definition.name, settings.log_level)
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
    from services.platform.core.settings import detect_embedded
    from services.platform.runtime.app import create_app, server_config

    embedded = detect_embedded(os.environ)
    if embedded:
        why = (
            "ERP_EMBEDDED=1"
            if os.environ.get("ERP_EMBEDDED") == "1"
            else "no ERP_DATABASE_URL/ERP_AMQP_URL/ERP_REDIS_URL set and nothing listening on "
            "127.0.0.1:5432/5672/6379"
        )
        os.environ["ERP_EMBEDDED"] = "1"
        data = os.environ.get("ERP_DATA_DIR") or ".data"
        print(
            f"erp: {why} — running embedded (SQLite under {data}/, in-process broker, "
            "in-process Redis stand-in)."
        )
    configure_logging("erp", os.environ.get("ERP_LOG_LEVEL", "INFO"))
    servers: list[uvicorn.Server] = []
    lines: list[str] = []
    for name in SERVICES:
        definition = load_definition(name)
        settings = _settings(definition.name, definition.default_port)
        # Embedded mode is the demo: the data set the docs' examples use is loaded with it.
        lifespan = partial(with_demo_data, definition, settings) if embedded else None
        app = create_app(definition, settings, lifespan=lifespan)
        config = server_config(app, args.host, settings.port)
        servers.append(_SharedSignalServer(config))
        base = f"http://{args.host}:{settings.port}"
        lines.append(
            f"  {name:<13} {base}  docs {base}/ui/  spec {base}/openapi.json  health {base}/health"
        )
    print("erp: services\n" + "\n".join(lines), flush=True)
    if embedded:
        print(f"erp: demo data loaded; log in as {DEMO_LOGIN} (demo only)", flush=True)
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
        return 2
    for name in names:
        definition = load_definition(name)
        asyncio.run(_seed(definition, _settings(definition.name, definition.default_port)))
        print(f"demo data of {name} loaded")
    print(f"log in as {DEMO_LOGIN} (demo only: not for a production database)")
    return 0


async def _seed(definition: Any, settings: Any) -> None:
    async with with_demo_data(definition, settings):
        pass  # started (migrations, seeded roles), loaded, stopped


def _create_admin(args: argparse.Namespace) -> int:
    from services.auth.admin import AdminError, create_admin

    definition = load_definition("auth")
    settings = _settings(definition.name, definition.default_port)
    try:
        user_id = asyncio.run(create_admin(settings, args.email, args.password, args.name))
    except AdminError as error:
        print(f"erp: cannot create the admin: {error}", file=sys.stderr)
        return 2
    print(f"super-admin {args.email} ready (id {user_id})")
    return 0


def _dlq_list(args: argparse.Namespace) -> int:
    from services.platform.messaging import dlq

    settings = _settings(args.service, load_definition(args.service).default_port)
    letters = asyncio.run(dlq.list_dead_letters(settings, TOPOLOGY, args.service, args.limit))
    for letter in letters:
        print(json.dumps(letter.summary(), sort_keys=True))
    print(f"{len(letters)} dead letter(s) in {args.service}.dlq", file=sys.stderr)
    return 0


def _dlq_show(args: argparse.Namespace) -> int:
    from services.platform.messaging import dlq

    settings = _settings(args.service, load_definition(args.service).default_port)
    letter = asyncio.run(dlq.show(settings, TOPOLOGY, args.service, args.message_id))
    if letter is None:
        print(f"no dead letter {args.message_id} in {args.service}.dlq", file=sys.stderr)
        return 1
    print(json.dumps(letter.to_dict(), indent=2, sort_keys=True))
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from services.platform.messaging import dlq

    settings = _settings(args.service, load_definition(args.service).default_port)
    count = asyncio.run(dlq.replay(settings, TOPOLOGY, args.service, args.message_id or dlq.ALL))
    print(f"replayed {count} message(s) from {args.service}.dlq")
    return 0 if count or args.message_id is None else 1
