-- The request mix for bench/overload (tokens = {...} is prepended by __main__.py).
-- Per 8 requests: 3 /v1/me, 2 searches, 2 workspace creates, 1 made-up token.
-- Counts answers by status, and 429/503 answers that lack Retry-After.

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  missing = 0
  n = 0
end

local function bearer(token)
  return { ["Authorization"] = "Bearer " .. token }
end

request = function()
  n = n + 1
  local token = tokens[(n * 7 + id) % #tokens + 1]
  local kind = n % 8
  if kind == 1 or kind == 2 then
    return wrk.format("GET", "/v1/jobs/search?q=error+timeout&limit=20", bearer(token))
  elseif kind == 3 or kind == 4 then
    local headers = bearer(token)
    headers["Content-Type"] = "application/json"
    local body = string.format('{"name":"w%d-%d","image_ref":"debian:12","cpus":1,"memory_mb":256,"disk_gb":1}', id, n)
    return wrk.format("POST", "/v1/workspaces", headers, body)
  elseif kind == 5 then
    return wrk.format("GET", "/v1/me", bearer(string.format("a4c_madeup%d_%d_%d", id, n, math.random(1e9))))
  end
  return wrk.format("GET", "/v1/me", bearer(token))
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if (status == 429 or status == 503) and headers["Retry-After"] == nil and headers["retry-after"] == nil then
    missing = missing + 1
  end
end

done = function(summary, latency, requests)
  local total = {}
  local absent = 0
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses")) do
      total[code] = (total[code] or 0) + count
    end
    absent = absent + thread:get("missing")
  end
  for code, count in pairs(total) do
    io.write(string.format("a4c-status %d %d\n", code, count))
  end
  io.write(string.format("a4c-missing-retry-after %d\n", absent))
  local e = summary.errors
  io.write(string.format("a4c-socket-errors %d %d %d %d\n", e.connect, e.read, e.write, e.timeout))
end
