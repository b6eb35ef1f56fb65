"""The scaling-out benchmarks still work: ``python -m bench.cluster --smoke`` (1 and 2 real hosts
on one PostgreSQL) prints a row of numbers per N, and ``python -m bench.failover --store postgres``
measures a takeover on a database, ``python -m bench.cross_signal`` a send through a standby,
``python -m bench.pg_memory`` memory per run and key on both stores, ``python -m
bench.docs_writes`` what a document write costs, ``python -m bench.pg_stages`` the stages of a
1-step run. No figure is asserted: tiny sizes on whatever machine CI has.
Without PostgreSQL's binaries they skip (or fail where ``PLATFORM_TESTS_REQUIRE`` names it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.postgres import PROGRAM, PostgresUnavailable, find_bin_dir
from tests.support.required import unavailable

# Each starts a PostgreSQL cluster and several host processes: seconds.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _postgres_binaries() -> None:
    try:
        find_bin_dir()
    except PostgresUnavailable as exc:
        unavailable(PROGRAM, str(exc))


def _bench(*args: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_cluster_prints_a_row_per_host_count() -> None:
    out = _bench("bench.cluster", "--smoke")
    assert "extra hosts add HTTP capacity, not execution capacity" in out
    rows = [line for line in out.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2"]
    for row in rows:
        # steps/s, start p50 and end-to-end p50 are numbers.
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert re.fullmatch(r"[\d,]+", cells[1]), row
        assert re.fullmatch(r"[\d.]+ ms", cells[2]), row
        assert re.fullmatch(r"\d+ ms", cells[4]), row


def test_failover_on_postgres_takes_over() -> None:
    out = _bench("bench.failover", "--store", "postgres", "--rounds", "1", "--runs", "2")
    assert re.search(r"median of 1 on a postgres store .*took over [\d.]+ s", out), out


def test_cross_signal_measures_a_send_through_the_standby() -> None:
    out = _bench("bench.cross_signal", "--runs", "3")
    assert re.search(r"\(3 runs, worker poll 1 h, durable PostgreSQL\): p50 [\d.]+ ms", out), out


def test_pg_memory_prints_both_stores() -> None:
    out = _bench("bench.pg_memory", "--runs", "200", "--keys", "200")
    rows = [line for line in out.splitlines() if re.match(r"\| (PostgreSQL|folder) \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["PostgreSQL", "folder"], out
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert all(re.fullmatch(r"-?[\d,]+ B", cell) for cell in cells[1:-1]), row
        assert cells[-1] == "200 / 200", row  # every key, before and after compaction


def test_docs_writes_prints_a_row_per_store() -> None:
    out = _bench("bench.docs_writes", "--n", "5")
    rows = [line for line in out.splitlines() if line.startswith(("folder ", "postgresql "))]
    assert [row.split()[0] for row in rows] == ["folder", "postgresql"]
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")[1:]]
        assert len(cells) == 5 and all(re.fullmatch(r"[\d.]+", cell) for cell in cells), row


def test_pg_stages_times_each_stage_of_a_run() -> None:
    out = _bench("bench.pg_stages", "--samples", "5", "--warmup", "2")
    # The stages come with how many runs reached them and a time in ms.
    assert re.search(r"result\(\) returned\s+5\s+[\d.]+$", out, re.MULTILINE), out[-2000:]
