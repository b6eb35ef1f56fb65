"""Rows of results and the ``RESULTS.md`` they become."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Machine

SCENARIO_TITLES = {
    "a": "a) throughput",
    "b": "b) latency",
    "c": "c) send_event",
    "d": "d) concurrency",
    "e": "e) long run",
    "f": "f) restart",
    "g": "g) KV and DB",
    "stall": "stall) compaction under load",
    "soak": "soak) 30 days on a fake clock",
    "p": "p) runs on disk",
}


@dataclass
class Row:
    scenario: str  # "a".."g", "stall", "soak"
    what: str  # what the figure measures
    figure: str  # our figure, with its unit
    peer: str = ""  # the peer's figure, or "" when there is no peer for this row
    ratio: str = ""
    target: str = ""
    met: bool | None = None
    command: str = ""
    load: float = math.nan  # 1-minute load average when the measurement started
    when: str = ""


@dataclass
class Report:
    machine: Machine
    started: str
    command: str
    smoke: bool
    fsync_us: float
    code: str
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    finished: str = ""
    rows: list[Row] = field(default_factory=list)
    definitions: dict[str, str] = field(default_factory=dict)
    details: dict[str, list[str]] = field(default_factory=dict)
    peer_note: str = ""
    errors: list[str] = field(default_factory=list)

    def detail(self, scenario: str, text: str) -> None:
        self.details.setdefault(scenario, []).append(text)

    def render(self) -> str:
        m = self.machine
        load = ", ".join(f"{x:.2f}" for x in self.load_start)
        load_end = ", ".join(f"{x:.2f}" for x in self.load_end)
        out = [
            "# Benchmark results",
            "",
            f"Produced by `{self.command}` (started {self.started}, finished {self.finished}),"
            f" code at {self.code}.",
            ""
            if not self.smoke
            else "**Smoke run: tiny sizes, no peer. These numbers prove the harness works, nothing else.**\n",
            "## Machine",
            "",
            f"- CPU: {m.cpu}, {m.cores} cores; memory {m.memory_mib} MiB",
            f"- Kernel: {m.kernel}; Python {m.python}",
            f"- Disk of the data folders: {m.disk}; temp root `{m.tmp_root}`",
            f"- fsync of a 100-byte append there, median of 200 at the start: {self.fsync_us:.0f} us",
            f"- Load average (1, 5, 15 min): {load} at the start, {load_end} at the end"
            " (the machine's other work shares these cores: figures move with it)",
            "",
        ]
        if self.peer_note:
            out += ["## Peer", "", self.peer_note, ""]
        out += [
            "## Results",
            "",
            "Our figures use the default durability (`fsync`, group-committed) unless the row says"
            " otherwise. `load` is the 1-minute load average when the row's measurement started.",
            "",
            "| scenario | figure | peer figure | ratio | target | machine | date | load | command |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            met = "" if row.met is None else (" (met)" if row.met else " (**not met**)")
            target = f"{row.target}{met}" if row.target else ""
            load_text = "" if math.isnan(row.load) else f"{row.load:.2f}"
            out.append(
                f"| {SCENARIO_TITLES[row.scenario]}: {row.what} | {row.figure} | {row.peer or '-'} |"
                f" {row.ratio or '-'} | {target or '-'} | {m.short()} | {row.when} | {load_text} | `{row.command}` |"
            )
        out += ["", "## Definitions", ""]
        for key in sorted(self.definitions):
            out.append(f"- **{SCENARIO_TITLES[key]}**: {self.definitions[key]}")
        if self.details:
            out += ["", "## Details (every repeat)", ""]
            for key in sorted(self.details):
                out.append(f"### {SCENARIO_TITLES[key]}")
                out.append("")
                out += [f"- {line}" for line in self.details[key]]
                out.append("")
        if self.errors:
            out += ["", "## Errors", ""]
            out += [f"```\n{error}\n```" for error in self.errors]
        return "\n".join(out).rstrip() + "\n"

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.render())
