"""The chaos suite's load: a client process driving a host over HTTP (and the Python client).

usage: chaos_driver.py BASE_URL DATA_DIR ACKS_FILE SEED

Runs until SIGTERM, through any number of host deaths (a refused or cut request is simply not
acknowledged). Every operation is logged to ``ACKS_FILE`` (one JSON line, ``O_APPEND``) only
AFTER a 2xx answer (or, for the Python client, after the awaited call returned):

- ``{"op": "kv", "ns", "key", "value", "via"}``: a put to ``chaos/k:<uuid>`` (handler-eligible)
  or to one of a few ``plain/p<i>`` keys overwritten again and again (not eligible); before each
  overwrite ``{"op": "kv-try", ...}`` is logged, so the check knows which later values a
  cut-off request may have left;
- ``{"op": "db", "coll": "items", "doc", "via"}``: an insert (handler-eligible);
- ``{"op": "start", "runId", "workflowId", "input", "via"}``: a ``mixed`` run started with a
  caller-chosen run id (an idempotent start: retried until acknowledged);
- ``{"op": "event", "key", "via", "at"}``: the ``chaos.go`` event of a started run, sent a
  moment after its start and retried until acknowledged.

On SIGTERM it stops starting work, and prints one JSON line of figures to stdout:
requests sent, acknowledged, cut off (transport errors), and answers by status code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import orjson

from platform_shim.platform import Platform, open_client

EVENT_TYPE = "chaos.go"
PLAIN_KEYS = 6


class Driver:
    def __init__(self, base_url: str, data_dir: str, acks: str, seed: str) -> None:
        self.base_url = base_url
        self.data_dir = data_dir
        self.rng = random.Random(seed)
        self.fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.stopping = asyncio.Event()
        self.stats: Counter[str] = Counter()
        self.events: set[asyncio.Task[None]] = set()
        self.plain_seq = 0
        self.http: httpx.AsyncClient | None = None
        self.py: Platform | None = None

    def log(self, record: dict[str, Any]) -> None:
        record["at"] = int(time.time() * 1000)
        os.write(self.fd, orjson.dumps(record) + b"\n")

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """One request; None when it was cut off (the host died or is not up yet)."""
        assert self.http is not None
        self.stats["sent"] += 1
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.TransportError:
            self.stats["cut"] += 1
            await asyncio.sleep(0.05)
            return None
        self.stats[f"status {response.status_code}"] += 1
        if response.status_code >= 500:
            self.stats["5xx"] += 1
            sys.stderr.write(f"{method} {path} -> {response.status_code} {response.text[:500]}\n")
        return response

    # ------------------------------------------------------------------------- operations

    async def kv_eligible(self) -> None:
        key = f"k:{uuid.uuid4().hex}"
        value = {"v": uuid.uuid4().hex}
        response = await self.request("PUT", f"/api/kv/chaos/{key}", json=value)
        if response is not None and response.status_code == 200:
            self.log({"op": "kv", "ns": "chaos", "key": key, "value": value, "via": "http"})

    async def kv_plain(self) -> None:
        # Only this coroutine writes plain keys and it is never run twice at once: each key's
        # writes are sequential, so the last acknowledged one (or a later, cut-off one) wins.
        self.plain_seq += 1
        key = f"p{self.plain_seq % PLAIN_KEYS}"
        value = {"seq": self.plain_seq}
        self.log({"op": "kv-try", "ns": "plain", "key": key, "value": value})
        response = await self.request("PUT", f"/api/kv/plain/{key}", json=value)
        if response is not None and response.status_code == 200:
            self.log({"op": "kv", "ns": "plain", "key": key, "value": value, "via": "http"})

    async def db_insert(self) -> None:
        doc = {"_id": uuid.uuid4().hex, "n": self.rng.randint(0, 1000), "tags": ["a", "b"]}
        response = await self.request("PUT", "/api/db/items", json=doc)
        if response is not None and response.status_code == 200:
            self.log({"op": "db", "coll": "items", "doc": doc, "via": "http"})

    def mixed_input(self) -> dict[str, Any]:
        return {
            "key": uuid.uuid4().hex,
            "flaky": self.rng.random() < 0.3,
            "nap": self.rng.choice([50, 200, 600]),
        }

    async def start_mixed(self) -> None:
        spec = self.mixed_input()
        run_id = f"m-{spec['key']}"
        while not self.stopping.is_set():
            response = await self.request(
                "POST", "/api/workflows/mixed/start", params={"runId": run_id}, json=spec
            )
            if response is not None and response.status_code == 200:
                assert response.json() == {"runId": run_id}, response.text
                self.log(
                    {
                        "op": "start",
                        "runId": run_id,
                        "workflowId": "mixed",
                        "input": spec,
                        "via": "http",
                    }
                )
                self.later(self.send_event_http(spec["key"]))
                return

    async def send_event_http(self, key: str) -> None:
        await asyncio.sleep(self.rng.uniform(0.05, 1.5))
        body = {"eventType": EVENT_TYPE, "payload": {"key": key}}
        while not self.stopping.is_set():
            response = await self.request("POST", "/api/workflows/signal", json=body)
            if response is not None and response.status_code == 200:
                self.log({"op": "event", "key": key, "via": "http"})
                return
            await asyncio.sleep(0.1)

    async def python_client(self) -> None:
        """The same operations through ``open_client`` (no HTTP): the files directly."""
        assert self.py is not None
        py = self.py
        choice = self.rng.random()
        if choice < 0.35:
            key, value = f"k:py-{uuid.uuid4().hex}", {"v": uuid.uuid4().hex}
            await py.kv.put("chaos", key, value)
            self.log({"op": "kv", "ns": "chaos", "key": key, "value": value, "via": "py"})
        elif choice < 0.7:
            doc = {"_id": f"py-{uuid.uuid4().hex}", "n": 1}
            await py.database.insert_one("items", dict(doc))
            self.log({"op": "db", "coll": "items", "doc": doc, "via": "py"})
        else:
            spec = self.mixed_input()
            run_id = f"py-{spec['key']}"
            await py.workflows.start("mixed", spec, run_id=run_id)
            self.log(
                {"op": "start", "runId": run_id, "workflowId": "mixed", "input": spec, "via": "py"}
            )
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            await py.workflows.send_event(EVENT_TYPE, {"key": spec["key"]})
            self.log({"op": "event", "key": spec["key"], "via": "py"})

    def later(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.events.add(task)
        task.add_done_callback(self.events.discard)

    # ---------------------------------------------------------------------------- loops

    async def http_loop(self, ops: list[Any]) -> None:
        while not self.stopping.is_set():
            op = self.rng.choice(ops)
            await op()
            self.stats["ops"] += 1
            await asyncio.sleep(self.rng.uniform(0.005, 0.04))

    async def py_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                await self.python_client()
                self.stats["py ops"] += 1
            except Exception as exc:  # an unexpected failure of the client is a finding
                self.stats["py errors"] += 1
                sys.stderr.write(f"python client: {type(exc).__name__}: {exc}\n")
            await asyncio.sleep(self.rng.uniform(0.05, 0.2))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        self.py = open_client(self.data_dir)
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10.0) as self.http:
            general = [self.kv_eligible, self.db_insert, self.start_mixed, self.kv_eligible]
            loops = [
                loop.create_task(self.http_loop(general)),
                loop.create_task(self.http_loop(general)),
                loop.create_task(self.http_loop(general)),
                loop.create_task(self.http_loop([self.kv_plain])),
                loop.create_task(self.py_loop()),
            ]
            sys.stdout.write("ready\n")
            sys.stdout.flush()
            await self.stopping.wait()
            for task in [*loops, *self.events]:
                task.cancel()
            for task in [*loops, *list(self.events)]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self.py.close()
        os.close(self.fd)
        sys.stdout.write(orjson.dumps(dict(self.stats)).decode() + "\n")
        sys.stdout.flush()


def main() -> None:
    base_url, data_dir, acks, seed = sys.argv[1:5]
    asyncio.run(Driver(base_url, data_dir, acks, seed).run())


if __name__ == "__main__":
    main()
