#!/usr/bin/env bash
# `make bench`: HTTP throughput and latency of the inventory service side by side with a FastAPI
# twin of the same endpoints (bench/twin.py), with wrk (a compiled load generator; an httpx client
# would measure itself). Runs `erp serve auth` and `erp serve inventory` on the real servers, in
# databases and a Redis prefix of its own, and the twin against the same inventory database and
# Redis prefix. Before any load it checks once with curl that both sides give the same status and
# equivalent JSON (and write the same rows); then, per endpoint, a warm-up and ROUNDS alternating
# rounds (service first in odd rounds, twin first in even ones), and prints the medians as a table,
# also written to .bench/last.md. Any non-2xx answer or socket error under load fails the run.
#
# Then the order saga (bench/saga.py): the six services as `erp serve` processes, SAGA_ORDERS
# orders placed SAGA_CONCURRENCY at a time through POST /api/v1/orders and a simulated courier
# moving each shipment to delivered; orders/s and sagas/s to sales.order.confirmed and to
# sales.order.completed, with p50/p99 of each, appended to the same .bench/last.md. Any
# cancelled or uncompleted saga fails the run.
#
#   DURATION  seconds per wrk run (default 10)      ROUNDS  rounds per side (default 3)
#   WARMUP    seconds of unmeasured load per side and endpoint before the rounds (default 2)
#   SERVER_CPU / WRK_CPU  cores to pin to (defaults 0 / 1; PIN=0 to leave scheduling alone)
#   BENCH     all (default), http (the wrk part only) or saga (the saga only)
#   SAGA_ORDERS  measured orders (default 300)      SAGA_CONCURRENCY  in flight (default 16)
#
# Quick run: DURATION=3 ROUNDS=1 SAGA_ORDERS=50 make bench. Loopback only; the cleanup trap (and
# bench/saga.py for its part) drops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."

[[ ${BENCH:-all} == saga ]] || command -v wrk >/dev/null || { apt-get install -y -q wrk >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; }

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
BENCH=${BENCH:-all}
SAGA_ORDERS=${SAGA_ORDERS:-300}
SAGA_CONCURRENCY=${SAGA_CONCURRENCY:-16}
RUN=bench_$$
export ERP_AUTH_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/erp${RUN}_auth_db"
export ERP_INVENTORY_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/erp${RUN}_inventory_db"
export ERP_REDIS_PREFIX="erp${RUN}:" ERP_LOG_LEVEL=WARNING
export ERP_AUTH_PORT=18101 ERP_INVENTORY_PORT=18102 ERP_AUTH_URL=http://127.0.0.1:18101
TWIN_PORT=18103
declare -A BASE=([service]=http://127.0.0.1:18102 [twin]=http://127.0.0.1:$TWIN_PORT)
ERP=.venv/bin/erp
PY=.venv/bin/python
OUT=.bench
RAW=$OUT/raw
CHECK=$OUT/check

# CPU pinning. Both servers under test are one Python process each (one event loop, one core at
# most) and run on SERVER_CPU; wrk, one thread, runs on WRK_CPU, so the load generator never takes
# the server's core. PostgreSQL, Redis and the idle auth service are left to the scheduler (they
# are shared with other users of the machine). On one core, or with PIN=0, nothing is pinned.
server_pin=() wrk_pin=()
if [[ ${PIN:-1} != 0 ]] && (($(nproc) >= 2)) && command -v taskset >/dev/null; then
  server_pin=(taskset -c "${SERVER_CPU:-0}")
  wrk_pin=(taskset -c "${WRK_CPU:-1}")
  pinning="servers on CPU ${SERVER_CPU:-0}, wrk on CPU ${WRK_CPU:-1}"
else
  pinning="no CPU pinning"
fi

fail() {
  echo "bench: FAILED: $*" >&2
  exit 1
}

cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  for db in auth inventory; do
    PGOPTIONS="-c client_min_messages=warning" psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS erp${RUN}_${db}_db WITH (FORCE)" postgres || true
  done
  redis-cli --scan --pattern "erp${RUN}:*" | xargs -r redis-cli del >/dev/null
}
pids=()
trap cleanup EXIT

wait_http() { # URL PID NAME: until the URL answers 2xx; fail if the process dies or 60 s pass
  local tries=0
  until curl -sf "$1" >/dev/null; do
    kill -0 "$2" 2>/dev/null || fail "$3 exited during start-up (log: $OUT/$3.log)"
    ((++tries < 300)) || fail "$3 did not answer $1 within 60 s (log: $OUT/$3.log)"
    sleep 0.2
  done
}

saga() { # [--append]: the saga part, its table written (or appended) to $OUT/last.md
  echo "== saga: $SAGA_ORDERS orders, $SAGA_CONCURRENCY in flight, no CPU pinning"
  $PY -m bench.saga --orders "$SAGA_ORDERS" --concurrency "$SAGA_CONCURRENCY" --logs "$OUT/saga" \
    --output "$OUT/last.md" "$@" \
    --note "make bench (saga), $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $(nproc) core(s): $SAGA_ORDERS orders of 1 item, $SAGA_CONCURRENCY in flight (httpx), confirmation and completion seen on the wire" ||
    fail "saga (logs: $OUT/saga)"
}
case $BENCH in
  all | http) ;;
  saga) mkdir -p "$OUT" && saga && exit 0 ;;
  *) fail "BENCH=$BENCH: all, http or saga" ;;
esac

rm -rf "$RAW" "$CHECK"
mkdir -p "$RAW" "$CHECK"

$ERP users create-admin bench@example.com --password Load-test-pass-42 >/dev/null
$ERP serve auth >"$OUT/auth.log" 2>&1 & pids+=($!)
wait_http http://127.0.0.1:18101/health/ready "$!" auth
"${server_pin[@]}" $ERP serve inventory >"$OUT/inventory.log" 2>&1 & pids+=($!)
wait_http "${BASE[service]}/health/ready" "$!" inventory
# After the service: its start-up migrates the database and seeds the default warehouse.
"${server_pin[@]}" $PY -m bench.twin --port "$TWIN_PORT" >"$OUT/twin.log" 2>&1 & pids+=($!)
wait_http "${BASE[twin]}/health/live" "$!" twin

token_at=-1000
login() { # a fresh access token when the one in hand is older than 10 min (it lives 15)
  if ((SECONDS - token_at > 600 - DURATION)); then
    token=$(curl -sf -X POST http://127.0.0.1:18101/api/v1/auth/login -H 'Content-Type: application/json' \
      -d '{"email":"bench@example.com","password":"Load-test-pass-42"}' | $PY -c 'import json,sys; print(json.load(sys.stdin)["tokens"]["access_token"])')
    token_at=$SECONDS
  fi
}
login
product_id=$(curl -sf -X POST "${BASE[service]}/api/v1/products" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"sku":"BENCH-1","name":"Bench","price":"9.90"}' |
  $PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
RECEIPT='{"product_id":"'$product_id'","quantity":1,"reason":"Bench receipt","reference":"BENCH"}'
# A first receipt, so that GET /api/v1/stock lists a row.
curl -sf -X POST "${BASE[service]}/api/v1/stock/receive" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d "$RECEIPT" >/dev/null

# --- same answers before any load ---------------------------------------------------------------

fetch() { # NAME SIDE PATH [curl args...]: status + content type → .meta, body → .body
  local name=$1 side=$2 path=$3
  shift 3
  curl -sS -o "$CHECK/$name.$side.body" -w '%{http_code}\n%{content_type}\n' "$@" "${BASE[$side]}$path" \
    >"$CHECK/$name.$side.meta"
}
same() { $PY -m bench.harness compare "$@" "$CHECK" || exit 1; }
rows() { # movements, outbox rows, units on hand
  psql -tA -F' ' -h 127.0.0.1 -U postgres -d "erp${RUN}_inventory_db" -c \
    "SELECT (SELECT count(*) FROM stock_movements), (SELECT count(*) FROM outbox), (SELECT coalesce(sum(on_hand), 0) FROM stock)"
}
bearer=(-H "Authorization: Bearer $token")
post=(-X POST -H 'Content-Type: application/json' -d "$RECEIPT")

echo "== same answers (curl, once)"
for side in service twin; do fetch live "$side" /health/live; done
same live
# The service fills the product list cache (the product it just created emptied it), the twin
# answers from that entry; then, with the entry retired, the twin fills it and the service reads it.
for side in service twin; do fetch products "$side" "/api/v1/products?per_page=15"; done
same products
redis-cli incr "${ERP_REDIS_PREFIX}cache:tag:inventory-products" >/dev/null
for side in twin service; do fetch products-twin-filled "$side" "/api/v1/products?per_page=15"; done
same products-twin-filled
for side in service twin; do fetch stock "$side" /api/v1/stock "${bearer[@]}"; done
same stock
read -r movements0 outbox0 units0 < <(rows)
fetch receive service /api/v1/stock/receive "${bearer[@]}" "${post[@]}"
read -r movements1 outbox1 units1 < <(rows)
fetch receive twin /api/v1/stock/receive "${bearer[@]}" "${post[@]}"
read -r movements2 outbox2 units2 < <(rows)
# The stock level moves between the two receipts: only the change must agree.
same receive --ignore id,created_at --delta on_hand_before,on_hand_after
deltas="movements +$((movements1 - movements0)) / +$((movements2 - movements1)), outbox +$((outbox1 - outbox0)) / +$((outbox2 - outbox1)), units on hand +$((units1 - units0)) / +$((units2 - units1))"
[[ $((movements1 - movements0)) == 1 && $((movements2 - movements1)) == 1 && $((outbox1 - outbox0)) == $((outbox2 - outbox1)) && $((units1 - units0)) == $((units2 - units1)) ]] ||
  fail "receive: service and twin wrote different rows (service / twin: $deltas)"
echo "  same rows: receive (service / twin: $deltas)"

# --- load ---------------------------------------------------------------------------------------

ENDPOINTS=(
  "live|GET /health/live|/health/live"
  "products|GET /api/v1/products|/api/v1/products?per_page=15"
  "stock|GET /api/v1/stock|/api/v1/stock"
  "receive|POST /api/v1/stock/receive|/api/v1/stock/receive"
)

load() { # SLUG LABEL PATH SIDE RUN SECONDS: one wrk run, checked
  local slug=$1 label=$2 path=$3 side=$4 run=$5 seconds=$6 args=()
  login
  case $slug in
    stock) args=(-H "Authorization: Bearer $token") ;;
    receive) args=(-s bench/receive.lua) ;;
  esac
  local file="$RAW/$slug.$side.$run"
  [[ $run == warmup ]] && file+=.log || file+=.txt
  BENCH_TOKEN=$token BENCH_PRODUCT_ID=$product_id "${wrk_pin[@]}" \
    wrk -t1 -c16 -d"${seconds}s" --latency "${args[@]}" "${BASE[$side]}$path" >"$file" 2>&1 ||
    fail "$label ($side): wrk failed: $(cat "$file")"
  $PY -m bench.harness check "$label ($side, $run)" "$file" || exit 1
}

echo "== load: wrk -t1 -c16 -d${DURATION}s --latency, $ROUNDS round(s) per side, $pinning"
table_args=()
for entry in "${ENDPOINTS[@]}"; do
  IFS='|' read -r slug label path <<<"$entry"
  table_args+=("$slug=$label")
  if ((WARMUP > 0)); then
    for side in service twin; do load "$slug" "$label" "$path" "$side" warmup "$WARMUP"; done
  fi
  for ((round = 1; round <= ROUNDS; round++)); do
    order=(service twin)
    ((round % 2)) || order=(twin service)
    for side in "${order[@]}"; do load "$slug" "$label" "$path" "$side" "round-$round" "$DURATION"; done
  done
done

echo "== medians"
note="make bench, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD): wrk -t1 -c16 -d${DURATION}s, median of $ROUNDS round(s) per side, $pinning; ratio = service req/s / twin req/s"
$PY -m bench.harness table "$RAW" "$OUT/last.md" "${table_args[@]}" --note "$note"

if [[ $BENCH == all ]]; then
  # The wrk part's processes and data go first: the saga has the machine to itself.
  cleanup
  pids=()
  saga --append
fi
