"""``python -m bench.peers``: ours and DBOS Transact on one PostgreSQL, side by side (issue 14).

    python3 -m venv .venv-dbos && .venv-dbos/bin/pip install 'dbos==3.4.*'   # once
    python -m bench.peers                 # one table: steps/s and 1-step latency of each contender
    python -m bench.peers --write         # also put it under "PostgreSQL and DBOS" in RESULTS.md
    python -m bench.peers --smoke         # tiny sizes, one round: proves the harness works

The contenders run the jobs of scenarios a) and b) of ``python -m bench`` with its sizes (200 runs
x 10 steps started at once, after a warm-up of 20; 1-step ``start`` -> ``result`` in sequence,
after a warm-up), the same workflow shape and the same timing code (``bench.common.time_runs``):

- ours on a data folder (the default store; for reference, as in ``python -m bench``);
- ours on PostgreSQL: the same jobs with a ``postgresql://`` URL where the folder was, which
  ``open_platform`` hands to ``open_store``. Until the PostgreSQL store exists that raises
  ``ValueError: unsupported store`` and the row says "pending the store"; nothing else changes
  when it lands;
- DBOS Transact (``bench/peer_dbos.py``) with its system database on the same PostgreSQL.

DBOS is not a dependency of ours: it runs from its own interpreter, ``--dbos-python PATH``, else
``$BENCH_DBOS_PYTHON``, else ``.venv-dbos/bin/python`` in the repository, else this one (where
``pip install -e '.[bench]'`` may have put it). The PostgreSQL is a throwaway cluster of Debian's
binaries (``tests/support/postgres.py``) with ``fsync`` and ``synchronous_commit`` on, in a temp
folder on the same disk as the data folders; every job is a fresh process on a fresh database
(or folder), and rounds alternate the contenders so the machine's load falls on all of them.

Several hosts on one database (issue 14 asks for 1, 2 and 4) are not measured here yet. They plug
in as contenders ``ours, PostgreSQL, N hosts``: a ``hosts`` field on ``Contender``, and for N > 1
``Bench.run`` starts N ``throughput`` jobs at once (``subprocess.Popen`` of ``bench.job`` rather
than ``run_job``) on the same database URL, each starting runs/N of the runs after a start
barrier (each child opens its platform, writes a ready file and waits for a go file the parent
writes once all are ready) and reporting ``time.time()`` at its first start and last result:
steps/s = runs x steps / (last end - first start). The job's side of that (the barrier and the
timestamps) is a few lines in ``bench/s_workflows.py``'s ``throughput``; the table gains a row
per N.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from bench.common import (
    REPO,
    JobError,
    JobRun,
    Machine,
    code_revision,
    fsync_probe,
    loadavg,
    median,
    percentile,
    pick_tmp_root,
    run_job,
    scratch,
)
from bench.harness import FULL, SMOKE

HEADING = "## PostgreSQL and DBOS"
DBOS_VENV_PYTHON = REPO / ".venv-dbos" / "bin" / "python"
DBOS_PIN = "dbos==3.4.*"
INSTALL_DBOS = f"python3 -m venv .venv-dbos && .venv-dbos/bin/pip install '{DBOS_PIN}'"
UNSUPPORTED = "unsupported store"
"""What ``open_store`` says of a URL it does not know (the PostgreSQL store not being there yet)."""
PENDING = "pending the store"
# Issue 14's targets for ours on PostgreSQL, one host, against DBOS on the same PostgreSQL.
TARGET_THROUGHPUT = 10.0
TARGET_LATENCY = 5.0
SERVER_SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "shared_buffers",
)

Side = Literal["ours", "dbos"]
StoreKind = Literal["folder", "postgresql"]


@dataclass(frozen=True)
class Contender:
    """One row of the table: whose engine, on which store (more hosts: the module's docstring)."""

    label: str
    side: Side
    store: StoreKind

    @property
    def is_peer(self) -> bool:
        return self.side == "dbos"

    def job(self, kind: Literal["throughput", "latency"]) -> str:
        return f"dbos_{kind}" if self.is_peer else kind


CONTENDERS = (
    Contender("ours, data folder (reference)", "ours", "folder"),
    Contender("ours, PostgreSQL", "ours", "postgresql"),
    Contender("DBOS Transact, PostgreSQL", "dbos", "postgresql"),
)
PEER = CONTENDERS[2]
OURS_ON_PG = CONTENDERS[1]


@dataclass
class Tally:
    """What one contender measured over the rounds."""

    steps_per_s: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    pending: str | None = None  # why there are no figures (the store is not there yet)

    @property
    def measured(self) -> bool:
        return self.pending is None and bool(self.steps_per_s) and bool(self.latency_ms)


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# ------------------------------------------------------------------------------ the peer


def dbos_python(explicit: str | None) -> str:
    """The interpreter that has DBOS: the flag, the variable, the repository's ``.venv-dbos``,
    or this one."""
    for chosen in (explicit, os.environ.get("BENCH_DBOS_PYTHON")):
        if chosen:
            return chosen
    if DBOS_VENV_PYTHON.exists():
        return str(DBOS_VENV_PYTHON)
    return sys.executable


def probe_dbos(python: str, log_file: Path) -> str:
    """DBOS's version under ``python``, or ``SystemExit`` saying how to install it."""
    try:
        return str(
            run_job("dbos_probe", {}, python=python, log_file=log_file).result["dbos_version"]
        )
    except (JobError, OSError) as exc:
        raise SystemExit(
            f"bench.peers: DBOS Transact does not import under {python}:\n{exc}\n\n"
            f"Install it in a venv of its own (it is not a dependency of the project):\n"
            f"    {INSTALL_DBOS}\n"
            "or name an interpreter that has it: --dbos-python PATH or $BENCH_DBOS_PYTHON."
        ) from None


# ---------------------------------------------------------------------------- the rounds


@dataclass
class Bench:
    server: Any  # tests.support.postgres.PostgresServer (imported late: it imports pytest)
    tmp_root: Path
    peer_python: str
    log_file: Path
    tallies: dict[Contender, Tally] = field(default_factory=dict)

    @contextlib.contextmanager
    def location(self, contender: Contender) -> Iterator[dict[str, Any]]:
        """A fresh store for one job, as that job's arguments: ours take a folder or a URL as
        ``data`` (``open_platform`` accepts either), the peer a URL as ``url``."""
        if contender.store == "folder":
            with scratch(self.tmp_root, "peers") as folder:
                yield {"data": str(folder / "data")}
            return
        database = self.server.create_database()
        try:
            yield {"url" if contender.is_peer else "data": database.url}
        finally:
            self.server.drop_database(database.name)

    def run(
        self, contender: Contender, kind: Literal["throughput", "latency"], args: dict[str, Any]
    ) -> JobRun | None:
        """One job of ``contender`` on a fresh store; ``None`` once it is known to be pending."""
        tally = self.tallies.setdefault(contender, Tally())
        if tally.pending is not None:
            return None
        python = self.peer_python if contender.is_peer else None
        with self.location(contender) as where:
            say(f"    {contender.label}: {kind}")
            try:
                run = run_job(
                    contender.job(kind), {**args, **where}, python=python, log_file=self.log_file
                )
            except JobError as exc:
                if (
                    contender.store == "postgresql"
                    and not contender.is_peer
                    and UNSUPPORTED in str(exc)
                ):
                    tally.pending = PENDING
                    say(f"      {PENDING}: open_store does not take a postgresql:// URL yet")
                    return None
                raise
        tally.loads.append(run.load_before[0])
        return run

    def throughput(self, rounds: int, runs: int, steps: int) -> None:
        for r in range(rounds):
            for contender in CONTENDERS:
                run = self.run(contender, "throughput", {"runs": runs, "steps": steps})
                if run is None:
                    continue
                res = run.result
                tally = self.tallies[contender]
                tally.steps_per_s.append(res["steps_per_s"])
                tally.details.append(
                    f"round {r + 1}, {runs} x {steps}: {res['steps_per_s']:,.0f} steps/s"
                    f" ({res['wall_s']:.3f} s wall; load {run.load_before[0]:.2f})"
                )
                say(f"      {res['steps_per_s']:,.0f} steps/s")

    def latency(self, rounds: int, samples: int, warmup: int) -> None:
        for r in range(rounds):
            for contender in CONTENDERS:
                run = self.run(contender, "latency", {"samples": samples, "warmup": warmup})
                if run is None:
                    continue
                res = run.result
                tally = self.tallies[contender]
                tally.latency_ms += res["samples_ms"]
                tally.details.append(
                    f"round {r + 1}, 1-step latency: p50 {res['p50_ms']:.3f} ms, p99"
                    f" {res['p99_ms']:.3f} ms ({samples} samples; load {run.load_before[0]:.2f})"
                )
                say(f"      p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms")


# ---------------------------------------------------------------------------- the table


def fmt_ms(value: float) -> str:
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms"


def table(tallies: dict[Contender, Tally], rounds: int, runs: int, steps: int) -> list[str]:
    peer = tallies.get(PEER, Tally())
    peer_rate = median(peer.steps_per_s) if peer.measured else float("nan")
    peer_p50 = percentile(peer.latency_ms, 50) if peer.measured else float("nan")
    samples = len(peer.latency_ms) or max((len(t.latency_ms) for t in tallies.values()), default=0)
    lines = [
        f"| contender | steps/s, {runs} runs x {steps} steps (median of {rounds}) | 1-step p50"
        f" | 1-step p99 ({samples} samples) | steps/s vs DBOS | p50 vs DBOS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for contender in CONTENDERS:
        tally = tallies.get(contender, Tally())
        if not tally.measured:
            why = tally.pending or "not measured"
            lines.append(f"| {contender.label} | {why} | {why} | {why} | - | - |")
            continue
        rate = median(tally.steps_per_s)
        p50 = percentile(tally.latency_ms, 50)
        p99 = percentile(tally.latency_ms, 99)
        if contender.is_peer:
            vs_rate, vs_p50 = "1x (the peer)", "1x (the peer)"
        elif peer.measured:
            vs_rate, vs_p50 = f"{rate / peer_rate:,.1f}x", f"{peer_p50 / p50:,.1f}x lower"
        else:
            vs_rate = vs_p50 = "-"
        lines.append(
            f"| {contender.label} | {rate:,.0f} | {fmt_ms(p50)} | {fmt_ms(p99)} | {vs_rate} | {vs_p50} |"
        )
    return lines


def targets(tallies: dict[Contender, Tally]) -> str:
    ours, peer = tallies.get(OURS_ON_PG, Tally()), tallies.get(PEER, Tally())
    text = (
        f"Targets (issue 14, ours on PostgreSQL, one host): at least {TARGET_THROUGHPUT:g}x DBOS's"
        f" steps/s and a {TARGET_LATENCY:g}x lower 1-step p50."
    )
    if not (ours.measured and peer.measured):
        return f"{text} Not checked in this run: ours on PostgreSQL is {ours.pending or 'not measured'}."
    rate = median(ours.steps_per_s) / median(peer.steps_per_s)
    lower = percentile(peer.latency_ms, 50) / percentile(ours.latency_ms, 50)
    met = {True: "met", False: "**not met**"}
    return (
        f"{text} Steps/s: {rate:,.1f}x ({met[rate >= TARGET_THROUGHPUT]});"
        f" p50: {lower:,.1f}x lower ({met[lower >= TARGET_LATENCY]})."
    )


def section(
    *,
    bench: Bench,
    command: str,
    started: str,
    machine: Machine,
    fsync_us: float,
    loads: tuple[tuple[float, float, float], tuple[float, float, float]],
    settings: dict[str, str],
    dbos_version: str,
    sizes: dict[str, dict[str, Any]],
    smoke: bool,
) -> str:
    a, b = sizes["a"], sizes["b"]
    load_text = " at the start, ".join(", ".join(f"{x:.2f}" for x in load) for load in loads)
    server = ", ".join(f"`{k}={v}`" for k, v in settings.items())
    out = [
        HEADING,
        "",
        f"Produced by `{command}` (started {started}, finished {now_iso()}), code at"
        f" {code_revision()}.",
        *(
            ["", "**Smoke run: tiny sizes, one round. These figures prove the harness works.**"]
            if smoke
            else []
        ),
        "",
        f"Machine: {machine.short()}; {machine.memory_mib} MiB; data folders and the PostgreSQL"
        f" cluster on {machine.disk}; fsync of a 100-byte append {fsync_us:.0f} us (median)."
        f" Load average (1, 5, 15 min): {load_text} at the end (the machine is shared: figures move"
        " with it).",
        "",
        f"PostgreSQL: a throwaway cluster (`tests/support/postgres.py`, `durable=True`) with {server};"
        f" a fresh database per job. DBOS Transact {dbos_version} (pip `dbos`, its own venv), system"
        " database on that cluster, DBOS's defaults (pool of 20 connections, LISTEN/NOTIFY).",
        "",
        *table(bench.tallies, a["rounds"], a["runs"], a["steps"]),
        "",
        targets(bench.tallies),
        "",
        f"Definitions: as a) and b) of `python -m bench`: {a['runs']} runs x"
        f" {a['steps']} steps of an `async def` step returning its index, all started at once"
        f" (`asyncio.gather`), steps/s over first start to last result, after a warm-up of"
        f" {max(1, a['runs'] // 10)} runs; the 1-step latency is `start` -> `result()` in sequence,"
        f" {b['samples']} samples a round after {b['warmup']} warm-up runs, pooled over"
        f" {b['rounds']} rounds. Each job a fresh process on a fresh database or folder; rounds"
        " alternate the contenders.",
        "",
    ]
    for contender in CONTENDERS:
        tally = bench.tallies.get(contender, Tally())
        details = tally.details or [tally.pending or "not measured"]
        out += [f"- {contender.label}, {detail}" for detail in details]
    return "\n".join(out).rstrip() + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace the ``HEADING`` section of ``path`` (up to the next ``## ``) or append it."""
    old = path.read_text() if path.exists() else ""
    lines = old.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == HEADING), None)
    if start is None:
        new = old.rstrip() + "\n\n" + text if old.strip() else text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        after = "\n".join(lines[end:])
        new = "\n".join(lines[:start]).rstrip() + "\n\n" + text + ("\n" + after if after else "")
    path.write_text(new.rstrip() + "\n")


# ---------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.peers", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one round")
    parser.add_argument(
        "--dbos-python",
        metavar="PATH",
        help="the interpreter that has DBOS (default: $BENCH_DBOS_PYTHON, .venv-dbos/bin/python,"
        " this one)",
    )
    parser.add_argument(
        "--write",
        nargs="?",
        const=str(REPO / "bench" / "RESULTS.md"),
        metavar="FILE",
        help=f"also write the section '{HEADING[3:]}' into FILE (default bench/RESULTS.md)",
    )
    parser.add_argument("--tmp", help="folder for the data folders (on a disk, not tmpfs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from tests.support.postgres import PostgresServer, PostgresUnavailable

    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    a, b = sizes["a"], sizes["b"]
    command = " ".join(["python -m bench.peers", *(argv if argv is not None else sys.argv[1:])])
    tmp_root = pick_tmp_root(args.tmp)
    log_file = REPO / "bench" / "RESULTS.peers.log"
    log_file.write_text("")
    python = dbos_python(args.dbos_python)
    dbos_version = probe_dbos(python, log_file)
    started, load_start = now_iso(), loadavg()
    machine = Machine.probe(tmp_root)
    fsync_us = fsync_probe(tmp_root, 50 if args.smoke else 200)
    say(
        f"bench.peers: {machine.short()}; DBOS {dbos_version} from {python}; load"
        f" {load_start[0]:.2f}; child logs in {log_file}"
    )
    try:
        server = PostgresServer(durable=True).start()
    except PostgresUnavailable as exc:
        raise SystemExit(f"bench.peers: no PostgreSQL here: {exc}") from None
    try:
        settings = {name: server.psql(f"SHOW {name}") for name in SERVER_SETTINGS}
        bench = Bench(server, tmp_root, python, log_file)
        say(f"== throughput: {a['runs']} runs x {a['steps']} steps, {a['rounds']} rounds")
        bench.throughput(a["rounds"], a["runs"], a["steps"])
        say(f"== 1-step latency: {b['samples']} samples x {b['rounds']} rounds")
        bench.latency(b["rounds"], b["samples"], b["warmup"])
    finally:
        server.stop()
    text = section(
        bench=bench,
        command=command,
        started=started,
        machine=machine,
        fsync_us=fsync_us,
        loads=(load_start, loadavg()),
        settings=settings,
        dbos_version=dbos_version,
        sizes=sizes,
        smoke=args.smoke,
    )
    sys.stdout.write(text)
    if args.write:
        write_section(Path(args.write), text)
        say(f"bench.peers: wrote the section '{HEADING[3:]}' into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
