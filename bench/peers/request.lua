-- wrk script of bench/peers.sh: one request, over and over, on every connection.
--   BENCH_METHOD  GET or POST
--   BENCH_PATH    the path (and query), e.g. /oauth/token
--   BENCH_BODY    a form body for POST (application/x-www-form-urlencoded), or empty
--   BENCH_AUTH    an Authorization value (Basic ...), or empty
-- Any answer but 2xx is counted (the first one is printed on stderr), and done() prints
-- one machine-readable line: the script fails a run whose non2xx is not 0.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.path = os.getenv("BENCH_PATH") or "/"
local body = os.getenv("BENCH_BODY") or ""
if body ~= "" then
   wrk.body = body
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
end
local auth = os.getenv("BENCH_AUTH") or ""
if auth ~= "" then
   wrk.headers["Authorization"] = auth
end

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

bad = 0

function response(status, headers, body)
   if status < 200 or status > 299 then
      bad = bad + 1
      if bad == 1 then
         io.stderr:write("first non-2xx: " .. status .. " " .. string.sub(body or "", 1, 300) .. "\n")
      end
   end
end

function done(summary, latency, requests)
   local non2xx = 0
   for _, t in ipairs(threads) do
      non2xx = non2xx + t:get("bad")
   end
   local e = summary.errors
   local seconds = summary.duration / 1e6
   io.write(string.format(
      "BENCH requests=%d seconds=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d socket_errors=%d\n",
      summary.requests, seconds, summary.requests / seconds,
      latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
      non2xx, e.connect + e.read + e.write + e.timeout))
end
