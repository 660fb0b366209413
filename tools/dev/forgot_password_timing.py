"""Median latency of `POST /api/v1/auth/forgot-password` for a known and an unknown address.

    .venv/bin/python -m tools.dev.forgot_password_timing [--requests 150]

Starts `erp serve auth` on the local servers with a database, Redis prefix and RabbitMQ vhost
of its own (removed afterwards), registers `--requests` users, then asks for a reset of each
known address and of as many unknown ones, in pairs in random order, every request from a
client address of its own (the script is the server's trusted proxy) so that no rate limit
answers instead. It prints both medians and their difference: a difference that stands out of
the noise tells an attacker which addresses have an account. It is a measurement, not a test
(no timed tests run in the suite: they flake on a loaded machine).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]
ERP = str(Path(sys.executable).with_name("erp"))
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
FORGOT = "/api/v1/auth/forgot-password"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=150, help="requests per path")
    parser.add_argument("--port", type=int, default=18901)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    database, vhost, prefix = f"erp_timing_{run}_auth_db", f"erp-timing-{run}", f"erp-timing:{run}:"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
    )
    env = {
        **os.environ,
        "ERP_EMBEDDED": "0",
        "ERP_AUTH_DATABASE_URL": f"{POSTGRES}/{database}",
        "ERP_AMQP_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "ERP_REDIS_PREFIX": prefix,
        "ERP_TRUSTED_PROXIES": "127.0.0.1",
        "ERP_LOG_LEVEL": "WARNING",
        "PORT": str(args.port),
    }
    server = subprocess.Popen([ERP, "serve", "auth"], env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{args.port}"
        _wait_ready(base)
        known, unknown = _measure(base, args.requests, run)
    finally:
        server.terminate()
        server.wait(timeout=30)
        _clean_up(database, vhost, prefix)
    known_ms, unknown_ms = statistics.median(known) * 1000, statistics.median(unknown) * 1000
    print(f"forgot-password, {args.requests} requests per path (median)")
    print(f"  known address:   {known_ms:6.2f} ms")
    print(f"  unknown address: {unknown_ms:6.2f} ms")
    print(f"  difference:      {known_ms - unknown_ms:+6.2f} ms")
    return 0


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("auth did not become ready")


def _measure(base: str, count: int, run: str) -> tuple[list[float], list[float]]:
    known: list[float] = []
    unknown: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        emails = [f"timing-{run}-{n}@example.com" for n in range(count)]
        for n, email in enumerate(emails):
            body = {"name": "Timing", "email": email, "password": "Timing-passw0rd-x"}
            created = client.post("/api/v1/auth/register", json=body, headers=_from(1, n))
            assert created.status_code == 201, created.text
        for n, email in enumerate(emails):
            pair = [(email, known, 2), (f"nobody-{run}-{n}@example.com", unknown, 3)]
            random.shuffle(pair)  # neither path always goes first
            for address, samples, path in pair:
                started = time.perf_counter()
                answer = client.post(FORGOT, json={"email": address}, headers=_from(path, n))
                samples.append(time.perf_counter() - started)
                assert answer.status_code == 202, answer.text
    return known, unknown


def _from(group: int, n: int) -> dict[str, str]:
    """A client address of its own per request (each rate-limit bucket sees one request)."""
    return {"X-Forwarded-For": f"10.{group}.{n // 256 % 256}.{n % 256}"}


def _clean_up(database: str, vhost: str, prefix: str) -> None:
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], check=True)


if __name__ == "__main__":
    raise SystemExit(main())
