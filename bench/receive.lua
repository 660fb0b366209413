-- wrk script of `make bench`: POST /api/v1/stock/receive, one unit of the bench product into the
-- default warehouse per request. tools/dev/bench.sh passes the access token and the product id in
-- BENCH_TOKEN and BENCH_PRODUCT_ID.
local token = assert(os.getenv("BENCH_TOKEN"), "BENCH_TOKEN is not set")
local product = assert(os.getenv("BENCH_PRODUCT_ID"), "BENCH_PRODUCT_ID is not set")

wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"product_id":"' .. product .. '","quantity":1,"reason":"Bench receipt","reference":"BENCH"}'
