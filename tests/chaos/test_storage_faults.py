"""Storage faults: damaged data files load, and failed writes leave nothing behind.

1. Damaged files (property-based, over many random cases per file): ``events.jsonl``,
   ``runs.jsonl`` and ``dispatch.jsonl`` of a real data folder are truncated at a random byte
   offset and/or get garbage lines inserted (random bytes, invalid UTF-8, NULs, JSON that is not
   an object, objects that are not records). The folder must load to exactly the state of a
   folder holding only the intact records (the whole lines before the cut), with a warning that
   names the file and the line of every garbage line; a worker then starts on it, keeps every
   intact record, reports the torn tail (file and line) and cuts it off before its first
   append, so nothing is glued onto a half line.
2. Failed writes (disk full: ``os.write`` raising ENOSPC after writing half the line;
   permission denied: EACCES; monkeypatched, since tests may run as root): the caller gets a
   ``StoreError`` naming the file, the file is truncated back (no partial line), memory is
   unchanged, and the next write after the fault is gone succeeds. Through the host's HTTP API
   (the real app in-process): a 503 JSON answer, the host stays up, the next request succeeds,
   and a workflow whose step record failed to write runs the step again and completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import re
import shutil
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from platform_shim import open_platform
from platform_shim.dispatch import DispatchState
from platform_shim.errors import StoreError
from platform_shim.events import on_db_change, on_kv_change
from platform_shim.platform import open_client
from platform_shim.runtime import WorkerOptions
from platform_shim.services.compaction import compact_stream
from platform_shim.store import FileStore
from platform_shim.workflows import define_workflow
from tests.chaos.inproc import inprocess_host
from tests.support.waiting import wait_until_async

# ------------------------------------------------------------------------ a real data folder


@define_workflow({"id": "sf-steps", "options": {"retries": 1}})
async def sf_steps(input: Any, step: Any, ctx: Any) -> Any:
    a = await step.run("a", lambda: input["n"])
    b = await step.run("b", lambda: a + 1)
    return {"b": b}


@define_workflow({"id": "sf-sleeper"})
async def sf_sleeper(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("a", lambda: 1)
    await step.sleep("long", "1h")
    return 1


@define_workflow({"id": "sf-waiter"})
async def sf_waiter(input: Any, step: Any, ctx: Any) -> Any:
    return await step.wait_for_event("w", type="sf.go", match={"n": input["n"]})


@on_kv_change({"namespace": "sf"})
async def sf_kv(event: Any, ctx: Any) -> None:
    return None


@on_db_change({"collection": "sf"})
async def sf_db(event: Any, ctx: Any) -> None:
    return None


WORKFLOWS = [sf_steps, sf_sleeper, sf_waiter]
HANDLERS = [sf_kv, sf_db]
FILES = ["events", "runs", "dispatch"]


async def build_folder(data: Path) -> None:
    async with open_platform(data, workflows=WORKFLOWS, handlers=HANDLERS, watch=False) as p:
        for i in range(12):
            await p.kv.put("sf", f"key{i}", {"i": i, "text": "x" * (i * 7)})
            await p.database.insert_one("sf", {"_id": f"d{i}", "i": i})
            handle = await p.workflows.start("sf-steps", {"n": i})
            await handle.result(timeout=10)
            if i % 4 == 0:
                await p.workflows.start("sf-sleeper", {"n": i})
                await p.workflows.start("sf-waiter", {"n": i})
            if i % 3 == 0:
                await p.workflows.send_event("sf.go", {"n": i})
            await p.settle()


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("faults") / "data"
    asyncio.run(build_folder(data))
    for name in FILES:
        lines = (data / f"{name}.jsonl").read_bytes().count(b"\n")
        assert lines >= 8, (name, lines)
    return data


# --------------------------------------------------------------------------- damage, state


@contextlib.contextmanager
def store_warnings() -> Iterator[list[str]]:
    """Collect what the store logs at WARNING and above."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger("platform_shim.store")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _not_a_record(line: bytes) -> bool:
    try:
        return not isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return True


GARBAGE = st.one_of(
    st.binary(min_size=1, max_size=120).filter(lambda b: b"\n" not in b and _not_a_record(b)),
    st.sampled_from(
        [
            b"{",
            b'{"id": ',
            b'{"rec": "step", "runId"',
            b"[1, 2, 3]",
            b'"a string"',
            b"42",
            b"null",
            b"\xff\xfe\xfd not utf-8",
            b"\x00\x00\x00\x00",
            b"{}",
            b'{"garbage": true}',
            b"}{",
            b"   ",
            b"\x1b[2J",
            b'{"id": 1e999}',
        ]
    ),
)


class Damage:
    """The file rebuilt as segments: original lines (kept or cut) and inserted garbage."""

    def __init__(self, original: bytes, inserts: list[tuple[int, bytes]], cut: float | None):
        lines = original.split(b"\n")
        assert lines.pop() == b""
        by_index: dict[int, list[bytes]] = {}
        for where, garbage in inserts:
            by_index.setdefault(where % (len(lines) + 1), []).append(garbage)
        segments: list[tuple[bytes, bool]] = []  # (line, is_original)
        for index in range(len(lines) + 1):
            segments += [(g, False) for g in by_index.get(index, [])]
            if index < len(lines):
                segments.append((lines[index], True))
        data = b"".join(line + b"\n" for line, _ in segments)
        offset = len(data) if cut is None else int(cut * len(data))
        self.data = data[:offset]
        self.intact: list[bytes] = []  # original lines wholly before the cut
        self.garbage_lines: list[int] = []  # line numbers of garbage wholly before the cut
        self.tail: bytes = b""  # the torn fragment at the end, if any
        self.tail_line = 0
        position = 0
        for number, (line, original_line) in enumerate(segments, start=1):
            end = position + len(line) + 1
            if end <= offset:
                if original_line:
                    self.intact.append(line)
                elif line.strip() or line:
                    self.garbage_lines.append(number)
            elif position < offset:
                self.tail = data[position:offset]
                self.tail_line = number
            position = end


def clone(base: Path, into: Path) -> Path:
    shutil.copytree(base, into, ignore=shutil.ignore_patterns(".locks", ".doorbell"))
    return into


async def loaded_state(data: Path) -> dict[str, Any]:
    """Everything a process loads from the folder: events, KV, DB, runs and steps, cursors."""
    platform = open_client(data)
    try:
        stream = platform.stream
        runs = await platform.workflows.list(limit=100000)
        state: dict[str, Any] = {
            "events": [(e.id, e.line) for e in stream.events],
            "last_id": stream.last_id,
            "kv": {ns: dict(space) for ns, space in platform.kv_state.spaces.items()},
            "db": {name: dict(coll.docs) for name, coll in platform.db_state.collections.items()},
            "runs": {
                run.run_id: (
                    run.to_dict(),
                    [s.to_dict() for s in await platform.workflows.handle(run.run_id).history()],
                )
                for run in runs
            },
        }
    finally:
        platform.close()
    store = FileStore(data)
    try:
        dispatch = DispatchState()
        store.open_log("dispatch", dispatch)
        state["dispatch"] = (dispatch.cursors, dispatch.relay, dispatch.acked, dispatch.attempts)
    finally:
        store.close()
    return state


def damaged_pair(base: Path, scratch: Path, name: str, damage: Damage) -> tuple[Path, Path]:
    """The damaged folder and a reference folder whose file holds only the intact records."""
    damaged = clone(base, scratch / "damaged")
    reference = clone(base, scratch / "reference")
    (damaged / f"{name}.jsonl").write_bytes(damage.data)
    (reference / f"{name}.jsonl").write_bytes(b"".join(line + b"\n" for line in damage.intact))
    return damaged, reference


@pytest.mark.parametrize("name", FILES)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    inserts=st.lists(st.tuples(st.integers(0, 10**6), GARBAGE), max_size=4),
    cut=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_damaged_file_loads_every_intact_record(
    base_folder: Path, name: str, inserts: list[tuple[int, bytes]], cut: float | None
) -> None:
    original = (base_folder / f"{name}.jsonl").read_bytes()
    damage = Damage(original, inserts, cut)
    with tempfile.TemporaryDirectory() as tmp:
        damaged, reference = damaged_pair(base_folder, Path(tmp), name, damage)
        with store_warnings() as warnings:
            got = asyncio.run(loaded_state(damaged))
        expected = asyncio.run(loaded_state(reference))
        assert got == expected
        path = str(damaged / f"{name}.jsonl")
        for number in damage.garbage_lines:
            assert any(f"{path}:{number}:" in w for w in warnings), (number, warnings)


@pytest.mark.parametrize("name", FILES)
def test_worker_starts_on_a_damaged_file_and_cuts_off_the_torn_line(
    base_folder: Path, tmp_path: Path, name: str
) -> None:
    """A worker on a cut-and-garbled file: every intact record kept, the torn tail reported
    (file and line) and cut off before the first append (never acknowledged, never glued to
    a new record, never back to life at the next load)."""
    rng = random.Random(f"worker/{name}")
    original = (base_folder / f"{name}.jsonl").read_bytes()
    for case in range(6):
        inserts = [(rng.randrange(10**6), b"\xff garbage \x00") for _ in range(rng.randrange(3))]
        damage = Damage(original, inserts, rng.uniform(0.3, 0.999))
        if not damage.tail:
            damage = Damage(original, inserts, (len(original) - 3) / len(original))
        assert damage.tail
        scratch = tmp_path / f"case{case}"
        damaged, reference = damaged_pair(base_folder, scratch, name, damage)
        expected = asyncio.run(loaded_state(reference))
        path = damaged / f"{name}.jsonl"
        with store_warnings() as warnings:
            asyncio.run(append_once(damaged, name))
        reported = [w for w in warnings if w.startswith(f"{path}:{damage.tail_line}: ")]
        assert any("torn line" in w for w in reported), (damage.tail_line, warnings)
        data = path.read_bytes()
        kept = damage.data[: len(damage.data) - len(damage.tail)]
        assert data.startswith(kept), "an intact line was lost"
        assert data.endswith(b"\n")
        for line in data[len(kept) :].split(b"\n")[:-1]:
            assert isinstance(orjson.loads(line), dict), f"glued or torn: {line!r}"
        after = asyncio.run(loaded_state(damaged))
        assert set(expected["runs"]) <= set(after["runs"])
        assert {e for e in expected["events"]} <= set(after["events"])
        for handler, cursor in expected["dispatch"][0].items():
            assert after["dispatch"][0][handler] >= cursor


# ------------------------------------------------------- damaged ids and snapshot headers


async def compact_then_write(data: Path) -> None:
    """Snapshots (kv.jsonl, db.jsonl, ...) of the base folder, then changes past them."""
    platform = open_client(data)
    try:
        await compact_stream(platform.store, platform.stream, storage=platform.storage_state)
        await platform.kv.put("sf", "key0", {"after": "snapshot"})
        await platform.kv.delete("sf", "key1")
        await platform.kv.put("sf", "late", 1)
        await platform.database.update_one("sf", {"_id": "d0"}, {"$set": {"i": -1}})
        await platform.database.delete_one("sf", {"_id": "d1"})
    finally:
        platform.close()


@pytest.fixture(scope="module")
def compacted_folder(base_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = clone(base_folder, tmp_path_factory.mktemp("compacted") / "data")
    asyncio.run(compact_then_write(data))
    for name in ("kv", "db"):
        assert b"checkpoint" in (data / f"{name}.jsonl").read_bytes().split(b"\n")[0]
    return data


CLAIMS = st.one_of(
    st.integers(-3, 10**6),
    st.integers(2**63, 2**70),  # past 64 bits: orjson reads it as a float
    st.sampled_from([None, True, "7", 1.5, 2.0, [], {}]),
)

HEADER_DAMAGE = st.sampled_from(
    [
        None,  # intact
        b"",  # gone: the first record moves up to line 1
        b"\n",  # an empty line
        b"\xff\xfe garbage\n",
        b'{"checkpoint": 1\n',  # torn mid-way
        b'{"garbage": true}\n',
        b'{"checkpoint": "12", "format": 1}\n',
        b'{"checkpoint": -4, "format": 1}\n',
    ]
)


def _id_of(line: bytes) -> Any:
    return orjson.loads(line)["id"]


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    where=st.integers(0, 10**6),
    claim=CLAIMS,
    inserts=st.lists(st.tuples(st.integers(0, 10**6), GARBAGE), max_size=2),
    kv_header=HEADER_DAMAGE,
    db_header=HEADER_DAMAGE,
)
def test_damaged_ids_and_snapshot_headers_lose_no_intact_record(
    compacted_folder: Path,
    where: int,
    claim: Any,
    inserts: list[tuple[int, bytes]],
    kv_header: bytes | None,
    db_header: bytes | None,
) -> None:
    """One event line of ``events.jsonl`` claims another id (any value: too high, too low, a
    duplicate, not an integer), garbage lines are inserted, and the header lines of ``kv.jsonl``
    and ``db.jsonl`` are damaged or removed. The folder loads to exactly the state of a folder
    holding the intact lines and intact headers; ids stay strictly increasing; the damaged
    line is reported with its file and line."""
    original = (compacted_folder / "events.jsonl").read_bytes()
    lines = original.split(b"\n")[:-1]
    index = where % len(lines)
    before = _id_of(lines[index - 1]) if index > 0 else None
    after = _id_of(lines[index + 1]) if index + 1 < len(lines) else None
    if type(claim) is int:
        # A claim that fits between its neighbours is no damage to the order (the line loads
        # under it), and one equal to the next line's id ties with it (the earlier is kept).
        assume(not ((before is None or before < claim) and (after is None or claim < after)))
        assume(claim != after)
    text = str(claim).encode() if type(claim) is int else orjson.dumps(claim)
    damaged_line = re.sub(rb'^\{"id":[0-9]+', b'{"id":' + text, lines[index])
    assert damaged_line != lines[index]
    edited = b"".join(
        (damaged_line if number == index else line) + b"\n" for number, line in enumerate(lines)
    )
    damage = Damage(edited, inserts, None)
    with tempfile.TemporaryDirectory() as tmp:
        damaged = clone(compacted_folder, Path(tmp) / "damaged")
        reference = clone(compacted_folder, Path(tmp) / "reference")
        (damaged / "events.jsonl").write_bytes(damage.data)
        (reference / "events.jsonl").write_bytes(
            b"".join(line + b"\n" for line in damage.intact if line != damaged_line)
        )
        for name, header in (("kv", kv_header), ("db", db_header)):
            if header is not None:
                path = damaged / f"{name}.jsonl"
                path.write_bytes(header + path.read_bytes().split(b"\n", 1)[1])
        with store_warnings() as warnings:
            got = asyncio.run(loaded_state(damaged))
        expected = asyncio.run(loaded_state(reference))
        assert got == expected
        ids = [eid for eid, _ in got["events"]]
        assert ids == sorted(set(ids))
        path = str(damaged / "events.jsonl")
        line_of_damage = damage.data.split(b"\n").index(damaged_line) + 1
        assert any(w.startswith(f"{path}:{line_of_damage}: ") for w in warnings), warnings


async def append_once(data: Path, name: str) -> None:
    """A worker on ``data`` that appends one record to log ``name``."""
    async with open_platform(data, workflows=WORKFLOWS, handlers=HANDLERS, watch=False) as p:
        worker = p.worker
        assert worker is not None
        if name == "events":
            await p.kv.put("probe", "k", 1)
        elif name == "runs":
            await p.workflows.send_event("probe.event", {})
        else:
            await worker.dispatcher.record(
                {"rec": "cursor", "handler": "probe", "lastEvent": 0}, durable=True
            )
        await p.settle()


# ------------------------------------------------------------------------------ write faults


class WriteFault:
    """``os.write`` failing with ``code`` for the data folder's files (after writing ``partial``
    bytes of the first failing call, like a disk that fills up mid-line)."""

    def __init__(self, data: Path, code: int, *, partial: bool = True, only: str = "") -> None:
        self.data = str(data.resolve())
        self.code = code
        self.partial = partial
        self.only = only
        self.active = False
        self.failures = 0
        self._real = os.write

    def _target(self, fd: int) -> bool:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False
        return path.startswith(self.data) and self.only in path

    def __call__(self, fd: int, data: Any) -> int:
        if self.active and self._target(fd):
            self.failures += 1
            if self.partial and self.failures == 1 and len(data) > 1:
                return self._real(fd, bytes(data)[: len(data) // 2])
            raise OSError(self.code, os.strerror(self.code))
        return self._real(fd, data)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
async def test_failed_append_raises_and_leaves_nothing(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    fault = WriteFault(data_dir, code)
    monkeypatch.setattr(os, "write", fault)
    async with open_platform(data_dir, workflows=WORKFLOWS, watch=False) as p:
        await p.kv.put("ns", "kept", {"v": 1})
        await p.settle()
        events = data_dir / "events.jsonl"
        before = events.read_bytes()
        fault.active = True
        with pytest.raises(StoreError) as caught:
            await p.kv.put("ns", "kept", {"v": 2})
        assert caught.value.errno == code
        assert "events.jsonl" in str(caught.value)
        assert os.strerror(code) in str(caught.value)
        with pytest.raises(StoreError):
            await p.database.insert_one("c", {"_id": "x"})
        with pytest.raises(StoreError):
            await p.workflows.start("sf-steps", {"n": 1}, run_id="never")
        assert events.read_bytes() == before, "a failed write left bytes behind"
        assert await p.kv.get("ns", "kept") == {"v": 1}
        assert await p.database.find_one("c", {"_id": "x"}) is None
        assert await p.workflows.handle("never").status() is None
        fault.active = False
        await p.kv.put("ns", "kept", {"v": 3})
        handle = await p.workflows.start("sf-steps", {"n": 1}, run_id="after")
        assert await handle.result(timeout=10) == {"b": 2}
    assert fault.failures >= 3
    reopened = open_client(data_dir)
    try:
        assert await reopened.kv.get("ns", "kept") == {"v": 3}
        assert await reopened.workflows.handle("never").status() is None
    finally:
        reopened.close()
    for name in ("events", "runs"):
        for line in (data_dir / f"{name}.jsonl").read_bytes().split(b"\n")[:-1]:
            orjson.loads(line)  # every line whole


# ------------------------------------------------------------------- faults through the host

HOST_PROJECT = """
import asyncio
import os
import uuid
from pathlib import Path

import orjson

from platform_shim.workflows import define_workflow

ROOT = Path({root!r})


@define_workflow({{"id": "gated", "options": {{"retries": 5}}}})
async def gated(input, step, ctx):
    async def body():
        token = uuid.uuid4().hex
        with (ROOT / "effects.jsonl").open("ab") as f:
            f.write(orjson.dumps({{"run": ctx.run_id, "token": token}}) + b"\\n")
        while not (ROOT / "gate").exists():
            await asyncio.sleep(0.005)
        return token

    first = await step.run("first", body)
    second = await step.run("second", lambda: "two")
    return {{"first": first, "second": second}}


@define_workflow({{"id": "echo"}})
async def echo(input, step, ctx):
    return await step.run("echo", lambda: input)
"""


@contextlib.asynccontextmanager
async def faulty_host(root: Path) -> AsyncIterator[Any]:
    project = root / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "flows.py").write_text(
        textwrap.dedent(HOST_PROJECT).format(root=str(root))
    )
    options = WorkerOptions(retry_backoff=lambda attempt: 50)
    async with inprocess_host(project, root / "data", worker_options=options) as (_, client):
        yield client


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
async def test_host_answers_503_stays_up_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    fault = WriteFault(tmp_path / "data", code)
    monkeypatch.setattr(os, "write", fault)
    async with faulty_host(tmp_path) as http:
        assert (await http.put("/api/kv/ns/a", json=1)).status_code == 200
        fault.active = True
        refused = [
            await http.put("/api/kv/ns/a", json=2),
            await http.put("/api/kv/ns/b", json=2),
            await http.put("/api/db/c", json={"_id": "x"}),
            await http.post("/api/workflows/echo/start", json={}),
            await http.post("/api/workflows/signal", json={"eventType": "t", "payload": 1}),
            await http.post("/api/events", json={"t": "custom.thing"}),
        ]
        for response in refused:
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["error"] == "storage_unavailable", body
            assert body["detail"].startswith("the store could not be written"), body
            assert os.strerror(code) in body["detail"], body
            assert "Traceback" not in response.text
        fault.active = False
        assert (await http.get("/api/kv/ns/a")).json() == 1
        assert (await http.get("/api/kv/ns/b")).status_code == 404
        assert (await http.post("/api/db/c/findOne", json={"_id": "x"})).status_code == 404
        assert (await http.put("/api/kv/ns/a", json=3)).status_code == 200
        assert (await http.get("/api/kv/ns/a")).json() == 3
        started = await http.post("/api/workflows/echo/start", json={"n": 1})
        run_id = started.json()["runId"]

        async def echoed() -> Any:
            run = (await http.get(f"/api/workflows/runs/{run_id}")).json()
            return run["status"] == "completed" and run

        assert (await wait_until_async(echoed, what="the echo run"))["output"] == {"n": 1}


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
async def test_run_whose_step_record_failed_runs_the_step_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    fault = WriteFault(tmp_path / "data", code, only="runs.jsonl")
    monkeypatch.setattr(os, "write", fault)
    effects = tmp_path / "effects.jsonl"
    async with faulty_host(tmp_path) as http:
        run_id = (await http.post("/api/workflows/gated/start?runId=g1", json={})).json()["runId"]
        await wait_until_async(effects.exists, what="the step to start")
        fault.active = True  # the step's record will not make it to disk
        (tmp_path / "gate").touch()
        await wait_until_async(lambda: fault.failures > 0, what="a write to fail")
        # The run goes on trying while the disk is full: its step runs again, more than once.
        await wait_until_async(
            lambda: len(effects.read_bytes().splitlines()) >= 3,
            what="the step to run again while runs.jsonl cannot be written",
        )
        run = (await http.get(f"/api/workflows/runs/{run_id}")).json()
        assert run["status"] not in ("completed", "failed", "cancelled"), run
        fault.active = False

        async def completed() -> Any:
            run = (await http.get(f"/api/workflows/runs/{run_id}")).json()
            return run["status"] in ("completed", "failed") and run

        run = await wait_until_async(completed, what="the run to finish")
        assert run["status"] == "completed", run
        tokens = [orjson.loads(line)["token"] for line in effects.read_bytes().splitlines()]
        assert len(tokens) >= 2, "the step whose record failed must run again"
        assert run["output"] == {"first": tokens[-1], "second": "two"}
        history = (await http.get(f"/api/workflows/runs/{run_id}/history")).json()
        assert [(s["name"], s["status"]) for s in history] == [
            ("first", "completed"),
            ("second", "completed"),
        ]
    for line in (tmp_path / "data" / "runs.jsonl").read_bytes().split(b"\n")[:-1]:
        orjson.loads(line)


async def test_storage_put_on_a_full_disk_is_a_503(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = WriteFault(tmp_path / "data", errno.ENOSPC)
    monkeypatch.setattr(os, "write", fault)
    async with faulty_host(tmp_path) as http:
        fault.active = True
        response = await http.put("/api/storage/a/b.txt", content=b"bytes")
        fault.active = False
        assert (await http.get("/api/storage/a/b.txt")).status_code == 404
        assert not list((tmp_path / "data").rglob("*.tmp"))
        assert response.status_code == 503, response.text
