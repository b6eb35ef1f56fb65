"""The benchmark harness still works: ``python -m bench --smoke`` writes a row with numbers for
every scenario. No timing is asserted: these are tiny sizes on whatever machine CI has."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Over ~3 s as a whole: its fixture runs every benchmark scenario once.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = [*"abcdefg", "stall", "soak"]


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("bench") / "RESULTS.md"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"python -m bench --smoke failed:\n{proc.stderr[-4000:]}"
    assert out.exists()
    return out.read_text()


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if (
            line.startswith("| ")
            and not line.startswith("| scenario")
            and not line.startswith("|---")
        ):
            rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_every_scenario_has_a_row_with_a_number(smoke_results: str) -> None:
    rows = _table_rows(smoke_results)
    for scenario in SCENARIOS:
        mine = [row for row in rows if row[0].startswith(f"{scenario})")]
        assert mine, f"no row for scenario {scenario}"
        for row in mine:
            assert "FAILED" not in row[0], row
            assert re.search(r"\d", row[1]), f"scenario {scenario} row without a number: {row}"


def test_the_report_names_the_machine_and_the_peer(smoke_results: str) -> None:
    assert "## Machine" in smoke_results
    assert "Smoke run" in smoke_results
    # The smoke run does not run DBOS; a) and b) say they compare with the reference figures.
    assert "NOT measured in this run" in smoke_results
    for needle in ("steps/s", " ms", "python -m bench --only a --smoke"):
        assert needle in smoke_results
