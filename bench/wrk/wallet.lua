-- wrk script of the wallet benchmark.
--
--   wrk ... -s bench/wrk/wallet.lua URL -- MODE API_KEY LINES_FILE [BODY]
--
-- MODE
--   get       GET a random line of LINES_FILE (a path)
--   post      POST BODY to a random line of LINES_FILE (a path), with a new Idempotency-Key
--   transfer  POST /v1/transfers of 1 between two random wallets of LINES_FILE (wallet ids)
--   replay    POST BODY to a random line "KEY PATH" of LINES_FILE, with that Idempotency-Key
--
-- A new Idempotency-Key is the thread number, a per-thread counter and a random number, so no
-- two requests of a run share one. done() prints one line "BENCH_RESULT {json}" with the
-- request count, latency percentiles (microseconds) and the count of each HTTP status.

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_number", thread_count)
   table.insert(threads, thread)
end

local mode, lines, body, key_prefix, api_key
local counter = 0
statuses = {}
replayed = 0

local function read_lines(path)
   local result = {}
   local file = assert(io.open(path, "r"))
   for line in file:lines() do
      if line ~= "" then
         table.insert(result, line)
      end
   end
   file:close()
   assert(#result > 0, "no lines in " .. path)
   return result
end

function init(args)
   mode = args[1]
   api_key = args[2]
   lines = read_lines(args[3])
   body = args[4]
   math.randomseed(os.time() * 1000 + thread_number * 7919)
   key_prefix = string.format("wrk-%d-%d-", thread_number, math.random(1, 1000000000))
   assert(mode == "get" or mode == "post" or mode == "transfer" or mode == "replay", mode)
end

local function new_key()
   counter = counter + 1
   return key_prefix .. counter .. "-" .. math.random(1, 1000000000)
end

-- wrk.format uses wrk.headers only when given no headers, so every request gets its own.
local function request_headers(idempotency_key)
   local result = { ["Authorization"] = "Bearer " .. api_key }
   if idempotency_key then
      result["Content-Type"] = "application/json"
      result["Idempotency-Key"] = idempotency_key
   end
   return result
end

local function random_line()
   return lines[math.random(#lines)]
end

function request()
   if mode == "get" then
      return wrk.format("GET", random_line(), request_headers(nil))
   elseif mode == "post" then
      return wrk.format("POST", random_line(), request_headers(new_key()), body)
   elseif mode == "transfer" then
      local source = random_line()
      local target = random_line()
      while target == source do
         target = random_line()
      end
      local transfer = string.format(
         '{"from_wallet_id":"%s","to_wallet_id":"%s","amount":1}', source, target)
      return wrk.format("POST", "/v1/transfers", request_headers(new_key()), transfer)
   else
      local key, path = random_line():match("^(%S+) (%S+)$")
      return wrk.format("POST", path, request_headers(key), body)
   end
end

function response(status, headers, response_body)
   statuses[status] = (statuses[status] or 0) + 1
   if headers["idempotent-replayed"] == "true" or headers["Idempotent-Replayed"] == "true" then
      replayed = replayed + 1
   end
end

function done(summary, latency, requests)
   local merged = {}
   local replayed_total = 0
   for _, thread in ipairs(threads) do
      for status, count in pairs(thread:get("statuses")) do
         merged[status] = (merged[status] or 0) + count
      end
      replayed_total = replayed_total + thread:get("replayed")
   end
   local status_parts = {}
   for status, count in pairs(merged) do
      table.insert(status_parts, string.format('"%d":%d', status, count))
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,'
         .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,"max":%d},'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"statuses":{%s},"replayed":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      table.concat(status_parts, ","), replayed_total))
end
