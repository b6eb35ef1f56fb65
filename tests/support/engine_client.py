"""A client process beside ``engine_worker.py``: sends events (and starts a few runs) through
the ledger, the way a script or the CLI does.

usage: engine_client.py DATA_DIR MODE SEED

  MODE "run":   every few tens of ms, send the event of each live ``waiter`` run whose ``sender``
                is ``"client"`` and whose event is not in the ledger yet; now and then start a
                run; until killed.
  MODE "drain": only send events; exit once every run in the ledger is terminal.

Stdout, one line each, printed after the awaited call returned: ``ready``,
``start <json {runId, workflowId, input}>``, ``event <json payload>``, ``drained``.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import random
import signal
import sys
from typing import Any

from platform_shim.jsonvalue import loads
from platform_shim.platform import open_client
from platform_shim.workflows.service import ClientWorkflows
from tests.support.engine_worker import EVENT_TYPE, new_input, say


async def main(data_dir: str, mode: str, seed: str) -> None:
    rng = random.Random(f"{seed}/client/{os.getpid()}")
    platform = open_client(data_dir)
    try:
        workflows = platform.workflows
        assert isinstance(workflows, ClientWorkflows)
        state = workflows.state
        sent: set[str] = set()
        say("ready")
        while True:
            await asyncio.sleep(rng.uniform(0.01, 0.06))
            workflows.log.refresh()
            have = {loads(signal.payload)["key"] for signal in state.signals.get(EVENT_TYPE, ())}
            todo: list[dict[str, Any]] = []
            for run in list(state.runs.values()):
                if run.workflow_id != "waiter" or run.status.terminal:
                    continue
                spec = loads(run.input)
                key = spec["key"]
                if spec["sender"] == "client" and spec["send"] and key not in have | sent:
                    todo.append({"key": key, "from": "client", "pid": os.getpid()})
            for payload in todo:
                sent.add(payload["key"])
                await workflows.send_event(EVENT_TYPE, payload)
                say("event", payload)
            if mode == "run" and rng.random() < 0.15:
                workflow_id = rng.choice(["multi", "waiter"])
                spec = new_input(rng, workflow_id)
                handle = await workflows.start(workflow_id, spec)
                say("start", {"runId": handle.run_id, "workflowId": workflow_id, "input": spec})
            if mode == "drain" and all(run.status.terminal for run in state.runs.values()):
                break
    finally:
        platform.close()
    say("drained")


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)
    asyncio.run(main(*sys.argv[1:4]))
