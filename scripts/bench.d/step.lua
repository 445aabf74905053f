-- wrk script of scripts/bench's autoscale section: POSTs to /embed and, when
-- done, prints the 200 answers of every second ("sec <unix second> <count>"),
-- the p99 ("p99_ms") and the errors, which stats.py autoscale reads.
wrk.method = "POST"
wrk.body = "I love this product, it scales by itself"
wrk.headers["Content-Type"] = "text/plain"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) counts = {} end
function response(status, headers, body)
  if status == 200 then
    local s = os.time()
    counts[s] = (counts[s] or 0) + 1
  end
end
function done(summary, latency, requests)
  local all = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do all[k] = (all[k] or 0) + v end
  end
  local keys = {}
  for k in pairs(all) do table.insert(keys, k) end
  table.sort(keys)
  for _, k in ipairs(keys) do io.write(string.format("sec %d %d\n", k, all[k])) end
  io.write(string.format("p99_ms %.3f\n", latency:percentile(99) / 1000))
  io.write(string.format("errors %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
