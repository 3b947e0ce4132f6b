-- wrk script of bench/prune.sh: the client_credentials grant at /oauth/token.
-- BENCH_BASIC: the client's `Authorization: Basic ...` value (client_secret_basic).
-- Any answer but 200 is counted, and done() prints one machine-readable line.
wrk.method = "POST"
wrk.path = "/oauth/token"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_BASIC")

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

bad = 0

function response(status, headers, body)
   if status ~= 200 then
      bad = bad + 1
      if bad == 1 then io.stderr:write("first non-200: " .. status .. " " .. body .. "\n") end
   end
end

function done(summary, latency, requests)
   local non200 = 0
   for _, t in ipairs(threads) do
      non200 = non200 + t:get("bad")
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d seconds=%.1f rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f non200=%d socket_errors=%d\n",
      summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
      latency.max / 1e3, non200, e.connect + e.read + e.write + e.timeout))
end
