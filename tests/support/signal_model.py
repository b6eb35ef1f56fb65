"""A reference model of durable sleeps, waits and signals, written from SPEC §2.2-2.4 and §6.2.

The model test (``tests/platform_shim/workflows/test_signal_model.py``) drives the real engine
and this model with the same calls and compares every run. Nothing here imports the engine: the
semantics are spelled out from the contract, step by step, on a virtual clock.

- A *program* is a tuple of steps: ``Run(value)`` returns ``value``; ``Sleep(ms)`` parks the run
  until ``now + ms`` (returns at once when ``ms <= 0``) and returns ``None``; ``Wait(type, match,
  timeout)`` returns the payload of a matching signal, or ``None`` once ``timeout`` ms elapsed.
- A run goes as far as it can at once: it only ever stops on a sleep that has not ended, a wait
  with nothing to take, or its end (``completed``, output = the list of its steps' results).
- A wait, when reached, takes the *oldest* signal of its type that matches, was sent after its
  run was created, and was not taken by an earlier wait of the same run (the no-race rule). If
  there is none it parks; a later ``send_event`` of a matching signal resumes it.
- ``send_event`` records the signal and resumes every run parked on a wait it matches (each run
  takes it once; different runs each take it); it returns how many it resumed.
- ``advance_to(t)`` ends every sleep whose wake time and every wait whose timeout is ``<= t``
  (those waits return ``None``); runs then go on with the clock at ``t``.
- Matching: every key of ``match`` is in the payload (a JSON object) with a JSON-equal value
  (``true`` never equals ``1``, at any depth). An empty or absent ``match`` matches any payload.
- A restart changes nothing: the model has no restart operation on purpose.

Every operation is deterministic; the model is small enough to copy (``copy.deepcopy``) when the
engine may legitimately take one of two orders (a signal sent before a new run reached its wait).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ModelRun",
    "ModelStep",
    "Program",
    "Run",
    "SignalModel",
    "Sleep",
    "Wait",
    "encode_program",
    "json_equal",
    "matches",
]


@dataclass(frozen=True)
class Run:
    """``step.run(name, lambda: value)``."""

    value: Any


@dataclass(frozen=True)
class Sleep:
    """``step.sleep(name, ms)``."""

    ms: int


@dataclass(frozen=True)
class Wait:
    """``step.wait_for_event(name, type=type, match=match, timeout=timeout)`` (ms or None)."""

    type: str
    match: dict[str, Any] | None
    timeout: int | None


Program = tuple[Run | Sleep | Wait, ...]


def encode_program(program: Program) -> list[dict[str, Any]]:
    """The program as JSON: the workflow input the test's interpreter workflow reads."""
    out: list[dict[str, Any]] = []
    for step in program:
        if isinstance(step, Run):
            out.append({"kind": "run", "value": step.value})
        elif isinstance(step, Sleep):
            out.append({"kind": "sleep", "ms": step.ms})
        else:
            out.append(
                {"kind": "wait", "type": step.type, "match": step.match, "timeout": step.timeout}
            )
    return out


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two JSON values: a boolean is never a number, containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) or isinstance(b, int | float):
        return isinstance(a, int | float) and isinstance(b, int | float) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is None and b is None


def matches(match: dict[str, Any] | None, payload: Any) -> bool:
    """Whether a signal with ``payload`` satisfies a wait's ``match``."""
    if not match:
        return True
    if not isinstance(payload, dict):
        return False
    return all(key in payload and json_equal(payload[key], want) for key, want in match.items())


@dataclass
class _Signal:
    seq: int
    type: str
    payload: Any


@dataclass(frozen=True)
class ModelStep:
    """A step as the run's history should show it (``status`` is "pending" or "completed")."""

    name: str
    kind: str  # "run" | "sleep" | "wait_event"
    status: str
    output: Any
    wake_at: int | None = None
    timeout_at: int | None = None


@dataclass
class ModelRun:
    """One run: its program, how far it got, and what it waits for."""

    index: int
    program: Program
    created_seq: int
    results: list[Any] = field(default_factory=list)
    history: list[ModelStep] = field(default_factory=list)
    taken: set[int] = field(default_factory=set)  # seqs of the signals its waits took
    due: int | None = None  # a pending sleep's wake time or a pending wait's timeout

    @property
    def pc(self) -> int:
        """The index of the step the run stands at (the pending one, if it is parked)."""
        return len(self.results)

    @property
    def status(self) -> str:
        if self.pc == len(self.program):
            return "completed"
        return "sleeping" if isinstance(self.program[self.pc], Sleep) else "waiting_event"

    @property
    def output(self) -> list[Any] | None:
        return list(self.results) if self.status == "completed" else None

    def pending_wait(self) -> Wait | None:
        """The wait the run is parked on (reached: in its history), if any."""
        if self.pc < len(self.history):
            step = self.program[self.pc]
            if isinstance(step, Wait):
                return step
        return None


class SignalModel:
    """The expected state of every run, given the same starts, signals and clock moves."""

    def __init__(self, now: int) -> None:
        self.now = now
        self._seq = 0  # orders run creations and signals, as "sent after the run was created"
        self.signals: list[_Signal] = []
        self.runs: list[ModelRun] = []

    # ------------------------------------------------------------------------ operations

    def start(self, program: Program, *, proceed: bool = True) -> ModelRun:
        """Create a run; with ``proceed`` it goes as far as it can at once (else call ``proceed``)."""
        self._seq += 1
        run = ModelRun(len(self.runs), program, self._seq)
        self.runs.append(run)
        if proceed:
            self.proceed(run)
        return run

    def send_event(self, type: str, payload: Any) -> int:
        """Record a signal, resume the parked waits it matches; how many it resumed."""
        self._seq += 1
        signal = _Signal(self._seq, type, payload)
        self.signals.append(signal)
        resumed = 0
        for run in self.runs:
            wait = run.pending_wait()
            if wait is None or not self._may_take(run, wait, signal):
                continue
            self._finish_wait(run, signal)
            resumed += 1
            self.proceed(run)
        return resumed

    def advance_to(self, when: int) -> None:
        """Move the clock to ``when``: sleeps end and waits time out (``None``) when due."""
        if when < self.now:
            raise ValueError(f"the model's clock cannot go back ({self.now} -> {when})")
        self.now = when
        for run in self.runs:
            if run.due is not None and run.due <= when:
                self._complete(run, None)  # a sleep's end, or a wait that timed out
                self.proceed(run)

    def next_due(self) -> int | None:
        """The earliest time a parked run wakes by itself (a sleep or a wait's timeout)."""
        return min((run.due for run in self.runs if run.due is not None), default=None)

    # ------------------------------------------------------------------------ execution

    def proceed(self, run: ModelRun) -> None:
        """Execute the run's steps from where it stands until it parks or ends."""
        while run.pc < len(run.program) and run.due is None:
            step = run.program[run.pc]
            name = f"s{run.pc}"
            if isinstance(step, Run):
                run.history.append(ModelStep(name, "run", "completed", step.value))
                run.results.append(step.value)
            elif isinstance(step, Sleep):
                wake_at = self.now + step.ms
                run.history.append(ModelStep(name, "sleep", "pending", None, wake_at=wake_at))
                if wake_at <= self.now:
                    self._complete(run, None)
                else:
                    run.due = wake_at
                    return
            else:
                timeout_at = None if step.timeout is None else self.now + step.timeout
                run.history.append(
                    ModelStep(name, "wait_event", "pending", None, timeout_at=timeout_at)
                )
                signal = self._oldest_signal(run, step)
                if signal is not None:
                    self._finish_wait(run, signal)
                elif timeout_at is not None and timeout_at <= self.now:
                    self._complete(run, None)
                else:
                    run.due = timeout_at
                    return

    def _oldest_signal(self, run: ModelRun, wait: Wait) -> _Signal | None:
        for signal in self.signals:  # in the order they were sent
            if self._may_take(run, wait, signal):
                return signal
        return None

    @staticmethod
    def _may_take(run: ModelRun, wait: Wait, signal: _Signal) -> bool:
        return (
            signal.type == wait.type
            and signal.seq > run.created_seq
            and signal.seq not in run.taken
            and matches(wait.match, signal.payload)
        )

    def _finish_wait(self, run: ModelRun, signal: _Signal | None) -> None:
        if signal is not None:
            run.taken.add(signal.seq)
        self._complete(run, None if signal is None else signal.payload)

    @staticmethod
    def _complete(run: ModelRun, output: Any) -> None:
        pending = run.history[-1]
        run.history[-1] = ModelStep(
            pending.name,
            pending.kind,
            "completed",
            output,
            wake_at=pending.wake_at,
            timeout_at=pending.timeout_at,
        )
        run.results.append(output)
        run.due = None
