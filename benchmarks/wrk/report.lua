-- wrk script for the benchmarks: the request method is the first argument after `--` (headers come
-- from wrk -H); done() prints one JSON line after the marker "BENCH-WRK " for benchmarks/loads.py.

-- (wrk's own wrk.init calls this init, then builds the request from wrk.method)
function init(args)
  if args[1] ~= nil then
    wrk.method = args[1]
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-WRK {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
