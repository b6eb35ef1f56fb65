"""``python -m bench``: run every scenario, write ``bench/RESULTS.md``, print the ratios.

    python -m bench                      # everything, DBOS side by side, full sizes
    python -m bench --only a,b           # a subset (named ones too: --only stall)
    python -m bench --smoke --out X.md   # tiny sizes, no peer: proves the harness works (CI)
    python -m bench --no-peer            # skip DBOS (its reference figures are shown, marked)
    python -m bench --only a --profile bench/profiles   # also write pyinstrument profiles

Each measurement is a fresh child process on a fresh data folder under a temp root on a real
disk (never tmpfs; ``--tmp`` or ``$BENCH_TMPDIR`` to choose). Where a figure is repeated, the
table shows the median and ``RESULTS.md`` lists every repeat.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    REPO,
    JobError,
    Machine,
    code_revision,
    fsync_probe,
    loadavg,
    pick_tmp_root,
    run_job,
)
from bench.harness import (
    DEFINITIONS,
    REFERENCE_P50_MS,
    REFERENCE_STEPS_PER_S,
    SCENARIOS,
    Ctx,
    now_iso,
    say,
)
from bench.report import SCENARIO_TITLES, Report
from bench.table_long import scenario_p, scenario_soak, scenario_stall
from bench.table_quick import scenario_a, scenario_b, scenario_c, scenario_d, scenario_e
from bench.table_restart import scenario_f, scenario_g

RUNNERS: dict[str, Callable[[Ctx], None]] = {
    "a": scenario_a,
    "b": scenario_b,
    "c": scenario_c,
    "d": scenario_d,
    "e": scenario_e,
    "f": scenario_f,
    "g": scenario_g,
    "stall": scenario_stall,
    "soak": scenario_soak,
    "p": scenario_p,
}


# ---------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes of every scenario, no peer (CI)"
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--peer",
        dest="peer",
        action="store_true",
        default=None,
        help="run DBOS side by side (default, except with --smoke)",
    )
    parser.add_argument(
        "--no-peer",
        dest="peer",
        action="store_false",
        help="do not run DBOS; compare with its reference figures",
    )
    parser.add_argument(
        "--out",
        default=str(REPO / "bench" / "RESULTS.md"),
        help="where to write the results (default: bench/RESULTS.md)",
    )
    parser.add_argument(
        "--tmp", help="folder for the scenarios' data folders (must be on a disk, not tmpfs)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="also profile a, b, e, f and g's reopen with pyinstrument into DIR (extra runs)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = args.only or ",".join(SCENARIOS)
    only = [s.strip() for s in chosen.replace(" ", "").split(",") if s.strip()]
    if len(only) == 1 and only[0] not in SCENARIOS:
        only = list(only[0])  # --only abc
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    peer = (not args.smoke) if args.peer is None else args.peer
    tmp_root = pick_tmp_root(args.tmp)
    out = Path(args.out).absolute()
    machine = Machine.probe(tmp_root)
    started = now_iso()
    fsync_us = fsync_probe(tmp_root, 50 if args.smoke else 200)
    argv_text = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    report = Report(
        machine=machine,
        started=started,
        command=argv_text,
        smoke=args.smoke,
        fsync_us=fsync_us,
        code=code_revision(),
        load_start=loadavg(),
    )
    log_file = out.with_name(out.stem + ".log")
    log_file.write_text("")
    ctx = Ctx(
        report,
        tmp_root,
        args.smoke,
        peer,
        Path(args.profile).absolute() if args.profile else None,
        log_file,
    )
    report.definitions = {k: v for k, v in DEFINITIONS.items() if k in only}
    say(
        f"bench: {machine.short()}; temp root {tmp_root} ({machine.disk}); fsync {fsync_us:.0f} us;"
        f" load {report.load_start[0]:.2f}; child logs in {log_file}"
    )
    if peer and any(s in only for s in "ab"):
        try:
            info = run_job("dbos_probe", {}, log_file=log_file).result
            report.peer_note = (
                f"DBOS Transact {info['dbos_version']} (pip `dbos`, extra `bench`), SQLite system database in a"
                " fresh folder per round on the same disk, each round a fresh process. DBOS's own SQLite"
                " settings: it sets `BEGIN IMMEDIATE` and a busy timeout and no journal or synchronous"
                " pragma, so SQLite's defaults hold (rollback journal `delete`, as queried after each"
                " round, and `synchronous=FULL`: every commit is fsync'd). Same workflow shape:"
                " `@DBOS.workflow() async def` looping over an `@DBOS.step() async def` that returns"
                " its argument; see `bench/peer_dbos.py`."
            )
        except (JobError, subprocess.TimeoutExpired) as exc:
            ctx.peer_error = str(exc)
            report.peer_note = (
                "DBOS could not be run here, so a) and b) compare with the reference figures from issue 5"
                f" (DBOS 3.4: {REFERENCE_STEPS_PER_S:.0f} steps/s, {REFERENCE_P50_MS} ms p50), **not measured in this"
                f" run**. The error:\n\n```\n{exc}\n```"
            )
            say(
                f"bench: DBOS unavailable ({str(exc).splitlines()[0]}); using the reference figures"
            )
    elif any(s in only for s in "ab"):
        report.peer_note = (
            "The peer was not run (`--no-peer` or `--smoke`): a) and b) compare with the reference figures"
            f" from issue 5 (DBOS 3.4: {REFERENCE_STEPS_PER_S:.0f} steps/s, {REFERENCE_P50_MS} ms p50), **not measured in this run**."
        )
    failed = False
    for scenario in only:
        say(f"== {SCENARIO_TITLES[scenario]} (load {loadavg()[0]:.2f})")
        t0 = time.perf_counter()
        try:
            RUNNERS[scenario](ctx)
        except Exception as exc:
            failed = True
            detail = str(exc) if isinstance(exc, JobError) else traceback.format_exc()
            report.errors.append(f"{SCENARIO_TITLES[scenario]}:\n{detail}")
            ctx.row(scenario, "FAILED", "error (see Errors below)")
            say(f"   FAILED: {detail}")
        say(f"   ({time.perf_counter() - t0:.1f} s)")
        report.load_end = loadavg()
        report.finished = now_iso()
        report.write(out)  # after each scenario, so a long run leaves what it has
    say(f"bench: wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
