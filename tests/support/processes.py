"""Run platform commands as real processes, the way an operator does, for end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from services.platform.runtime.app import server_config
from services.registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
ERP = str(Path(sys.executable).with_name("erp"))
T = TypeVar("T")

# Another command may stand in, e.g. "docker exec rabbitmq rabbitmqctl".
RABBITMQCTL = shlex.split(os.environ.get("ERP_TEST_RABBITMQCTL", "rabbitmqctl"))


def rabbitmqctl(*args: str) -> str:
    result = subprocess.run(
        [*RABBITMQCTL, "-q", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join([*RABBITMQCTL, *args])} failed: {result.stderr}")
    return result.stdout


@contextmanager
def own_vhost(name: str) -> Iterator[str]:
    """A RabbitMQ vhost `name` that the guest user may use, deleted at the end of the block
    (with every exchange, queue and message in it)."""
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


@asynccontextmanager
async def broker_stopped() -> AsyncIterator[None]:
    """RabbitMQ's app stopped for the duration of the block, and always started again."""
    await asyncio.to_thread(rabbitmqctl, "stop_app")
    try:
        yield
    finally:
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def erp(*args: str, env: Mapping[str, str], timeout: float = 120) -> str:
    """Run `erp ARGS` to completion and return its standard output; fail loudly otherwise."""
    result = subprocess.run(
        [ERP, *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"erp {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


class ServiceProcess:
    """`erp serve SERVICE` on a free port, waited for until it answers /health/ready (or only
    /health/live with `start(ready=False)`); `with ServiceProcess(...).start() as service:`
    stops it at the end of the block."""

    def __init__(self, service: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.service = service
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = {**os.environ, **env, "PORT": str(self.port)}
        self._log_path = log_dir / f"{service}-{self.port}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60, *, ready: bool = True) -> ServiceProcess:
        log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [ERP, "serve", self.service], env=self._env, cwd=ROOT, stdout=log, stderr=log
        )
        probe = f"{self.url}/health/{'ready' if ready else 'live'}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(f"{self.service} exited at start-up:\n{self.log()}")
            try:
                if httpx.get(probe, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.service} did not answer {probe}:\n{self.log()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(sig)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def log(self) -> str:
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerThread:
    """uvicorn serving the app on a free port in a thread with its own event loop, as `erp serve`
    serves it; `with ServerThread(app).start() as server:` stops it at the end of the block."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = server_config(app, "127.0.0.1", self.port)
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.serve()

        asyncio.run(serve())

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the app did not start")
            time.sleep(0.05)
        return self

    def call(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run a coroutine on the server's loop (its engines and Redis client live there)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(make(), self.loop).result(timeout=30)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


PLATFORM = tuple(SERVICES)
"""The services the end-to-end tests and the saga bench run: all six, auth first."""


class Platform(Mapping[str, ServiceProcess]):
    """Services as `erp serve` processes on `env`: auth first, then every other one, side by
    side, told where auth is (`ERP_AUTH_URL`: they verify tokens from its JWKS).
    `platform["sales"].url`; `with Platform(env, log_dir).start() as platform:` stops them all
    (side by side too) at the end of the block."""

    def __init__(
        self, env: Mapping[str, str], log_dir: Path, services: Sequence[str] = PLATFORM
    ) -> None:
        if not services or services[0] != "auth":
            raise ValueError(f"auth starts first: {list(services)}")
        self._env = env
        self._log_dir = log_dir
        self._names = tuple(services)
        self._processes: dict[str, ServiceProcess] = {}

    def start(self) -> Platform:
        try:
            auth = self._add("auth", self._env).start()
            others = [
                self._add(name, {**self._env, "ERP_AUTH_URL": auth.url}) for name in self._names[1:]
            ]
            with ThreadPoolExecutor(max_workers=max(len(others), 1)) as pool:
                # Each waits for its own process; the first failure is raised once all are done.
                list(pool.map(ServiceProcess.start, others))
        except BaseException:
            self.stop()
            raise
        return self

    def _add(self, name: str, env: Mapping[str, str]) -> ServiceProcess:
        # Known before it starts: one that fails to start is stopped too.
        process = self._processes[name] = ServiceProcess(name, env, self._log_dir)
        return process

    def stop(self) -> None:
        processes = list(self._processes.values())
        if processes:
            with ThreadPoolExecutor(max_workers=len(processes)) as pool:
                list(pool.map(ServiceProcess.stop, processes))
        self._processes.clear()

    def logs(self) -> dict[str, str]:
        """Each service's log so far, by name."""
        return {name: process.log() for name, process in self._processes.items()}

    def __getitem__(self, name: str) -> ServiceProcess:
        return self._processes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._processes)

    def __len__(self) -> int:
        return len(self._processes)

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
