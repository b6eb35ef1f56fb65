"""Cross-process stress: 200 runs parked on ``wait_for_event``, resumed by events that three
client processes and several in-process tasks send all at once.

The worker runs in this process (real clock, watcher on); each run waits for its own match
key and each key's event is sent exactly once, by one sender. Every run must end with its own
payload within a bound; no send may claim more resumptions than happened.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim import open_platform
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus
from tests.support.procs import spawn
from tests.support.reap import finish, read_line, reaping

RUNS = 200
CLIENTS = 3
TASKS = 6
CLIENT_SHARE = 0.6  # of the keys; the in-process tasks send the rest
BOUND_S = 30.0


@define_workflow({"id": "stress-wait"})
async def stress_wait(input: Any, step: Any, ctx: Any) -> Any:
    before = await step.run("before", lambda: input["key"])
    payload = await step.wait_for_event("go", type="stress.go", match={"key": before})
    await step.run("after", lambda: None)
    return payload


@pytest.mark.slow
async def test_events_from_three_processes_and_local_tasks_resume_every_run(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    go = tmp_path / "go"
    rng = random.Random()
    keys = [f"k{i:03d}-{rng.randrange(1 << 30):08x}" for i in range(RUNS)]
    async with open_platform(data_dir, workflows=[stress_wait], watch=True) as platform:
        handles = {key: await platform.workflows.start("stress-wait", {"key": key}) for key in keys}
        await platform.settle()
        waiting = await platform.workflows.list(status="waiting_event", limit=1000)
        assert len(waiting) == RUNS

        shuffled = keys[:]
        rng.shuffle(shuffled)
        cut = int(RUNS * CLIENT_SHARE)
        client_keys, local_keys = shuffled[:cut], shuffled[cut:]
        procs = []
        for n in range(CLIENTS):
            share = tmp_path / f"keys-{n}.json"
            share.write_bytes(orjson.dumps(client_keys[n::CLIENTS]))
            procs.append(spawn("event_sender", str(data_dir), str(go), str(share), f"client-{n}"))
        with reaping(*procs):
            for proc in procs:
                assert await asyncio.to_thread(read_line, proc) == "ready\n"
            sent: dict[str, dict[str, Any]] = {}
            local_counts: list[int] = []
            todo = iter(local_keys)

            async def local_sender(tag: str) -> None:
                for key in todo:
                    payload = {"key": key, "from": tag}
                    sent[key] = payload
                    local_counts.append(await platform.workflows.send_event("stress.go", payload))
                    await asyncio.sleep(rng.uniform(0, 0.002))

            started = time.monotonic()
            go.touch()  # every sender is loaded: they all start now
            await asyncio.gather(*(local_sender(f"local-{n}") for n in range(TASKS)))
            outputs = await asyncio.wait_for(
                asyncio.gather(*(handle.result() for handle in handles.values())), BOUND_S
            )
            elapsed = time.monotonic() - started
            client_counts: list[int] = []
            for proc in procs:
                out, _ = await asyncio.to_thread(finish, proc)
                lines = out.split("\n")
                assert lines[-2:] == ["done", ""]
                for line in lines[:-2]:
                    kind, _, body = line.partition(" ")
                    assert kind == "sent", line
                    item = orjson.loads(body)
                    assert item["payload"]["key"] not in sent
                    sent[item["payload"]["key"]] = item["payload"]
                    client_counts.append(item["count"])

        # Each key sent exactly once overall, and every run got its own event.
        assert sorted(sent) == sorted(keys)
        for key, output in zip(handles, outputs, strict=True):
            assert output == sent[key], f"run for {key} got {output}, sent {sent[key]}"
        runs = await platform.workflows.list(limit=1000)
        assert len(runs) == RUNS
        assert all(run.status is RunStatus.COMPLETED for run in runs)
        for handle in list(handles.values())[:20]:
            history = await handle.history()
            assert [s.name for s in history] == ["before", "go", "after"]

        # A send resumes at most the one run waiting for its key: the counts never overclaim.
        assert len(local_counts) == len(local_keys)
        assert sum(local_counts) <= len(local_keys)
        assert set(local_counts) <= {0, 1}
        # Every run was parked before any event went out, so each local send resumed its run.
        assert sum(local_counts) == len(local_keys)
        assert set(client_counts) <= {0, 1}
        assert sum(client_counts) <= len(client_keys)
    print(
        f"{RUNS} runs resumed by {len(client_keys)} client + {len(local_keys)} local events in {elapsed:.2f}s"
    )
