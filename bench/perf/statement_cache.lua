-- wrk script for bench/perf/statement_cache.py: requests spread over many wallets.
-- Arguments (after --): mode (topup | read), a file of wallet ids (one a line), the API key, a run tag.
local thread_count = 0

function setup(thread)
    thread:set("thread_number", thread_count)
    thread_count = thread_count + 1
end

function init(args)
    mode = args[1]
    wallets = {}
    for line in io.lines(args[2]) do
        wallets[#wallets + 1] = line
    end
    headers = {["Authorization"] = "Bearer " .. args[3], ["Content-Type"] = "application/json"}
    prefix = args[4] .. "-" .. thread_number .. "-"
    counter = 0
end

function request()
    counter = counter + 1
    local wallet = wallets[(counter % #wallets) + 1]
    if mode == "read" then
        return wrk.format("GET", "/v1/wallets/" .. wallet, headers, nil)
    end
    headers["Idempotency-Key"] = prefix .. counter
    return wrk.format("POST", "/v1/wallets/" .. wallet .. "/topup", headers, '{"amount":1}')
end

