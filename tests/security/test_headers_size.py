"""A header section past `ERP_MAX_HEADER_BYTES` (16 KiB) is a 431 problem, as it streams in
(issue 7, item 4), from the real auth service under uvicorn as `erp serve` runs it."""

from __future__ import annotations

import json
import select
import socket
from typing import Any

import pytest

from services.platform.core.settings import Settings
from tests.support.processes import ServerThread

pytestmark = pytest.mark.integration

LIVE = b"GET /health/live HTTP/1.1\r\nHost: auth\r\n"


def exchange(server: ServerThread, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` on a new connection; the response's status, headers and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        return parse_response(read_until_closed(connection))


def read_until_closed(connection: socket.socket) -> bytes:
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
        if b"\r\n\r\n" in data and not data.startswith(b"HTTP/1.1 431"):
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                None,
            )
            if length is not None and len(body) >= length:
                break
    return data


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers, body


def assert_431(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert status == 431, body
    assert headers["content-type"].startswith("application/problem+json")
    assert headers["connection"] == "close"
    problem: dict[str, Any] = json.loads(body[: int(headers["content-length"])])
    assert problem["status"] == 431
    assert "16384 bytes" in problem["detail"]
    return problem


def test_the_default_cap_is_16_kib(auth_settings: Settings) -> None:
    assert auth_settings.max_header_bytes == 16 << 10


def test_headers_within_the_cap_are_served(auth_server: ServerThread) -> None:
    status, _, _ = exchange(auth_server, LIVE + b"X-Fill: " + b"a" * 15_000 + b"\r\n\r\n")
    assert status == 200


def test_one_huge_header_is_a_431(auth_server: ServerThread) -> None:
    assert_431(*exchange(auth_server, LIVE + b"X-Fill: " + b"a" * 20_000 + b"\r\n\r\n"))


def test_many_small_headers_are_a_431(auth_server: ServerThread) -> None:
    many = b"".join(b"X-H%d: v\r\n" % n for n in range(3000))
    assert_431(*exchange(auth_server, LIVE + many + b"\r\n"))


def test_a_huge_request_target_is_a_431(auth_server: ServerThread) -> None:
    target = b"/health/live?" + b"q" * 20_000
    assert_431(*exchange(auth_server, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n"))


def test_an_endless_header_is_refused_before_it_ends(auth_server: ServerThread) -> None:
    """The server answers while the header is still streaming: it does not buffer it all.
    (The header never ends: any answer is a refusal in the middle of it.)"""
    with socket.create_connection(("127.0.0.1", auth_server.port), timeout=10) as connection:
        connection.sendall(LIVE + b"X-Endless: ")
        answered = False
        for _ in range(2000):  # up to 8 MB, a few seconds: the server reads 16 KiB of it
            if select.select([connection], [], [], 0.005)[0]:
                answered = True
                break
            try:
                connection.sendall(b"a" * 4096)
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
        assert answered, "the server kept reading an endless header"
        try:
            response = read_until_closed(connection)
        except ConnectionResetError:
            response = b""  # the refusal was sent, but our unread bytes reset the connection
    if response:
        assert_431(*parse_response(response))
