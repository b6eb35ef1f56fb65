"""The benchmark harness: ``python -m bench`` runs every scenario and writes ``bench/RESULTS.md``.

Scenarios (see ``bench/harness.py`` for the sizes and ``RESULTS.md`` for the definitions):

- a) 200 runs x 10 steps: steps/s, ours and DBOS Transact (SQLite system database)
- b) 1-step start -> result latency p50/p99, ours and DBOS
- c) ``send_event`` -> resumed run latency
- d) 1,000 concurrent runs x 10 steps
- e) one run of 10,000 steps (and 1k/5k to show ``history()`` and replay are linear)
- f) restart with 100,000 parked runs: time to serve, memory per parked run
- g) KV and database operations at both durabilities

Every measurement runs in a fresh child process (``python -m bench.job``) on a fresh data
folder, so one scenario's heap, threads and page cache state do not leak into the next, and the
peer's global state (DBOS is a process-wide singleton) never shares a process with ours.
"""
