"""The one HTTP client of the tests, and logging in to auth.

`Api` sends requests to one service (a base URL) as one caller: an optional bearer token, and
an optional client address of its own (`X-Forwarded-For`, which the test services believe from
127.0.0.1: `ERP_TRUSTED_PROXIES` in `service_env`; auth's rate limits are per address, so a
fresh address is a fresh bucket).
"""

from __future__ import annotations

import itertools
import secrets
import socket
import uuid
from typing import Any

import httpx
from stdnum.br import cnpj, cpf

LOGIN = "/api/v1/auth/login"
_addresses = itertools.count(1)


def new_ip() -> str:
    """A client address no other request of this run used (a fresh rate-limit bucket)."""
    n = next(_addresses)
    return f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


def unique_cpf() -> str:
    """A CPF with valid check digits that no other test run uses (documents are unique)."""
    while not cpf.is_valid(candidate := f"{secrets.randbelow(10**11):011d}"):
        pass  # about one random number in a hundred has the right check digits
    return candidate


def unique_cnpj() -> str:
    """A CNPJ with valid check digits that no other test run uses (suppliers' are unique)."""
    base = f"{secrets.randbelow(10**8):08d}0001"
    return base + cnpj.calc_check_digits(base)


class Api:
    """Requests to the service at `base_url` as one caller.

    `api("GET", path, ...)` or `api.get(path, ...)`; `token=` / `api_key=` on a call stand in for
    the caller's own token for that call. `as_caller(token)` and `from_another_address()` are
    other callers on the same connection pool."""

    def __init__(
        self,
        base_url: str | httpx.Client,
        token: str | None = None,
        *,
        ip: str | None = None,
        timeout: float = 30,
    ) -> None:
        self.client = (
            base_url
            if isinstance(base_url, httpx.Client)
            else httpx.Client(base_url=base_url, timeout=timeout)
        )
        self.token = token
        self.ip = ip

    def __call__(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent: dict[str, str] = {}
        if self.ip is not None:
            sent["X-Forwarded-For"] = self.ip
        bearer = token or self.token
        if bearer is not None:
            sent["Authorization"] = f"Bearer {bearer}"
        if api_key is not None:
            sent["X-API-Key"] = api_key
        return self.client.request(method, path, headers={**sent, **(headers or {})}, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self("DELETE", path, **kwargs)

    def created(self, path: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """POST `body` and return what was created, asserting a 201."""
        response = self.post(path, json=body, **kwargs)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    def as_caller(self, token: str | None) -> Api:
        """Another caller (`None`: anonymous) from the same address."""
        return Api(self.client, token, ip=self.ip)

    def from_another_address(self) -> Api:
        """The same caller from a fresh client address."""
        return Api(self.client, self.token, ip=new_ip())

    def login(self, email: str, password: str) -> dict[str, Any]:
        """The session (`user`, `tokens`) auth answers a login with, asserting a 200."""
        response = self.post(LOGIN, json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        session: dict[str, Any] = response.json()
        return session

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def login(auth_url: str, email: str, password: str) -> str:
    """An access token of `email`, logged in at auth from a fresh client address."""
    with Api(auth_url, ip=new_ip()) as auth:
        token: str = auth.login(email, password)["tokens"]["access_token"]
        return token


def send_raw(base_url: str, request: bytes, timeout: float = 10) -> bytes:
    """Bytes on a fresh connection to the server at `base_url`, and everything it answers until
    it closes: for requests an HTTP client refuses to send (control characters in a header,
    dot segments in a path). End `request` with `Connection: close`."""
    host, _, port = base_url.removeprefix("http://").partition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
        return answer
