-- bench/durable's wrk script for objects: METHOD (PUT or POST) bodies of SIZE bytes to KEYS
-- keys in turn (/o<thread>-<n mod KEYS>: the store stays bounded, overwrites free the old
-- object), or, with METHOD GET, reads of those keys. Args after "--": METHOD SIZE KEYS. Prints
-- the same DURABLE line as durable-post.lua, and the bytes moved:
--   DURABLE {"requests":N,"duration_us":D,"bytes":B,"errors":{...},"pct":[[p,us],...]}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end

function init(args)
  method = args[1] or "PUT"
  local size = tonumber(args[2] or "65536")
  keys = tonumber(args[3] or "16")
  if method ~= "GET" then
    body = string.rep("pmstack!", math.floor(size / 8)) .. string.rep("x", size % 8)
  end
  local prefix = "/o" .. tostring(tid) .. "-"
  local headers = { ["Content-Type"] = "application/octet-stream" }
  -- every request formatted once here: building a request of many MiB per call (a string of
  -- the whole body) would make the client, not the server, set the rate
  reqs = {}
  for k = 0, keys - 1 do
    if method == "GET" then
      reqs[k] = wrk.format("GET", prefix .. tostring(k), headers)
    else
      reqs[k] = wrk.format(method, prefix .. tostring(k), headers, body)
    end
  end
  body = nil
  n = 0
end

function request()
  n = n + 1
  return reqs[n % keys]
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
    'DURABLE {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"pct":[%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ",")))
end
