-- wrk script of bench/prune.sh: refresh-token rotation at /oauth/token, the load that
-- writes the pruned table (each request consumes a token and stores its successor).
-- BENCH_BASIC: the client's `Authorization: Basic ...` value; BENCH_SESSIONS: a file of
-- current refresh tokens, one a line, one per thread. Run it with as many connections as
-- threads (-t N -c N): a thread then sends one request at a time and follows its session
-- with the refresh_token of each answer. Any answer but 200 is counted (and breaks that
-- session: later requests of the thread are refused too, so the count shows it).
wrk.method = "POST"
wrk.path = "/oauth/token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("BENCH_BASIC")

local threads = {}
local sessions = {}
for line in io.lines(os.getenv("BENCH_SESSIONS")) do
   if line ~= "" then table.insert(sessions, line) end
end

function setup(thread)
   table.insert(threads, thread)
   local token = sessions[#threads]
   if token == nil then
      error("BENCH_SESSIONS has fewer sessions than threads")
   end
   thread:set("token", token)
end

bad = 0

function request()
   return wrk.format(nil, nil, nil, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
   if status == 200 then
      token = body:match('"refresh_token":"([^"]+)"') or token
   else
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
