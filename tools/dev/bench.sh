#!/usr/bin/env bash
# `make bench`: HTTP throughput and latency of the running code on this machine, with wrk (a
# compiled load generator; an httpx client would measure itself). Runs `erp serve` for auth and
# inventory on the real servers, in databases and a Redis prefix of its own, and prints wrk's
# summary for each endpoint. Bounded: DURATION seconds per endpoint, loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; }

DURATION=${DURATION:-10}
RUN=bench_$$
export ERP_AUTH_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/erp${RUN}_auth_db"
export ERP_INVENTORY_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/erp${RUN}_inventory_db"
export ERP_REDIS_PREFIX="erp${RUN}:" ERP_LOG_LEVEL=WARNING
export ERP_AUTH_PORT=18101 ERP_INVENTORY_PORT=18102 ERP_AUTH_URL=http://127.0.0.1:18101
ERP=.venv/bin/erp

cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  for db in auth inventory; do
    psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS erp${RUN}_${db}_db WITH (FORCE)" postgres || true
  done
  redis-cli --scan --pattern "erp${RUN}:*" | xargs -r redis-cli del >/dev/null
}
pids=()
trap cleanup EXIT

$ERP users create-admin bench@example.com --password Load-test-pass-42 >/dev/null
$ERP serve auth >/dev/null 2>&1 & pids+=($!)
$ERP serve inventory >/dev/null 2>&1 & pids+=($!)
for port in 18101 18102; do
  until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do sleep 0.2; done
done

token=$(curl -sf -X POST http://127.0.0.1:18101/api/v1/auth/login -H 'Content-Type: application/json' \
  -d '{"email":"bench@example.com","password":"Load-test-pass-42"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"]["access_token"])')
curl -sf -X POST http://127.0.0.1:18102/api/v1/products -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"sku":"BENCH-1","name":"Bench","price":"9.90"}' >/dev/null

bench() {
  echo "== $1"
  shift
  wrk -t1 -c16 -d"${DURATION}s" --latency "$@" | grep -E "Requests/sec|Latency|50%|99%|Non-2xx"
}
bench "GET /health/live (app stack, no I/O)" http://127.0.0.1:18102/health/live
bench "GET /api/v1/products (public, Redis-cached list)" "http://127.0.0.1:18102/api/v1/products?per_page=15"
bench "GET /api/v1/stock (JWT verified from JWKS, PostgreSQL)" -H "Authorization: Bearer $token" http://127.0.0.1:18102/api/v1/stock
