#!/usr/bin/env bash
# Starts PostgreSQL, Redis and RabbitMQ on this machine when they are not already running.
set -euo pipefail

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(pg_lsclusters --no-header | awk 'NR==1 {print $1}')
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi

if ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  rabbitmq-server -detached
  for _ in $(seq 1 60); do rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break; sleep 2; done
fi
# A test may have left the app stopped (outage tests restore it, but a killed run may not).
rabbitmqctl -q start_app >/dev/null 2>&1 || true

pg_isready -h 127.0.0.1 -p 5432
redis-cli -h 127.0.0.1 -p 6379 ping
rabbitmq-diagnostics -q ping
