-- bench/durable's wrk script: POST bodies of SIZE bytes to distinct keys, a counter per thread
-- (/t<thread>-<n>, n wrapping at KEYS so a long run overwrites old keys instead of filling the
-- server's store). Args after "--": SIZE KEYS. At the end prints the totals and the
-- latency distribution (µs) for the CDF (bench/_durable-done.lua):
--   DURABLE {"requests":N,"duration_us":D,"bytes":B,"errors":{...},"pct":[[p,us],...]}
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

-- the DURABLE line at the end, shared with the other script (next to this one)
done = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "_durable-done.lua")
