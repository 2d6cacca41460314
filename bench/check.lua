-- wrk script of bench/run: sends one request shape and counts the answers that are not what
-- the route answers when it works (another status, or a body without the marker), so a run
-- of fast errors cannot pass for a fast route. Configured through the environment:
--
--   BENCH_METHOD   GET (default) or POST
--   BENCH_BODY     the request body; "{n}" in it becomes a number unique to the request
--   BENCH_HEADERS  header lines "Name: value", separated by "\n"
--   BENCH_STATUS   the expected status (default 200)
--   BENCH_MARKER   text every expected body contains
--
-- `done` prints one line: BENCH {"requests":..,"unexpected":..,"rps":..,"p50_ms":..,...}.

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
  table.insert(threads, thread)
end

local method = os.getenv("BENCH_METHOD") or "GET"
local body = os.getenv("BENCH_BODY")
local expected_status = tonumber(os.getenv("BENCH_STATUS") or "200")
local marker = os.getenv("BENCH_MARKER")
local headers = {}
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then headers[name] = value end
end

function init(args)
  expected = 0
  unexpected = 0
  sample = ""
  sent = 0
end

function request()
  sent = sent + 1
  local payload = body
  if payload then
    -- Unique across threads: the thread's number, then its own count.
    payload = string.gsub(payload, "{n}", thread_id .. "-" .. sent)
  end
  return wrk.format(method, nil, headers, payload)
end

function response(status, _, response_body)
  if status == expected_status and (marker == nil or string.find(response_body, marker, 1, true)) then
    expected = expected + 1
  else
    unexpected = unexpected + 1
    if sample == "" then sample = status .. " " .. string.sub(response_body or "", 1, 200) end
  end
end

function done(summary, latency, requests)
  local good, bad, first_bad = 0, 0, ""
  for _, thread in ipairs(threads) do
    good = good + thread:get("expected")
    bad = bad + thread:get("unexpected")
    local s = thread:get("sample")
    if first_bad == "" and s ~= nil then first_bad = s end
  end
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  local seconds = summary.duration / 1e6
  first_bad = string.gsub(first_bad, '[%c"\\]', " ")
  io.write(string.format(
    'BENCH {"requests":%d,"expected":%d,"unexpected":%d,"socket_errors":%d,"seconds":%.3f,'
      .. '"rps":%.1f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"sample":"%s"}\n',
    summary.requests, good, bad, errors, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, first_bad))
end
