"""A reference model of parallel workflow shapes, written from the rules of SPEC §2.2/§6.2.

A *program* is a JSON tree that the ``par-shapes`` test workflow interprets:

- ``["seq" | "gather" | "group", [child, ...]]``: children one after another, or all at once
  with ``asyncio.gather`` / an ``asyncio.TaskGroup``; the value is the list of their values;
- ``["run", name, mode]``: ``step.run`` (a sync body in a thread, or an async one), value
  ``name + "!"``;
- ``["sleep", name, ms]``: ``step.sleep``, value ``None``;
- ``["wait", name, type, key | None, timeout_ms | None]``: ``step.wait_for_event`` matching
  ``{"k": key}`` (any event of the type when ``key`` is None); value the payload, or ``None``
  when the timeout passes first;
- ``["invoke", name, ms]``: ``step.invoke`` of a child that sleeps ``ms`` then runs one body;
  value ``name``.

The model steps one run at a time from one quiescent point to the next. Everything it decides
follows from the rules, except one thing the rules leave to the scheduler: in which order two
branches *reach* their steps within one quiescent phase (a sync body runs in a thread, so its
branch reaches its next step whenever the thread is done). The model takes that order from the
run's history ("in the order steps were first reached"), and uses it only where it matters: which
of two newly reached waits takes a buffered event, and which parked wait is the oldest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "EVENT_KEYS",
    "EVENT_TYPES",
    "Event",
    "Leaf",
    "ModelError",
    "RunModel",
    "name_program",
    "programs",
]

EVENT_TYPES = ("alpha", "beta")
EVENT_KEYS = ("k0", "k1")

Program = list[Any]


class ModelError(AssertionError):
    """The engine did something the model cannot explain (a step reached but not recorded)."""


@dataclass(frozen=True)
class Event:
    index: int  # the n-th event the test sent, from 0
    type: str
    key: str

    @property
    def payload(self) -> dict[str, Any]:
        return {"k": self.key, "n": self.index}


@dataclass
class Leaf:
    """A step of one run as the model sees it once reached."""

    name: str
    kind: str  # "run" | "sleep" | "wait" | "invoke"
    status: str  # "fresh" (a wait not yet resolved in this phase) | "pending" | "completed"
    output: Any = None
    due: int | None = None  # a sleep's wake time, a wait's timeout, a child's end
    type: str | None = None
    key: str | None = None


@dataclass
class RunModel:
    """One run of a program: which steps it reached, what each returned, what it waits for."""

    program: Program
    visible_from: int  # events with a smaller index were sent before the run was created
    leaves: dict[str, Leaf] = field(default_factory=dict)
    taken: set[int] = field(default_factory=set)  # events a wait of this run took
    done: bool = False
    output: Any = None

    # ----------------------------------------------------------------------- the phase

    def settle(self, now: int, events: Sequence[Event], reached: Mapping[str, int]) -> None:
        """Go on from the steps finished so far until every branch waits or the run ends.

        ``reached`` maps each recorded step name to its position in the run's history: newly
        reached waits are resolved in that order (each takes the oldest buffered event it
        matches, or parks)."""
        while not self.done:
            finished, value = self._walk(self.program, now)
            if finished:
                self.done, self.output = True, value
                return
            fresh = [leaf for leaf in self.leaves.values() if leaf.status == "fresh"]
            if not fresh:
                return
            missing = [leaf.name for leaf in fresh if leaf.name not in reached]
            if missing:
                raise ModelError(f"waits {missing} were reached but are not in the history")
            wait = min(fresh, key=lambda leaf: reached[leaf.name])
            event = self._oldest_event(wait, events)
            if event is None:
                wait.status = "pending"
            else:
                self._take(wait, event)

    def _walk(self, node: Program, now: int) -> tuple[bool, Any]:
        kind = node[0]
        if kind == "seq":
            values = []
            for child in node[1]:
                finished, value = self._walk(child, now)
                if not finished:
                    return False, None
                values.append(value)
            return True, values
        if kind in ("gather", "group"):
            results = [self._walk(child, now) for child in node[1]]
            if all(finished for finished, _ in results):
                return True, [value for _, value in results]
            return False, None
        leaf = self.leaves.get(node[1])
        if leaf is None:
            leaf = self.leaves[node[1]] = _reach(node, now)
        return leaf.status == "completed", leaf.output

    # ------------------------------------------------------------------ what wakes a run

    def deliver(self, event: Event, reached: Mapping[str, int]) -> str | None:
        """``send_event``: the oldest parked wait of this run that the event matches takes it."""
        if event.index < self.visible_from:
            return None
        parked = [
            leaf
            for leaf in self.leaves.values()
            if leaf.kind == "wait" and leaf.status == "pending" and _matches(leaf, event)
        ]
        if not parked:
            return None
        wait = min(parked, key=lambda leaf: reached[leaf.name])
        self._take(wait, event)
        return wait.name

    def fire(self, now: int) -> None:
        """Timers due by ``now``: sleeps wake, waits time out (``None``), children end."""
        for leaf in self.leaves.values():
            if leaf.status == "pending" and leaf.due is not None and leaf.due <= now:
                leaf.status = "completed"
                if leaf.kind != "invoke":
                    leaf.output = None

    def next_due(self) -> int | None:
        dues = [
            leaf.due
            for leaf in self.leaves.values()
            if leaf.status == "pending" and leaf.due is not None
        ]
        return min(dues) if dues else None

    def parked_waits(self, reached: Mapping[str, int]) -> list[Leaf]:
        """Pending waits, oldest first."""
        waits = [leaf for leaf in self.leaves.values() if leaf.kind == "wait"]
        return sorted(
            (leaf for leaf in waits if leaf.status == "pending"),
            key=lambda leaf: reached[leaf.name],
        )

    # ---------------------------------------------------------------------- expectations

    def bodies(self) -> set[str]:
        """Names of the ``step.run`` steps whose body has run (each exactly once)."""
        return {leaf.name for leaf in self.leaves.values() if leaf.kind == "run"}

    def children_done(self) -> set[str]:
        """Names of the invokes whose child ran its body (the child ended)."""
        return {
            leaf.name
            for leaf in self.leaves.values()
            if leaf.kind == "invoke" and leaf.status == "completed"
        }

    # ------------------------------------------------------------------------- helpers

    def _oldest_event(self, wait: Leaf, events: Sequence[Event]) -> Event | None:
        for event in events[self.visible_from :]:
            if event.index not in self.taken and _matches(wait, event):
                return event
        return None

    def _take(self, wait: Leaf, event: Event) -> None:
        wait.status = "completed"
        wait.output = event.payload
        self.taken.add(event.index)


def _reach(node: Program, now: int) -> Leaf:
    kind, name = node[0], node[1]
    if kind == "run":
        return Leaf(name, kind, "completed", output=f"{name}!")
    if kind == "sleep":
        ms = node[2]
        if ms <= 0:
            return Leaf(name, kind, "completed")
        return Leaf(name, kind, "pending", due=now + ms)
    if kind == "invoke":
        ms = node[2]
        if ms <= 0:
            return Leaf(name, kind, "completed", output=name)
        return Leaf(name, kind, "pending", output=name, due=now + ms)
    assert kind == "wait", node
    timeout = node[4]
    return Leaf(
        name,
        kind,
        "fresh",
        due=None if timeout is None else now + timeout,
        type=node[2],
        key=node[3],
    )


def _matches(wait: Leaf, event: Event) -> bool:
    return wait.type == event.type and (wait.key is None or wait.key == event.key)


# ------------------------------------------------------------------------------ strategies

_leaf = st.one_of(
    st.tuples(st.just("run"), st.sampled_from(["thread", "async"])),
    st.tuples(st.just("sleep"), st.sampled_from([0, 1000, 2000, 3000])),
    st.tuples(
        st.just("wait"),
        st.sampled_from(EVENT_TYPES),
        st.one_of(st.none(), st.sampled_from(EVENT_KEYS)),
        st.sampled_from([None, None, 1000, 2500]),
    ),
    st.tuples(st.just("invoke"), st.sampled_from([0, 1000, 2000])),
)


def _blocks(kinds: Sequence[str]) -> Any:
    def block(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.tuples(st.sampled_from(kinds), st.lists(children, min_size=1, max_size=3))

    return block


def name_program(shape: Any) -> Program:
    """Give every leaf of a generated shape a unique step name (``run3``, ``wait5``...), in
    preorder: the same shape always gets the same names."""
    counter = iter(range(10_000))

    def visit(node: Any) -> Program:
        kind = node[0]
        if kind in ("seq", "gather", "group"):
            return [kind, [visit(child) for child in node[1]]]
        return [kind, f"{kind}{next(counter)}", *node[1:]]

    return visit(shape)


def programs(
    max_leaves: int = 7, kinds: Sequence[str] = ("seq", "gather", "group")
) -> st.SearchStrategy[Program]:
    """Programs whose top is always a block (so a single leaf still runs inside one), built
    of blocks of ``kinds``."""
    block = _blocks(kinds)
    tree = st.recursive(_leaf, block, max_leaves=max_leaves)
    named: st.SearchStrategy[Program] = block(tree).map(name_program)
    return named
