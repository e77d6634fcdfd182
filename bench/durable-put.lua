-- bench/durable's wrk script for objects: METHOD (PUT or POST) bodies of SIZE bytes to KEYS
-- keys in turn (/o<thread>-<n mod KEYS>: the store stays bounded, overwrites free the old
-- object), or, with METHOD GET, reads of those keys. Args after "--": METHOD SIZE KEYS. Prints
-- the DURABLE line (bench/_durable-done.lua) at the end:
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

-- the DURABLE line at the end, shared with the other script (next to this one)
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "_durable-done.lua")
