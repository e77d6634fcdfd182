-- The end of bench/durable's wrk scripts (durable-post.lua, durable-put.lua load it with
-- dofile): one line with the totals and the latency distribution (µs) for the CDF:
--   DURABLE {"requests":N,"duration_us":D,"bytes":B,"errors":{...},"pct":[[p,us],...]}
local PCTS = { 0.1, 1, 2, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 92.5, 95, 97, 98, 99, 99.5, 99.9, 99.99, 100 }

return function(summary, latency, requests)
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
