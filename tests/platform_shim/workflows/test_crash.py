"""The engine's crash suite: a real worker process killed with SIGKILL, over and over.

Each cycle spawns ``tests/support/engine_worker.py`` (a worker running a mix of workflows:
multi-step runs, sleeps, waits for events with and without timeouts, a child ``invoke``, steps
that fail on the first attempt, a workflow that fails by design, one whose deadline
(``timeoutSecs``) passes while it sleeps) beside
``tests/support/engine_client.py`` (a client process that sends half of the events and starts
a few runs through the ledger), lets them run for a random while, and kills them with SIGKILL
in a random order. A final cycle drains: nothing new starts, the missing events are sent, and
every run must end. Then the invariants are checked against the files themselves:

(a) every acknowledged start exists and is terminal: completed, or failed where designed to
    (a step that always raises; a deadline that passes, also while the worker is down);
(b) every completed ``run`` step recorded the token of the LAST execution of its body, and no
    step was ever recorded as completed twice (so no body ran again after its result was
    recorded);
(c) every completed run returned exactly its recorded step outputs, in order;
(d) every acknowledged event reached its waiting run, which completed with that payload (or
    its wait genuinely timed out before the event could be seen);
(e) no invoke started two children;
(f) every ``runs.jsonl`` line parses, or is a torn/corrupt line reported with its line number,
    and the ledger reopens (and a worker on it starts nothing new).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim import open_platform
from platform_shim.jsonvalue import loads
from platform_shim.store import open_store
from platform_shim.store.lock import AppendLock
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.archive import ARCHIVE_NAME, state_of
from platform_shim.workflows.ledger import LedgerState
from platform_shim.workflows.records import RunStatus, StepKind, StepStatus
from platform_shim.workflows.state import RunState
from tests.support import engine_worker
from tests.support.ledger import ledger_bytes, ledger_generation
from tests.support.procs import ROOT, env

from .conftest import Opener

CYCLES = 14
EARLY_CYCLES = 2  # killed within 0.1 s of ``ready``: recovery itself is interrupted
BLIND_CYCLES = 2  # killed at a time counted from the spawn: maybe during loading/compaction
COMPACT_BYTES = 150_000  # the ledger grows past this: workers compact it when they start
EVENT_TYPE = "crash.go"
# How late a worker may notice a signal another process recorded (watcher or 0.5 s poll),
# with room for a loaded 2-core machine; a wait that timed out more than this after a
# matching signal was recorded lost a wake-up.
NOTICE_SLACK_MS = 3000
DRAIN_TIMEOUT_S = 60.0


@dataclass
class Acks:
    """What the processes said was acknowledged (whole stdout lines only)."""

    starts: dict[str, tuple[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    def take(self, out: str) -> Acks:
        """Record the acknowledgments in ``out``; return just the new ones."""
        new = Acks()
        # A kill can cut the last line short: only newline-terminated lines count.
        for line in out.split("\n")[:-1]:
            kind, _, body = line.partition(" ")
            if kind == "start":
                item = orjson.loads(body)
                new.starts[item["runId"]] = (item["workflowId"], item["input"])
            elif kind == "event":
                payload = orjson.loads(body)
                assert payload["key"] not in self.events, f"event {payload} sent twice"
                new.events[payload["key"]] = payload
        self.starts.update(new.starts)
        self.events.update(new.events)
        return new


class Proc:
    """A helper process: stdout piped, stderr to a file."""

    def __init__(self, script: str, *args: str, stderr: Path) -> None:
        with stderr.open("ab") as err:
            self.popen = subprocess.Popen(
                [sys.executable, "-u", str(ROOT / "tests" / "support" / f"{script}.py"), *args],
                stdout=subprocess.PIPE,
                stderr=err,
                env=env(ENGINE_ROOT=str(stderr.parent)),
            )
        self.stderr = stderr
        self.out = bytearray()

    def read_until(self, wanted: bytes, timeout: float) -> bool:
        """Read stdout until a line equal to ``wanted``; False at EOF or after ``timeout``."""
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        line = wanted + b"\n"
        # Anywhere in the output: more lines may come in the same read.
        while not (self.out.startswith(line) or b"\n" + line in self.out):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return False
                self.out += chunk
        return True

    def stacks(self) -> str:
        """What a stuck helper is doing: its threads' stacks (faulthandler on SIGUSR1)."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGUSR1)
            time.sleep(0.5)
        return self.stderr.read_text()[-6000:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)

    def finish(self, timeout: float = 30.0) -> str:
        """Wait for the end; return everything it printed."""
        try:
            rest, _ = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            rest, _ = self.popen.communicate()
            raise AssertionError(f"helper timed out; stderr:\n{self.stderr.read_text()}") from None
        self.out += rest
        return self.out.decode()

    def reap(self) -> None:
        self.kill()
        self.popen.communicate()


def load_ledger(
    location: str, caplog: pytest.LogCaptureFixture, endings: dict[tuple[str, str, str], set[int]]
) -> LedgerState:
    """(f) Fold runs.jsonl as a worker would; every line that does not parse must be named in a
    warning (``runs.jsonl:<line>``), and no two records may share a seq.

    (b) A step ends once: it has at most one ``completed`` record, and one ``failed`` record
    per attempt, ever. ``endings`` collects the seqs of those records across cycles (before the
    next worker's compaction keeps only the latest of each step), so a completed step whose body
    ran again and was recorded again is caught even when both executions agree with the ledger.

    Appends are single ``write`` calls, so SIGKILL rarely tears one (only a write that crosses
    a page boundary can be cut short); a torn tail is terminated by the next append and then
    reads as a corrupt line. The golden tests load torn and corrupt lines on purpose."""
    content = ledger_bytes(location)
    lines = content.split(b"\n")
    lines.pop()  # b"" after the final newline, or a torn tail not reported until the next append
    bad: list[int] = []
    seqs: list[int] = []
    for number, line in enumerate(lines, 1):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(number)
            continue
        assert isinstance(record, dict), f"runs.jsonl:{number}: {line[:200]!r}"
        assert "rec" in record, f"runs.jsonl:{number}: {line[:200]!r}"
        seqs.append(record["seq"])
        if record["rec"] == "step" and record["status"] != "pending":
            ending = (
                f"{record['status']}@{record['attempt']}"
                if record["status"] == "failed"
                else "completed"
            )
            seen = endings.setdefault((record["runId"], record["name"], ending), set())
            seen.add(record["seq"])
            assert len(seen) == 1, (
                f"step {record['name']!r} of run {record['runId']} was recorded {ending} twice "
                f"(seqs {sorted(seen)}): a finished step ran or ended again"
            )
    assert len(seqs) == len(set(seqs)), "two ledger records share a seq"
    caplog.clear()
    store = open_store(location)
    state = LedgerState()
    try:
        with caplog.at_level(logging.WARNING, logger="platform_shim.store"):
            store.open_log("runs", state)
    finally:
        store.close()
    for number in bad:
        assert any(f"runs.jsonl:{number}:" in m for m in caplog.messages), (number, caplog.messages)
    add_archived(location, state)
    return state


def add_archived(location: str, state: LedgerState) -> None:
    """Finished runs that compaction moved out of the ledger live in the archive: every one
    must read back whole (run and steps), as the worker would read it."""
    store = open_store(location)
    try:
        archive = store.open_archive(ARCHIVE_NAME, writable=False)
        for run_id, head, body in archive:
            run = state_of(head, body)
            assert run.status.terminal, f"archived run {run_id} is {run.status.value}"
            assert head["runId"] == run_id
            state.runs.setdefault(run_id, run)
    finally:
        store.close()


def read_effects(root: Path) -> list[dict[str, Any]]:
    try:
        content = (root / "effects.jsonl").read_bytes()
    except FileNotFoundError:
        return []
    # One ``write`` per line: a kill cannot tear it, but tolerate a fragment at the very end.
    return [orjson.loads(line) for line in content.split(b"\n")[:-1]]


def value(raw: bytes | None) -> Any:
    """A recorded JSON value (``None`` when nothing was recorded)."""
    return loads(raw) if raw is not None else None


def run_steps(run: RunState) -> list[Any]:
    """The outputs of the completed ``run`` steps, in history order."""
    return [
        value(step.output)
        for step in run.steps.values()
        if step.kind is StepKind.RUN and step.status is StepStatus.COMPLETED
    ]


def expected_names(run: RunState) -> list[str]:
    spec = loads(run.input)
    if run.workflow_id == "multi":
        names = []
        for i in range(spec["steps"]):
            names.append(f"s{i}")
            if str(i) in spec["naps"]:
                names.append(f"nap{i}")
        return names
    return {
        "waiter": ["before", "go", "after"],
        "parent": ["prep", "kid", "post"],
        "child": ["c1", "cnap", "c2"],
        "doomed": ["ok", "boom"],
        "overdue": ["first", "long"],
    }[run.workflow_id]


def expected_attempt(run: RunState) -> int:
    spec = loads(run.input)
    if run.workflow_id == "multi":
        return 2 if spec["flaky"] >= 0 else 1
    if run.workflow_id == "parent":
        return 2 if spec["flaky"] else 1
    if run.workflow_id == "doomed":
        return 2  # retries=1: fails on attempt 1, then for good on attempt 2
    return 1


def check_invariants(
    state: LedgerState,
    effects: list[dict[str, Any]],
    acks: Acks,
    signals: dict[str, dict[str, Any]],
) -> dict[str, int]:
    runs = state.runs
    stats: dict[str, int] = defaultdict(int)

    # (a) every acknowledged run exists; every run is terminal, and failed only by design.
    missing = [run_id for run_id in acks.starts if run_id not in runs]
    assert not missing, f"{len(missing)} acknowledged starts are not in the ledger: {missing[:5]}"
    for run_id, (workflow_id, spec) in acks.starts.items():
        assert runs[run_id].workflow_id == workflow_id
        assert loads(runs[run_id].input) == spec
    for run in runs.values():
        where = f"run {run.run_id} of {run.workflow_id!r}"
        stats[f"{run.workflow_id}:{run.status.value}"] += 1
        names = expected_names(run)
        if run.workflow_id == "doomed":
            assert run.status is RunStatus.FAILED, f"{where} is {run.status.value}"
            assert run.error is not None
            assert (run.error["type"], run.error.get("step")) == ("RuntimeError", "boom"), run.error
        elif run.workflow_id == "overdue":
            # timeoutSecs=0.4 and a 3 s sleep: the deadline fails it, wherever it was (maybe
            # during a worker's downtime, then at the next start).
            assert run.status is RunStatus.FAILED, f"{where} is {run.status.value}"
            assert run.error is not None
            assert run.error["type"] == "WorkflowTimeout", run.error
            assert run.completed_at is not None
            assert run.completed_at >= run.created_at + 400
            names = names[: len(run.steps)]
        else:
            assert run.status is RunStatus.COMPLETED, f"{where} is {run.status.value}: {run.error}"
        assert run.attempt == expected_attempt(run), f"{where} ended on attempt {run.attempt}"
        assert list(run.steps) == names, f"{where}: history {list(run.steps)}"

    # (b) the recorded result of a run step is the token of the last execution of its body.
    last: dict[tuple[str, str], dict[str, Any]] = {}
    successes: dict[tuple[str, str], int] = defaultdict(int)
    for line in effects:
        last[line["run"], line["step"]] = line
        successes[line["run"], line["step"]] += not line.get("failed")
    for run_id, name in last:
        assert run_id in runs, f"a step body ran for run {run_id}, which is not in the ledger"
        if runs[run_id].workflow_id != "overdue":  # its deadline may cancel a body mid-way
            assert name in runs[run_id].steps, f"step {name} of run {run_id} ran but has no record"
    for run in runs.values():
        for step in run.steps.values():
            if step.kind is not StepKind.RUN or step.status is not StepStatus.COMPLETED:
                continue
            final = last.get((run.run_id, step.name))
            assert final is not None, f"step {step.name} of {run.run_id} recorded without a run"
            assert not final.get("failed"), (
                f"step {step.name} of {run.run_id} failed after it completed"
            )
            assert value(step.output) == final["token"], (
                f"step {step.name} of run {run.run_id}: recorded {value(step.output)}, but its "
                f"last execution (pid {final['pid']}) returned {final['token']}"
            )
            stats["step bodies run again after a crash"] += successes[run.run_id, step.name] > 1

    # (c) a completed run's output is what it saw: its recorded step outputs, in order.
    for run in runs.values():
        if run.status is not RunStatus.COMPLETED:
            continue
        output = value(run.output)
        assert output["tokens"] == run_steps(run), f"run {run.run_id}: output differs from history"
        if run.workflow_id == "waiter":
            assert output["event"] == value(run.steps["go"].output)
        elif run.workflow_id == "parent":
            kid = run.steps["kid"]
            assert kid.child_run_id is not None
            assert output["child"] == value(kid.output) == value(runs[kid.child_run_id].output)

    # (d) events: each sent at most once, every acknowledged one delivered.
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for recorded in signals.values():
        by_key[recorded["payload"]["key"]].append(recorded)
    for key, sigs in by_key.items():
        assert len(sigs) == 1, f"event {key} is in the ledger {len(sigs)} times"
    for key, payload in acks.events.items():
        assert key in by_key, f"acknowledged event {payload} is not in the ledger"
        assert by_key[key][0]["payload"] == payload
    waiters = {loads(r.input)["key"]: r for r in runs.values() if r.workflow_id == "waiter"}
    for key in acks.events:
        assert key in waiters, f"event {key} was sent for no run"
    for key, run in waiters.items():
        spec = loads(run.input)
        go = run.steps["go"]
        got = value(go.output)
        sig = by_key[key][0] if key in by_key else None
        where = f"run {run.run_id} (wait {spec})"
        if spec["send"] and spec["timeout"] is None:
            assert sig is not None, f"{where}: its event was never sent"
        if got is not None:
            assert sig is not None, f"{where} got {got}, but no such event was sent"
            assert got == sig["payload"], f"{where} got {got}, sent {sig}"
            assert go.signal_id == sig["signalId"]
            stats["waits resumed by an event"] += 1
            continue
        # A None result must be a genuine timeout...
        assert go.timeout_at is not None, f"{where} got None without a timeout"
        assert go.completed_at is not None
        assert go.completed_at >= go.timeout_at
        stats["waits timed out"] += 1
        if sig is not None:
            # ... that fired before the worker could have seen the event.
            assert sig["at"] > go.timeout_at - NOTICE_SLACK_MS, (
                f"{where} timed out at {go.timeout_at} although its event was recorded at "
                f"{sig['at']}: a lost wake-up"
            )
            stats["events that lost to a timeout"] += 1

    # (e) one child per invoke step, and no child without its parent's step.
    children: dict[tuple[str | None, str | None], list[RunState]] = defaultdict(list)
    for run in runs.values():
        if run.workflow_id == "child":
            children[run.parent_run_id, run.parent_step].append(run)
    for run in runs.values():
        if run.workflow_id != "parent":
            continue
        kids = children.pop((run.run_id, "kid"), [])
        assert len(kids) == 1, f"parent {run.run_id} started {len(kids)} children"
        assert kids[0].run_id == run.steps["kid"].child_run_id
    assert not children, f"children without a parent step: {list(children)}"
    stats["runs"] = len(runs)
    stats["acknowledged starts"] = len(acks.starts)
    stats["acknowledged events"] = len(acks.events)
    stats["step executions"] = len(effects)
    return dict(stats)


def collect_signals(state: LedgerState, into: dict[str, dict[str, Any]]) -> None:
    """Remember every signal ever seen: compaction drops those no live run can take."""
    for sig in state.signals.get(EVENT_TYPE, ()):
        into.setdefault(
            sig.signal_id,
            {
                "signalId": sig.signal_id,
                "payload": loads(sig.payload),
                "at": sig.at,
                "seq": sig.seq,
            },
        )


def no_engine_errors(root: Path) -> None:
    for log_file in root.glob("worker-*.log"):
        text = log_file.read_text()
        for bad in ("the engine failed", "internal error", "recording its end failed", "Unhandled"):
            assert bad not in text, f"{log_file.name}: {bad!r}\n{text[-3000:]}"


@pytest.fixture(params=["file", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the suite's state lives: a data folder, or a fresh PostgreSQL database."""
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_db").url
        return url
    (tmp_path / "data").mkdir()
    return str(tmp_path / "data")


@pytest.mark.chaos
@pytest.mark.slow
def test_workflows_survive_sigkill_at_random_instants(
    tmp_path: Path, location: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path
    seed = str(random.randrange(1 << 30))
    rng = random.Random(seed)
    acks = Acks()
    signals: dict[str, dict[str, Any]] = {}
    endings: dict[tuple[str, str, str], set[int]] = {}
    kinds = ["normal"] * CYCLES + ["early"] * EARLY_CYCLES + ["blind"] * BLIND_CYCLES
    rng.shuffle(kinds)
    kinds[0] = "normal"  # the first cycle creates some runs to recover
    started = time.monotonic()
    for cycle, kind in enumerate(kinds):
        worker = Proc(
            "engine_worker",
            location,
            "run",
            seed,
            str(COMPACT_BYTES),
            stderr=root / "worker.err",
        )
        client = Proc("engine_client", location, "run", seed, stderr=root / "client.err")
        try:
            if kind == "blind":
                time.sleep(rng.uniform(0.25, 0.7))
            else:
                if not worker.read_until(b"ready", 30):
                    pytest.fail(f"cycle {cycle}: the worker did not start:\n{worker.stacks()}")
                time.sleep(rng.uniform(0, 0.1) if kind == "early" else rng.uniform(0.2, 1.2))
            assert worker.alive(), (
                f"cycle {cycle}: the worker died:\n{(root / 'worker.err').read_text()}"
            )
            assert client.alive(), (
                f"cycle {cycle}: the client died:\n{(root / 'client.err').read_text()}"
            )
            order = rng.choice(["together", "worker first", "client first"])
            first, second = (client, worker) if order == "client first" else (worker, client)
            first.kill()
            if order != "together":
                # The survivor goes on alone: a client sends events while no worker runs.
                time.sleep(rng.uniform(0.05, 0.3))
            second.kill()
            new = acks.take(worker.finish())
            new_client = acks.take(client.finish())
        finally:
            worker.reap()
            client.reap()
        assert worker.popen.returncode == -signal.SIGKILL
        assert client.popen.returncode == -signal.SIGKILL
        # Acknowledged means durable: this cycle's starts and events are in the ledger now.
        state = load_ledger(location, caplog, endings)
        collect_signals(state, signals)
        for run_id in (*new.starts, *new_client.starts):
            assert run_id in state.runs, f"cycle {cycle}: acknowledged run {run_id} lost"
        keys = {sig["payload"]["key"] for sig in signals.values()}
        for key in (*new.events, *new_client.events):
            assert key in keys, f"cycle {cycle}: acknowledged event {key} lost"
    kill_phase = time.monotonic() - started

    # The drain: no new runs; every run must end.
    worker = Proc(
        "engine_worker",
        location,
        "drain",
        seed,
        str(COMPACT_BYTES),
        stderr=root / "worker.err",
    )
    client = Proc("engine_client", location, "drain", seed, stderr=root / "client.err")
    try:
        drained = worker.read_until(b"drained", DRAIN_TIMEOUT_S)
        if not drained:
            print(worker.stacks())
            worker.kill()
            client.kill()
            state = load_ledger(location, caplog, endings)
            stuck = [
                (
                    r.run_id,
                    r.workflow_id,
                    r.status.value,
                    [(s.name, s.status.value) for s in r.steps.values()],
                )
                for r in state.runs.values()
                if not r.status.terminal
            ]
            pytest.fail(
                f"runs did not all end within {DRAIN_TIMEOUT_S}s (seed {seed}): {stuck[:10]}"
            )
        acks.take(worker.finish())
        acks.take(client.finish())
    finally:
        worker.reap()
        client.reap()
    assert worker.popen.returncode == 0, (root / "worker.err").read_text()
    assert client.popen.returncode == 0, (root / "client.err").read_text()
    no_engine_errors(root)

    # (f) the ledger reopens; lines that do not parse are named in warnings.
    state = load_ledger(location, caplog, endings)
    collect_signals(state, signals)
    stats = check_invariants(state, read_effects(root), acks, signals)
    # Every kind of run was exercised, and crashes really interrupted step bodies.
    for name in (
        "multi:completed",
        "waiter:completed",
        "parent:completed",
        "doomed:failed",
        "overdue:failed",
    ):
        assert stats.get(name, 0) > 0, stats
    assert stats["acknowledged events"] > 0, stats
    assert stats["waits timed out"] > 0, stats

    # Recovery is idempotent: a worker on the finished folder starts nothing and runs nothing.
    effects_before = (root / "effects.jsonl").read_bytes()
    ledger_before = ledger_bytes(location)

    async def reopen() -> None:
        engine_worker.EFFECTS = root / "effects.jsonl"
        async with open_platform(
            location, workflows=engine_worker.WORKFLOWS, watch=False
        ) as platform:
            await platform.settle()
            listed = await platform.workflows.list(limit=100_000)
            assert len(listed) == len(state.runs)
            assert all(run.status.terminal for run in listed)

    asyncio.run(reopen())
    assert (root / "effects.jsonl").read_bytes() == effects_before
    assert ledger_bytes(location) == ledger_before
    if "://" in location:  # the workers compacted the ledger (a new generation of its rows)
        assert ledger_generation(location) > 1
    print(f"seed {seed}; kill phase {kill_phase:.1f}s; {stats}")


# ------------------------------------------------------------------------------------------
# Races the crash suite found, pinned deterministically. Each needs another process to hold
# the ledger's append lock at one precise moment (in the suite: engine_client.py appending),
# which delays the worker's commit cycle: a run resumed in that window used to replay against
# state that did not have its latest records yet.


def other_process_lock(data_dir: Path) -> AppendLock:
    """The ledger's append lock as another process takes it (flock: a second open file)."""
    return AppendLock(data_dir / ".locks" / "runs.lock")


async def test_a_parent_resumed_while_another_process_appends_gets_its_childs_output(
    open_worker: Opener, data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    @define_workflow({"id": "race-kid"})
    async def kid(input: Any, step: Any, ctx: Any) -> Any:
        await step.sleep("nap", "1s")
        return "child-output"

    @define_workflow({"id": "race-parent", "options": {"retries": 0}})
    async def parent(input: Any, step: Any, ctx: Any) -> Any:
        return await step.invoke("k", "race-kid", None)

    async with open_worker([parent, kid]) as platform:
        other = other_process_lock(data_dir)
        try:
            engine = platform.worker.engine  # type: ignore[union-attr]
            settle = engine.waiting.settle_invoke

            def busy_settle(run: Any, step: Any, **options: Any) -> Any:
                # Another process appends just as the child's end resumes the parent.
                if other.try_acquire():
                    asyncio.get_running_loop().call_later(0.02, other.release)
                return settle(run, step, **options)

            monkeypatch.setattr(engine.waiting, "settle_invoke", busy_settle)
            handle = await platform.workflows.start("race-parent")
            await platform.settle()
            clock.advance("1s")
            # Was: WorkflowFailed "child run failed" (the replay read the invoke step as still
            # pending, settled it again and then looked for its outcome in the stale record).
            assert await handle.result(timeout=5) == "child-output"
        finally:
            other.close()


async def test_a_completed_step_does_not_run_again_when_an_event_arrives_mid_commit(
    open_worker: Opener, data_dir: Path, clock: FakeClock
) -> None:
    calls: list[str] = []
    holder: list[AppendLock] = []

    def before() -> str:
        calls.append("before")
        if len(calls) == 1:
            assert holder[0].try_acquire()  # another process is appending right now
        return f"token-{len(calls)}"

    @define_workflow({"id": "race-wait"})
    async def waits(input: Any, step: Any, ctx: Any) -> Any:
        token = await step.run("before", before)
        event = await step.wait_for_event("go", type="race.go", match={"k": 1})
        return [token, event]

    async with open_worker([waits]) as platform:
        other = other_process_lock(data_dir)
        holder.append(other)
        try:
            handle = await platform.workflows.start("race-wait")
            for _ in range(2000):  # the body runs in a worker thread: poll, up to ~10 s
                if other.held:
                    break
                await asyncio.sleep(0.005)
            assert other.held
            # The other process appends its event (as ClientWorkflows.send_event does, under
            # its lock) and rings the doorbell; the watcher makes the worker catch up.
            path = data_dir / "runs.jsonl"
            seq = max(orjson.loads(line)["seq"] for line in path.read_bytes().splitlines()) + 1
            signal_record = {"rec": "signal", "seq": seq, "signalId": "sig-1", "type": "race.go"}
            signal_record |= {"payload": {"k": 1}, "at": clock.now_ms()}
            with path.open("ab") as f:
                f.write(orjson.dumps(signal_record) + b"\n")
            platform.worker.refresh()  # type: ignore[union-attr]
            await asyncio.sleep(0.02)
            other.release()
            # Was: ["token-2", ...] with two calls: the resumed replay did not see the record of
            # "before", whose commit cycle was still waiting for the lock, and ran it again.
            assert await handle.result(timeout=5) == ["token-1", {"k": 1}]
            assert calls == ["before"]
        finally:
            other.close()


async def test_a_retry_sees_its_new_attempt_while_another_process_appends(
    open_worker: Opener, data_dir: Path
) -> None:
    seen: list[int] = []
    holder: list[AppendLock] = []

    def flaky(attempt: int) -> str:
        seen.append(attempt)
        if attempt < 2:
            if holder[0].try_acquire():  # another process appends as this attempt fails
                asyncio.get_running_loop().call_later(0.02, holder[0].release)
            raise RuntimeError("first attempt fails")
        return "ok"

    @define_workflow({"id": "race-retry", "options": {"retries": 1}})
    async def retried(input: Any, step: Any, ctx: Any) -> Any:
        # Inline: the body uses the event loop (a sync body otherwise runs in a thread).
        return await step.run("s", lambda: flaky(ctx.attempt), inline=True)

    async with open_worker([retried]) as platform:  # retry_backoff 0
        holder.append(other_process_lock(data_dir))
        try:
            handle = await platform.workflows.start("race-retry")
            # Was: attempts [1, 1, 2] and dozens of retry records: the retry replayed with the
            # old ctx.attempt while its status record waited for the lock.
            assert await handle.result(timeout=5) == "ok"
            assert seen == [1, 2]
            status = await handle.status()
            assert status is not None
            assert status.attempt == 2
        finally:
            holder[0].close()
