"""Side-by-side benchmarks: ncr-trio against CNCF Distribution, on 127.0.0.1 (`python -m benchmarks`).

Modules:
  servers  - which servers can run, and starting/stopping them with fresh storage
  blobs    - the random test blobs (generated once per run) and the small image fixture
  loads    - the load clients: curl for large bodies, wrk for request rates, loadgen (Go) for concurrency
  cache    - the cache figure's source registry (behind a counting proxy) and the pull-through cache setups
  figures  - what is measured, and how each measurement drives a server
  runner   - rounds, interleaving servers A B A B, error capture, cleanup
  report   - statistics, the table, the JSON file
"""
