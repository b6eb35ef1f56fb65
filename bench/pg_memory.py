"""``python -m bench.pg_memory``: what a host holds in memory per finished run and per KV key,
on PostgreSQL and on a data folder, side by side in one run (issue 14, item 6).

    python -m bench.pg_memory                  # 8,000 runs, 20,000 keys
    python -m bench.pg_memory --runs 2000 --keys 5000

One throwaway PostgreSQL (``tests/support/postgres.py``; fsync off: this measures memory, not
commits) and a fresh database per measurement; the folder figures use a fresh folder under the
bench's temp root. Every figure is a fresh process (``python -m bench.job``):

- **runs, while they end**: RSS after N one-step runs ended in one worker minus RSS after the
  warm-up (``runs_finish_rss``): what a finished run leaves in the process that ran it;
- **runs, after a restart**: RSS of a worker that opened the store holding them minus that of a
  worker on an empty store (``runs_open_rss``), before and after compaction (the host compacts
  at start past a size threshold, and every hour);
- **KV keys, after a restart**: the same difference for a store holding ``--keys`` keys
  (``kv_fill``, then ``kv_reopen``), before and after compaction (on PostgreSQL the keys live in
  rows: what remains before compaction is the replay of the events log's lines, not the keys).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.common import banner, loadavg, pick_tmp_root, run_job, scratch

MIB = 1024 * 1024


def _measure(location: str, empty: str, runs: int, keys: int, kv_location: str) -> dict[str, Any]:
    finished = run_job("runs_finish_rss", {"n": runs, "data": location}).result
    opened = run_job("runs_open_rss", {"data": location}).result
    run_job("runs_compact", {"data": location})
    compacted = run_job("runs_open_rss", {"data": location}).result
    baseline = run_job("runs_open_rss", {"data": empty}).result
    run_job("kv_fill", {"data": kv_location, "keys": keys, "writers": 100})
    with_keys = run_job("kv_reopen", {"data": kv_location}).result
    run_job("runs_compact", {"data": kv_location})
    keys_compacted = run_job("kv_reopen", {"data": kv_location}).result
    return {
        "while_ending": finished["per_run"],
        "restart": (opened["rss"] - baseline["rss"]) / runs,
        "compacted": (compacted["rss"] - baseline["rss"]) / runs,
        "per_key": (with_keys["rss"] - baseline["rss"]) / keys,
        "per_key_compacted": (keys_compacted["rss"] - baseline["rss"]) / keys,
        "keys_seen": with_keys["keys"],
        "keys_seen_compacted": keys_compacted["keys"],
        "empty_mib": baseline["rss"] / MIB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.pg_memory",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--runs", type=int, default=8000, help="finished runs (default 8000)")
    parser.add_argument("--keys", type=int, default=20000, help="KV keys (default 20000)")
    parser.add_argument("--tmp", help="where the data folders go")
    args = parser.parse_args(argv)
    from tests.support.postgres import PostgresServer

    root = pick_tmp_root(args.tmp)
    load = " ".join(f"{x:.2f}" for x in loadavg())
    print(banner(), flush=True)
    rows: dict[str, dict[str, Any]] = {}
    with PostgresServer() as server:
        dbs = [server.create_database().url for _ in range(3)]
        rows["PostgreSQL"] = _measure(dbs[0], dbs[1], args.runs, args.keys, dbs[2])
    with scratch(root, "pg-memory") as folder:
        rows["folder"] = _measure(
            str(folder / "runs"), str(folder / "empty"), args.runs, args.keys, str(folder / "kv")
        )
    print()
    print(
        f"Bytes of RSS per finished run ({args.runs:,} one-step runs) and per KV key"
        f" ({args.keys:,} keys), fresh processes, load {load}."
    )
    print(
        "| store | per run, while they end | per run, after a restart"
        " | per run, after compaction and a restart | per KV key, after a restart"
        " | per KV key, after compaction and a restart | keys seen |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['while_ending']:,.0f} B | {row['restart']:,.0f} B"
            f" | {row['compacted']:,.0f} B | {row['per_key']:,.0f} B"
            f" | {row['per_key_compacted']:,.0f} B"
            f" | {row['keys_seen']:,} / {row['keys_seen_compacted']:,} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
