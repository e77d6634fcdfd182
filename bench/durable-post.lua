-- bench/durable's wrk script: POST bodies of SIZE bytes to distinct keys, a counter per thread
-- (/t<thread>-<n>, n wrapping at KEYS so a long run overwrites old keys instead of filling the
-- server's store). Args after "--": SIZE KEYS. At the end prints one line per thread count and
-- the latency distribution (µs) for the CDF:
--   DURABLE {"requests":N,"duration_us":D,"errors":{...},"pct":[[p,us],...]}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

function init(args)
  local size = tonumber(args[1] or "1024")
  keys = tonumber(args[2] or "16384")
  local chars = {}
  for i = 1, size do
    chars[i] = string.char(97 + (i * 7) % 26)
  end
  body = table.concat(chars)
  prefix = "/t" .. tostring(tid) .. "-"
  headers = { ["Content-Type"] = "application/octet-stream" }
  n = 0
end

function request()
  n = n + 1
  return wrk.format("POST", prefix .. tostring(n % keys), headers, body)
end

local PCTS = { 0.1, 1, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 92.5, 95, 97, 98, 99, 99.5, 99.9, 99.99, 100 }

function done(summary, latency, requests)
  local parts = {}
  for _, p in ipairs(PCTS) do
    local v = (p == 100) and latency.max or latency:percentile(p)
    parts[#parts + 1] = string.format("[%g,%d]", p, v)
  end
  local e = summary.errors
  io.write(string.format(
    'DURABLE {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"pct":[%s]}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ",")))
end
