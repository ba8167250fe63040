-- wrk script of the wallet benchmark.
--
--   wrk ... -s bench/wrk/wallet.lua URL -- MODE API_KEY LINES_FILE [BODY]
--
-- MODE
--   get       GET a random line of LINES_FILE (a path)
--   post      POST BODY to a random line of LINES_FILE (a path), with a new Idempotency-Key
--   transfer  POST /v1/transfers of 1 between two random wallets of LINES_FILE (wallet ids)
--   replay    POST BODY to a random line "KEY PATH" of LINES_FILE, with that Idempotency-Key
--   journal   POST /v1/journal of BODY postings of 1 of GOLD, each between two random wallets of
--             LINES_FILE (wallet ids)
--   batch     POST /v1/batches of BODY spends of 1, each on a random wallet of LINES_FILE, each
--             item with a new idempotency_key
--
-- A new Idempotency-Key is the thread number, a per-thread counter and a random number, so no
-- two requests (or batch items) of a run share one. done() prints one line "BENCH_RESULT {json}"
-- with the request count, latency percentiles (microseconds), the count of each HTTP status, the
-- replayed answers and, for batches, the items sent and the items answered 201.

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("thread_number", thread_count)
   table.insert(threads, thread)
end

local mode, lines, body, key_prefix, api_key, count
local counter = 0
statuses = {}
replayed = 0
items_sent = 0
items_created = 0

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
   assert(mode == "get" or mode == "post" or mode == "transfer" or mode == "replay"
      or mode == "journal" or mode == "batch", mode)
   if mode == "journal" or mode == "batch" then
      count = assert(tonumber(body), "BODY must be a count")
   end
end

local function new_key()
   counter = counter + 1
   return key_prefix .. counter .. "-" .. math.random(1, 1000000000)
end

-- wrk.format uses wrk.headers only when given no headers, so every request gets its own.
local function request_headers(idempotency_key, with_body)
   local result = { ["Authorization"] = "Bearer " .. api_key }
   if idempotency_key or with_body then
      result["Content-Type"] = "application/json"
   end
   if idempotency_key then
      result["Idempotency-Key"] = idempotency_key
   end
   return result
end

local function random_line()
   return lines[math.random(#lines)]
end

local function two_random_lines()
   local source = random_line()
   local target = random_line()
   while target == source do
      target = random_line()
   end
   return source, target
end

local function journal_body()
   local postings = {}
   for i = 1, count do
      local source, target = two_random_lines()
      postings[i] = string.format('{"from":"%s","to":"%s","amount":1}', source, target)
   end
   return '{"asset":"GOLD","postings":[' .. table.concat(postings, ",") .. ']}'
end

local function batch_body()
   local items = {}
   for i = 1, count do
      items[i] = string.format('{"op":"spend","wallet_id":"%s","amount":1,"idempotency_key":"%s"}',
         random_line(), new_key())
   end
   return '{"items":[' .. table.concat(items, ",") .. ']}'
end

function request()
   if mode == "get" then
      return wrk.format("GET", random_line(), request_headers(nil))
   elseif mode == "post" then
      return wrk.format("POST", random_line(), request_headers(new_key()), body)
   elseif mode == "journal" then
      return wrk.format("POST", "/v1/journal", request_headers(new_key()), journal_body())
   elseif mode == "batch" then
      return wrk.format("POST", "/v1/batches", request_headers(nil, true), batch_body())
   elseif mode == "transfer" then
      local source, target = two_random_lines()
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
   if mode == "batch" and status == 200 then
      items_sent = items_sent + count
      local position = 1
      while true do
         local found = string.find(response_body, '"status":201,', position, true)
         if not found then
            break
         end
         items_created = items_created + 1
         position = found + 1
      end
   end
end

function done(summary, latency, requests)
   local merged = {}
   local replayed_total, sent_total, created_total = 0, 0, 0
   for _, thread in ipairs(threads) do
      for status, status_count in pairs(thread:get("statuses")) do
         merged[status] = (merged[status] or 0) + status_count
      end
      replayed_total = replayed_total + thread:get("replayed")
      sent_total = sent_total + thread:get("items_sent")
      created_total = created_total + thread:get("items_created")
   end
   local status_parts = {}
   for status, status_count in pairs(merged) do
      table.insert(status_parts, string.format('"%d":%d', status, status_count))
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,'
         .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p99.9":%d,"max":%d},'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"statuses":{%s},"replayed":%d,"items_sent":%d,"items_created":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.max,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      table.concat(status_parts, ","), replayed_total, sent_total, created_total))
end
