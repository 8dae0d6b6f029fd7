-- POST the file named by BENCH_BODY to every request, and print wrk's figures as one JSON line.
-- Both API-key headers are sent, so one script serves /v1/messages, /v1/chat/completions and the upstream.
local path = assert(os.getenv("BENCH_BODY"), "set BENCH_BODY to the request body file")
local file = assert(io.open(path, "rb"))
local body = file:read("*a")
file:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-api-key"] = "bench"
wrk.headers["Authorization"] = "Bearer bench"
wrk.headers["anthropic-version"] = "2023-06-01"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, ' ..
    '"errors_status": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
