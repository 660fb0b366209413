"""The Python half of tools/dev/bench.sh: compare responses, read wrk's output, print the table.

    python -m bench.harness compare NAME DIR [--ignore k,..] [--delta before,after]
    python -m bench.harness check LABEL WRK_OUTPUT
    python -m bench.harness table DIR OUT.md SLUG=LABEL... [--note TEXT]

`compare` reads DIR/NAME.{service,twin}.{meta,body} (curl's `%{http_code}\\n%{content_type}` and
the body) and fails with a diff unless both sides gave the same 2xx status, media type and
equivalent JSON: key order and spacing do not matter, timestamps are compared as instants,
`--ignore` keys (ids, creation times) are dropped at any depth, and for `--delta a,b` only
`b - a` must agree (the stock level moves between the two requests, the change must not).

`check` fails when a wrk run saw any non-2xx answer (wrk counts status >= 400; the `compare`
step before load has made sure the answer is a 2xx, not a redirect), any socket error, or no
request at all. `table` takes the median of the rounds of each side (req/s, p50, p99) from
DIR/SLUG.{service,twin}.N.txt and writes the Markdown table to stdout and OUT.md.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SIDES = ("service", "twin")

_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}  # → milliseconds
_COUNT_UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
_NUMBER = r"(\d+(?:\.\d+)?)"
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


class BenchError(Exception):
    """A check failed; the message says which and why."""


# --- wrk output -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkRun:
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]


def _time_ms(value: str, unit: str) -> float:
    return float(value) * _TIME_UNITS[unit]


def _count(value: str, unit: str) -> float:
    return float(value) * _COUNT_UNITS[unit]


def parse_wrk(text: str) -> WrkRun:
    """wrk's `--latency` summary; BenchError naming what is missing."""

    def find(pattern: str, what: str) -> re.Match[str]:
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise BenchError(f"wrk output has no {what} line:\n{text}")
        return match

    requests = find(rf"^\s*{_NUMBER}([kMG]?) requests in ", "'N requests in'")
    rate = find(rf"^Requests/sec:\s*{_NUMBER}([kMG]?)\s*$", "Requests/sec")
    p50 = find(rf"^\s*50(?:\.0+)?%\s+{_NUMBER}(us|ms|s|m|h)\s*$", "50% latency")
    p99 = find(rf"^\s*99(?:\.0+)?%\s+{_NUMBER}(us|ms|s|m|h)\s*$", "99% latency")
    non_2xx = re.search(r"^\s*Non-2xx or 3xx responses:\s*(\d+)", text, re.MULTILINE)
    sockets = re.search(
        r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
        text,
        re.MULTILINE,
    )
    socket_errors = (
        dict(zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True))
        if sockets
        else {}
    )
    return WrkRun(
        requests=int(_count(*requests.groups())),
        requests_per_second=_count(*rate.groups()),
        p50_ms=_time_ms(*p50.groups()),
        p99_ms=_time_ms(*p99.groups()),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors={kind: n for kind, n in socket_errors.items() if n},
    )


def check_run(label: str, path: Path) -> WrkRun:
    run = parse_wrk(path.read_text())
    problems = []
    if run.requests == 0:
        problems.append("no request completed")
    if run.non_2xx:
        problems.append(f"{run.non_2xx} of {run.requests} responses were not 2xx")
    if run.socket_errors:
        errors = ", ".join(f"{kind} {n}" for kind, n in run.socket_errors.items())
        problems.append(f"socket errors: {errors}")
    if problems:
        raise BenchError(f"{label}: {'; '.join(problems)} (wrk output in {path})")
    return run


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    requests_per_second: float
    p50_ms: float
    p99_ms: float

    @classmethod
    def median_of(cls, runs: list[WrkRun]) -> Summary:
        return cls(
            statistics.median(run.requests_per_second for run in runs),
            statistics.median(run.p50_ms for run in runs),
            statistics.median(run.p99_ms for run in runs),
        )


def latency(ms: float) -> str:
    return f"{ms * 1000:.0f}us" if ms < 1 else f"{ms:.2f}ms" if ms < 1000 else f"{ms / 1000:.2f}s"


def table(rows: list[tuple[str, Summary, Summary]]) -> str:
    lines = [
        "| endpoint | service req/s | p50 | p99 | twin req/s | p50 | p99 | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, service, twin in rows:
        ratio = service.requests_per_second / twin.requests_per_second
        lines.append(
            f"| {label} | {service.requests_per_second:.0f} | {latency(service.p50_ms)}"
            f" | {latency(service.p99_ms)} | {twin.requests_per_second:.0f}"
            f" | {latency(twin.p50_ms)} | {latency(twin.p99_ms)} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def build_table(directory: Path, endpoints: list[tuple[str, str]]) -> str:
    rows = []
    for slug, label in endpoints:
        summaries = []
        for side in SIDES:
            files = sorted(directory.glob(f"{slug}.{side}.*.txt"))
            if not files:
                raise BenchError(f"{label}: no wrk output for the {side} in {directory}")
            runs = [check_run(f"{label} ({side})", path) for path in files]
            summaries.append(Summary.median_of(runs))
        rows.append((label, summaries[0], summaries[1]))
    return table(rows)


# --- response comparison --------------------------------------------------------------------


def _normalise(value: Any, ignore: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v, ignore) for k, v in value.items() if k not in ignore}
    if isinstance(value, list):
        return [_normalise(item, ignore) for item in value]
    if isinstance(value, str) and _TIMESTAMP.match(value):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment.astimezone(UTC).isoformat()
    return value


def _read_side(directory: Path, name: str, side: str) -> tuple[int, str, Any]:
    meta = (directory / f"{name}.{side}.meta").read_text().split("\n")
    status, media_type = int(meta[0]), meta[1].split(";")[0].strip().lower()
    raw = (directory / f"{name}.{side}.body").read_text()
    try:
        body = json.loads(raw)
    except ValueError:
        raise BenchError(f"{name}: the {side} answered {status} with no JSON: {raw!r}") from None
    return status, media_type, body


def compare(
    name: str, directory: Path, ignore: frozenset[str], delta: tuple[str, str] | None
) -> None:
    (s_status, s_type, s_body), (t_status, t_type, t_body) = (
        _read_side(directory, name, side) for side in SIDES
    )
    problems = []
    if not 200 <= s_status < 300:
        problems.append(f"the service answered {s_status}: {json.dumps(s_body)}")
    if s_status != t_status:
        problems.append(f"status: service {s_status}, twin {t_status}")
    if s_type != t_type:
        problems.append(f"content type: service {s_type!r}, twin {t_type!r}")
    dropped = ignore
    if delta is not None and isinstance(s_body, dict) and isinstance(t_body, dict):
        before, after = delta
        changes = [body.get(after, 0) - body.get(before, 0) for body in (s_body, t_body)]
        if changes[0] != changes[1]:
            problems.append(f"{after} - {before}: service {changes[0]}, twin {changes[1]}")
        dropped = ignore | {before, after}
    service_json, twin_json = (
        json.dumps(_normalise(body, dropped), indent=2, sort_keys=True, ensure_ascii=False)
        for body in (s_body, t_body)
    )
    if service_json != twin_json:
        diff = difflib.unified_diff(
            service_json.splitlines(), twin_json.splitlines(), "service", "twin", lineterm=""
        )
        problems.append("bodies differ:\n" + "\n".join(diff))
    if problems:
        raise BenchError(f"{name}: service and twin disagree\n  " + "\n  ".join(problems))


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.harness")
    commands = parser.add_subparsers(dest="command", required=True)
    cmp = commands.add_parser("compare", help="service and twin answered the same?")
    cmp.add_argument("name")
    cmp.add_argument("directory", type=Path)
    cmp.add_argument("--ignore", default="", help="comma-separated keys to drop (any depth)")
    cmp.add_argument("--delta", default=None, help="BEFORE,AFTER: compare AFTER - BEFORE only")
    chk = commands.add_parser("check", help="one wrk run: a summary line, or fail")
    chk.add_argument("label")
    chk.add_argument("path", type=Path)
    tab = commands.add_parser("table", help="the medians of every run, as Markdown")
    tab.add_argument("directory", type=Path)
    tab.add_argument("output", type=Path)
    tab.add_argument("endpoints", nargs="+", metavar="SLUG=LABEL")
    tab.add_argument("--note", default="", help="a line printed above the table")
    return parser


def _pair(text: str, separator: str) -> tuple[str, str]:
    first, found, second = text.partition(separator)
    if not (first and found and second):
        raise SystemExit(f"bench: expected A{separator}B, got {text!r}")
    return first, second


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "compare":
            ignore = frozenset(key for key in args.ignore.split(",") if key)
            delta = _pair(args.delta, ",") if args.delta else None
            compare(args.name, args.directory, ignore, delta)
            print(f"  same answer: {args.name}")
        elif args.command == "check":
            run = check_run(args.label, args.path)
            print(
                f"  {args.label}: {run.requests_per_second:.0f} req/s,"
                f" p50 {latency(run.p50_ms)}, p99 {latency(run.p99_ms)}"
            )
        else:
            endpoints = [_pair(item, "=") for item in args.endpoints]
            text = build_table(args.directory, endpoints)
            if args.note:
                text = f"{args.note}\n\n{text}"
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text + "\n")
            print(text)
    except BenchError as error:
        print(f"bench: FAILED: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
