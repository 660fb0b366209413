"""Log format: JSON lines by default outside a terminal, a readable line per record on one,
ERP_LOG_FORMAT overriding both (services/platform/core/logs.py)."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import subprocess
import sys
from collections.abc import Iterator

import pytest

from services.platform.core import scope as requestctx
from services.platform.core.logs import (
    ConsoleFormatter,
    JsonFormatter,
    choose_format,
    configure_logging,
)
from tests.support.processes import ROOT


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


@pytest.mark.parametrize(
    ("configured", "stream", "chosen"),
    [
        (None, io.StringIO(), "json"),
        (None, Terminal(), "console"),
        ("json", Terminal(), "json"),
        ("console", io.StringIO(), "console"),
    ],
)
def test_the_format_follows_the_setting_then_the_terminal(
    configured: str | None, stream: io.StringIO, chosen: str
) -> None:
    assert choose_format(configured, stream) == chosen


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="pretty"):
        choose_format("pretty", io.StringIO())


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("erp.access", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_console_line_reads_as_a_sentence_with_what_the_message_does_not_say() -> None:
    access = record(
        "%s %s %s %.2fms",
        "GET",
        "/api/v1/stock",
        200,
        3.1,
        method="GET",
        route="/api/v1/stock/{id}",
        path="/api/v1/stock",
        status=200,
        duration_ms=3.1,
    )
    with requestctx.bind(request="req-1", correlation="c-1"):
        line = ConsoleFormatter("inventory").format(access)
    assert not line.startswith("{")
    time, level, service, logger, rest = line.split(maxsplit=4)
    assert len(time) == len("12:04:05.123")
    assert (level, service, logger) == ("INFO", "inventory", "erp.access")
    assert rest == "GET /api/v1/stock 200 3.10ms route=/api/v1/stock/{id} req=req-1"


def test_a_console_line_keeps_the_traceback_below() -> None:
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        failed = record("it broke")
        failed.exc_info = sys.exc_info()
    lines = ConsoleFormatter("auth").format(failed).splitlines()
    assert lines[0].endswith("it broke")
    assert lines[-1] == "RuntimeError: kaput"


def test_configure_logging_installs_the_chosen_formatter(restore_root_logger: None) -> None:
    terminal = Terminal()
    assert configure_logging("auth", "INFO", None, terminal) == "console"
    assert isinstance(logging.getLogger().handlers[0].formatter, ConsoleFormatter)
    logging.getLogger("erp.test").info("hello %s", "world")
    assert terminal.getvalue().rstrip().endswith("auth erp.test hello world")
    assert configure_logging("auth", "INFO", "json", terminal) == "json"
    [handler] = logging.getLogger().handlers
    assert isinstance(handler.formatter, JsonFormatter)


def run_with_stdout(is_terminal: bool, env: dict[str, str]) -> str:
    """A process that configures logging like `erp` and logs one line; its stdout a pty or
    a pipe."""
    code = (
        "import logging\n"
        "from services.platform.core.settings import load_settings\n"
        "from services.platform.core.logs import configure_logging\n"
        "s = load_settings('auth', 8001)\n"
        "configure_logging('auth', s.log_level, s.log_format)\n"
        "logging.getLogger('erp.test').warning('ready')\n"
    )
    inherited = {k: v for k, v in os.environ.items() if k != "ERP_LOG_FORMAT"}
    full_env = {**inherited, **env}
    if not is_terminal:
        done = subprocess.run(
            [sys.executable, "-c", code], env=full_env, cwd=ROOT, capture_output=True, check=True
        )
        return done.stdout.decode()
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-c", code], env=full_env, cwd=ROOT, stdout=follower
    ) as process:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the pty closes when the process exits
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=60) == 0
    os.close(leader)
    return b"".join(chunks).decode()


def test_a_process_logs_json_into_a_pipe_and_lines_for_a_person_on_a_terminal() -> None:
    piped = run_with_stdout(False, {})
    assert json.loads(piped)["message"] == "ready"
    on_terminal = run_with_stdout(True, {})
    assert on_terminal.rstrip().endswith("WARNING auth erp.test ready")
    forced = run_with_stdout(True, {"ERP_LOG_FORMAT": "json"})
    assert json.loads(forced)["level"] == "WARNING"
