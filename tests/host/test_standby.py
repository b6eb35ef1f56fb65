"""Two ``serve`` hosts on one store (a data folder, a PostgreSQL database): the second is the
first's standby, and takes over.

Real processes (``tests/support/hostproc.py``) on the project of
``tests/support/standby_project.py``:

- the standby serves the whole API as a client: a run started through it is run by the worker
  and its result reads the same through both; KV, DB and events written on one read on the
  other; the dashboard's overview names the worker's pid on both;
- ``send_event`` through the standby resumes a run parked on the worker;
- the worker SIGKILLed while runs are running (a slow step body), sleeping and waiting for an
  event: the standby logs that it took over, and every run finishes, each ``run`` step recorded
  once with the token of the last body that ran (``effects.jsonl``, the ground truth), no step
  that had completed before the kill run again, and the standby's API now says it is the worker;
- a WebSocket opened on the standby keeps its subscription across the takeover;
- ``dev`` still fails fast on a folder another host works on, unless ``--standby``;
  ``serve --no-standby`` fails the same way.

The timeouts are guards against a broken feature (a standby that never takes over), not
timings: ``python -m bench.failover`` measures how long a takeover takes.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.hostproc import HostProcess, check_log
from tests.support.ledger import ledger_bytes
from tests.support.standby_project import EVENT_TYPE, write_standby_project
from tests.support.waiting import wait_until
from tests.support.wsclient import WsClient

TAKEOVER_GUARD_S = 30.0


def _effects(root: Path) -> list[dict[str, Any]]:
    path = root / "effects.jsonl"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture(params=["file", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The hosts' store: a data folder, or a fresh PostgreSQL database (one machine or many)."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_db").url
        return url
    return str(tmp_path / "data")


def _pair(tmp_path: Path, location: str) -> tuple[HostProcess, HostProcess]:
    project = write_standby_project(tmp_path)
    url = location if "://" in location else None
    data = None if url else Path(location)
    worker = HostProcess(project, data, tmp_path / "logs-a", store=url).launch()
    standby = HostProcess(project, data, tmp_path / "logs-b", store=url).launch()
    standby.wait_for_log("standby: the worker on")
    return worker, standby


def _stop(*hosts: HostProcess) -> None:
    for host in hosts:
        if host.proc is not None and host.proc.poll() is None:
            assert host.stop() == 0, host.log()[-6000:]
            check_log(host.log())


class _Sse:
    """``GET /api/events/stream`` on ``host``, read on a thread until the host ends it."""

    def __init__(self, host: HostProcess) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self._client = host.client(timeout=60.0)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            self._client.stream("GET", "/api/events/stream") as response,
        ):
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    self.connected.set()
                elif line.startswith("data: "):
                    self.events.append(orjson.loads(line[6:]))

    def wait_connected(self) -> None:
        assert self.connected.wait(15), "the SSE stream did not connect"

    def completed(self) -> set[str]:
        return {e["k"] for e in list(self.events) if e.get("t") == "workflow.run.completed"}

    def join(self) -> None:
        self._thread.join(30)


def _worker_of(host: HostProcess) -> dict[str, Any]:
    response = host.http.get("/_platform/api/overview")
    assert response.status_code == 200, response.text
    value: dict[str, Any] = response.json()["worker"]
    return value


@pytest.mark.slow
def test_the_standby_serves_the_api_and_the_worker_runs_what_it_starts(
    tmp_path: Path, location: str
) -> None:
    worker, standby = _pair(tmp_path, location)
    try:
        assert worker.proc is not None and standby.proc is not None
        assert f"the worker on {location} is pid {worker.proc.pid}" in standby.log()
        assert _worker_of(worker) == {"pid": worker.proc.pid, "self": True, "role": "worker"}
        assert _worker_of(standby) == {"pid": worker.proc.pid, "self": False, "role": "standby"}

        run_id = standby.start_run("quick")
        done = standby.wait_status(run_id, "completed")
        assert worker.run(run_id) == done
        assert worker.history(run_id) == standby.history(run_id)
        [body] = [e for e in _effects(tmp_path) if e["run"] == run_id]
        assert body["pid"] == worker.proc.pid  # run by the worker, not by the standby
        assert done["output"] == {"tokens": [body["token"]]}

        # An unknown workflow is refused on the standby too (it knows the project's code).
        missing = standby.http.post("/api/workflows/nope/start", json={})
        assert missing.status_code == 404, missing.text

        # The services are shared both ways.
        assert standby.http.put("/api/kv/ns/k", json={"from": "standby"}).status_code == 200
        assert worker.http.get("/api/kv/ns/k").json() == {"from": "standby"}
        assert worker.http.put("/api/db/items", json={"_id": "i1", "n": 1}).status_code == 200
        found = standby.http.post("/api/db/items/findOne", json={"_id": "i1"})
        assert found.status_code == 200 and found.json()["n"] == 1, found.text
        posted = standby.http.post("/api/events", json={"t": "custom.hello", "data": {"x": 1}})
        assert posted.status_code == 200, posted.text
        event_id = posted.json()["id"]

        def on_worker() -> bool:
            events = worker.http.get("/api/events", params={"t": "custom.hello"}).json()
            return any(e["id"] == event_id for e in events)

        wait_until(on_worker, 15, "the standby's event on the worker's stream")
        schedules = standby.http.get("/api/workflows/schedules")
        assert schedules.status_code == 200 and schedules.json() == [], schedules.text
        listed = {run["runId"] for run in standby.http.get("/api/workflows/runs").json()}
        assert run_id in listed
    finally:
        _stop(standby, worker)


@pytest.mark.slow
def test_send_event_through_the_standby_resumes_a_run_parked_on_the_worker(
    tmp_path: Path, location: str
) -> None:
    worker, standby = _pair(tmp_path, location)
    try:
        run_id = worker.start_run("waiter", {"key": "w1"})
        worker.wait_status(run_id, "waiting_event")
        sent = standby.http.post(
            "/api/workflows/signal",
            json={"eventType": EVENT_TYPE, "payload": {"key": "w1", "n": 7}},
        )
        assert sent.status_code == 200 and sent.json() == {"count": 1}, sent.text
        done = standby.wait_status(run_id, "completed")
        assert done["output"]["event"] == {"key": "w1", "n": 7}
        assert worker.run(run_id)["status"] == "completed"
    finally:
        _stop(standby, worker)


@pytest.mark.slow
def test_a_killed_worker_is_taken_over_and_every_run_finishes_once(
    tmp_path: Path, location: str
) -> None:
    worker, standby = _pair(tmp_path, location)
    try:
        assert worker.proc is not None and standby.proc is not None
        # Started through the standby: the worker runs them.
        nappers = [standby.start_run("napper", {"nap": 1500 + 100 * n}) for n in range(3)]
        waiters = [standby.start_run("waiter", {"key": f"k{n}"}) for n in range(3)]
        busy = [standby.start_run("busy", {"slow": 3.0}) for _ in range(2)]
        for run_id in nappers:
            worker.wait_status(run_id, "sleeping", "completed")
        for run_id in waiters:
            worker.wait_status(run_id, "waiting_event")

        def in_slow_body() -> bool:
            started = {(e["run"], e["step"]) for e in _effects(tmp_path)}
            return all((run_id, "a") in started for run_id in busy)

        wait_until(in_slow_body, 15, "the busy runs to enter their slow step")
        stream = _Sse(standby)  # opened on the standby's client platform, before the takeover
        stream.wait_connected()
        before = _effects(tmp_path)
        worker.kill()

        standby.wait_for_log("took over as the worker", timeout=TAKEOVER_GUARD_S)
        assert _worker_of(standby) == {"pid": standby.proc.pid, "self": True, "role": "worker"}
        for n in range(len(waiters)):
            sent = standby.http.post(
                "/api/workflows/signal",
                json={"eventType": EVENT_TYPE, "payload": {"key": f"k{n}"}},
            )
            # Resumed by this host's engine, which recovered the wait before it took over.
            assert sent.status_code == 200 and sent.json() == {"count": 1}, sent.text
        runs = {
            run_id: standby.wait_status(run_id, "completed", timeout=TAKEOVER_GUARD_S)
            for run_id in [*nappers, *waiters, *busy]
        }
        histories = {run_id: standby.history(run_id) for run_id in runs}
        # The stream that was open across the takeover was not dropped: it saw the waiters
        # end, which happened only after the takeover.
        wait_until(
            lambda: set(waiters) <= stream.completed(), 15, "the waiters' ends on the old stream"
        )
    finally:
        _stop(standby)
        worker.kill()
        if "stream" in locals():
            stream.join()

    effects = _effects(tmp_path)
    bodies = Counter((e["run"], e["step"]) for e in effects)
    last = {(e["run"], e["step"]): e["token"] for e in effects}
    # A body that had recorded its result before the kill never runs again.
    for done in before:
        assert bodies[(done["run"], done["step"])] == 1, done
    # Every run step is recorded with the token of the last body that ran it, and the run
    # returned exactly those.
    for run_id, run in runs.items():
        steps = [step for step in histories[run_id] if step["kind"] == "run"]
        assert all(step["status"] == "completed" for step in steps), steps
        outputs = [step["output"] for step in steps]
        assert outputs == [last[(run_id, step["name"])] for step in steps], run_id
        assert run["output"]["tokens"] == outputs, run
    # The busy runs' slow bodies were in flight at the kill: they ran again on the new worker.
    for run_id in busy:
        assert bodies[(run_id, "slow")] >= 1
    # No step recorded as completed twice in the ledger (runs.jsonl, or the runs log's rows).
    recorded: Counter[tuple[str, str]] = Counter()
    for line in ledger_bytes(location).splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line the killed worker tore: the ledger skips it too
        if record.get("rec") == "step" and record.get("status") == "completed":
            recorded[(record["runId"], record["name"])] += 1
    assert recorded and max(recorded.values()) == 1, recorded.most_common(3)
    pids = {e["pid"] for e in effects}
    assert pids <= {worker.proc.pid, standby.proc.pid}


def test_dev_fails_fast_on_a_folder_another_host_works_on(tmp_path: Path) -> None:
    project = write_standby_project(tmp_path)
    data = tmp_path / "data"
    worker = HostProcess(project, data, tmp_path / "logs-a").launch()
    try:
        assert worker.proc is not None
        for command, extra in (("dev", ()), ("serve", ("--no-standby",))):
            second = HostProcess(project, data, tmp_path / f"logs-{command}", command=command)
            code = second.start(*extra).wait(timeout=60)
            log = second.log()
            assert code == 1, log
            assert "DataDirLocked" in log and f"process {worker.proc.pid}" in log, log
    finally:
        _stop(worker)


@pytest.mark.slow
def test_dev_with_standby_waits_instead(tmp_path: Path) -> None:
    project = write_standby_project(tmp_path)
    data = tmp_path / "data"
    worker = HostProcess(project, data, tmp_path / "logs-a").launch()
    second = HostProcess(project, data, tmp_path / "logs-b", command="dev", args=("--standby",))
    try:
        second.launch()
        second.wait_for_log("standby: the worker on")
        run_id = second.start_run("quick")
        assert second.wait_status(run_id, "completed")["status"] == "completed"
        worker.stop()
        second.wait_for_log("took over as the worker", timeout=TAKEOVER_GUARD_S)
        run_id = second.start_run("quick")
        assert second.wait_status(run_id, "completed")["status"] == "completed"
    finally:
        _stop(second, worker)


@pytest.mark.slow
def test_a_publish_on_either_host_reaches_the_websockets_of_both_once(
    tmp_path: Path, location: str
) -> None:
    worker, standby = _pair(tmp_path, location)
    sockets = [WsClient(host.port, f"/_rt/ws?cid=both-{host.port}") for host in (worker, standby)]
    try:
        for ws in sockets:
            ws.send({"action": "subscribe", "channel": "chat:both"})
            assert ws.recv_event("subscribed")["channel"] == "chat:both"
        # A channel without history: the worker used to deliver its own publishes to its own
        # sockets only, so a browser connected through the standby never heard them.
        for data, host in ((1, worker), (2, standby), (3, worker)):
            sent = host.http.post(
                "/api/realtime/publish", json={"channel": "chat:both", "data": data}
            )
            assert sent.status_code == 200, sent.text
        for ws in sockets:
            # Each once (the worker's own sockets are not fed twice). Not necessarily in publish
            # order across hosts: the worker hands its own message to its sockets at once, and
            # may do so before its watch has read the standby's earlier one.
            assert sorted(ws.recv_event("message")["data"] for _ in range(3)) == [1, 2, 3]
        sent = standby.http.post("/api/realtime/publish", json={"channel": "chat:both", "data": 4})
        assert sent.status_code == 200, sent.text
        for ws in sockets:
            assert ws.recv_event("message")["data"] == 4
    finally:
        for ws in sockets:
            ws.close()
        _stop(standby, worker)


@pytest.mark.slow
def test_presence_joined_through_surviving_hosts_outlives_a_takeover(
    tmp_path: Path, location: str
) -> None:
    # Three hosts: a worker and two standbys, each standby holding a member on "room". When
    # the worker dies one standby takes over (its hub moves to the new worker's service) and the
    # new worker resets presence, which described the dead worker's connections; the members
    # whose connections are still open on the two survivors must come back, metadata and all.
    worker, standby = _pair(tmp_path, location)
    url = location if "://" in location else None
    third = HostProcess(
        standby.project, None if url else Path(location), tmp_path / "logs-c", store=url
    ).launch()
    third.wait_for_log("standby: the worker on")
    sockets = []
    try:
        for host, user in ((standby, "u-b"), (third, "u-c")):
            ws = WsClient(host.port, f"/_rt/ws?cid={user}")
            sockets.append(ws)
            ws.send({"action": "subscribe", "channel": "room"})
            assert ws.recv_event("subscribed")["channel"] == "room"
            ws.send(
                {"action": "presence:join", "channel": "room", "userId": user,
                 "metadata": {"on": user}}
            )  # fmt: skip

        def members(host: HostProcess) -> dict[str, Any]:
            got = host.http.get("/api/realtime/presence/room")
            assert got.status_code == 200, got.text
            return {m["userId"]: m.get("metadata") for m in got.json()["members"]}

        expected = {"u-b": {"on": "u-b"}, "u-c": {"on": "u-c"}}
        wait_until(lambda: members(worker) == expected, timeout=10)
        worker.kill()
        wait_until(
            lambda: "took over as the worker" in standby.log() + third.log(),
            timeout=TAKEOVER_GUARD_S,
        )
        for host in (standby, third):
            wait_until(lambda host=host: members(host) == expected, timeout=10)
    finally:
        for ws in sockets:
            ws.close()
        _stop(standby, third)
        worker.kill()


@pytest.mark.slow
def test_a_websocket_on_the_standby_keeps_its_subscription_across_the_takeover(
    tmp_path: Path, location: str
) -> None:
    worker, standby = _pair(tmp_path, location)
    ws = WsClient(standby.port, "/_rt/ws?cid=across")
    try:
        ws.send({"action": "subscribe", "channel": "chat:x"})
        assert ws.recv_event("subscribed")["channel"] == "chat:x"
        # Published through the standby's client platform: recorded in the store, and read
        # back by the standby's watch.
        sent = standby.http.post("/api/realtime/publish", json={"channel": "chat:x", "data": 1})
        assert sent.status_code == 200, sent.text
        assert ws.recv_event("message")["data"] == 1
        worker.kill()
        standby.wait_for_log("took over as the worker", timeout=TAKEOVER_GUARD_S)
        sent = standby.http.post("/api/realtime/publish", json={"channel": "chat:x", "data": 2})
        assert sent.status_code == 200, sent.text
        assert ws.recv_event("message")["data"] == 2  # same socket, now fed by the engine
    finally:
        ws.close()
        _stop(standby)
        worker.kill()
