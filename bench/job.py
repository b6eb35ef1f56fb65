"""``python -m bench.job NAME ARGS_JSON``: run one measurement in this (fresh) process and print
its result as a ``BENCH-RESULT {json}`` line. The parent (``python -m bench``) spawns these."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any


def _jobs(name: str) -> Mapping[str, Callable[[dict[str, Any]], Any]]:
    # Import only what the job needs: the peer's jobs must not import our engine and ours must
    # not import DBOS (both would sit in memory and skew the other's figures).
    if name.startswith("dbos_"):
        from bench import peer_dbos

        return peer_dbos.JOBS
    from bench import s_restart, s_runs, s_services, s_soak, s_stall, s_workflows

    return {
        **s_workflows.JOBS,
        **s_restart.JOBS,
        **s_services.JOBS,
        **s_runs.JOBS,
        **s_stall.JOBS,
        **s_soak.JOBS,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m bench.job NAME ARGS_JSON\n")
        return 2
    name, args = argv[0], json.loads(argv[1])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    job = _jobs(name).get(name)
    if job is None:
        sys.stderr.write(f"unknown job {name!r}\n")
        return 2
    result = job(args)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    from bench.common import emit

    emit(result)
    return 0


async def _await(awaitable: Any) -> Any:
    return await awaitable


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
