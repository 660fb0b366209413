"""uvicorn's httptools protocol with a cap on the request line and header fields.

httptools (llhttp) buffers a header section of any size — a client sending megabytes of
headers holds that memory, and the app never hears of it. This protocol counts the bytes as
they arrive and, past `max_header_bytes` (`ERP_MAX_HEADER_BYTES`), answers
`431 Request Header Fields Too Large` as problem+json and closes the connection, before the
app is called:

* while a message's header section is still incomplete at the end of a read, every byte of
  that read belongs to it, so the running count is exact from its second read on (its first
  read counts what the parser delivered: the section is bounded by the cap plus one read);
* once the section is complete, its exact size (request target, names, values, separators)
  is checked before the request reaches the app.
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from services.platform.core.problems import Problem
from services.platform.http.responses import render_problem

# Per header line: ": " and CRLF.
_LINE_OVERHEAD = 4


class _HeadersTooLargeError(Exception):
    """Raised in a parser callback to stop parsing; uvicorn then calls `send_400_response`."""


class BoundedHeadersProtocol(HttpToolsProtocol):
    max_header_bytes: ClassVar[int] = 16 << 10

    @classmethod
    def limited_to(cls, max_header_bytes: int) -> type[BoundedHeadersProtocol]:
        """This protocol with another cap (uvicorn takes a class, not an instance)."""
        return type(cls.__name__, (cls,), {"max_header_bytes": max_header_bytes})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._awaiting_headers = True  # between a message's first byte and its headers' end
        self._messages_begun = 0
        self._header_bytes = 0
        self._refused = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._messages_begun += 1
        self._awaiting_headers = True

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        section = len(self.url) + sum(len(n) + len(v) + _LINE_OVERHEAD for n, v in self.headers)
        if section > self.max_header_bytes:
            self._refused = True
            raise _HeadersTooLargeError
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        if self._refused:  # answered and closing: the rest of the request is not read
            return
        continuing = self._awaiting_headers
        begun = self._messages_begun
        super().data_received(data)
        if self._refused or not self._awaiting_headers or self.transport.is_closing():
            return
        if continuing and begun == self._messages_begun:
            self._header_bytes += len(data)  # all of this read belongs to the open section
        else:  # a message began in this read: what the parser has delivered of it so far
            self._header_bytes = len(self.url) + sum(
                len(n) + len(v) + _LINE_OVERHEAD for n, v in self.headers
            )
        if self._header_bytes > self.max_header_bytes:
            self._refused = True
            self._send_431()

    def send_400_response(self, msg: str) -> None:
        if self._refused:
            self._send_431()
        else:
            super().send_400_response(msg)

    def _send_431(self) -> None:
        problem = Problem(
            431,
            "Request Header Fields Too Large",
            f"The request line and header fields exceed {self.max_header_bytes} bytes.",
        )
        rendered = render_problem(problem, None)
        lines = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            lines += [name, b": ", value, b"\r\n"]
        # As on every response of the kit (runtime/app.py SECURITY_HEADERS).
        headers = [*rendered.raw_headers(), (b"x-content-type-options", b"nosniff")]
        headers += [
            (b"content-length", str(len(rendered.body)).encode()),
            (b"connection", b"close"),
        ]
        for name, value in headers:
            lines += [name, b": ", value, b"\r\n"]
        lines += [b"\r\n", rendered.body]
        self.transport.write(b"".join(lines))
        self.transport.close()
