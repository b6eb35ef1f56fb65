"""Options of the chaos suite.

``pytest tests/chaos`` runs the bounded form (what CI runs: 20 kill cycles of 2-5 s, under three
minutes). ``--chaos-seconds N`` keeps killing and restarting the host for at least N seconds
(and at least 20 cycles); ``--long`` is ``--chaos-seconds 1800`` unless a duration is given:

    pytest tests/chaos/test_chaos.py -s --chaos-seconds 600
"""

from __future__ import annotations

import pytest

LONG_SECONDS = 1800.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos")
    group.addoption(
        "--chaos-seconds",
        type=float,
        default=None,
        help="run the chaos suite's kill/restart cycles for at least this many seconds",
    )
    group.addoption(
        "--long",
        action="store_true",
        default=False,
        help=f"the long chaos run (--chaos-seconds {LONG_SECONDS:.0f} unless given)",
    )


@pytest.fixture
def chaos_seconds(request: pytest.FixtureRequest) -> float | None:
    """How long the chaos run must last (None: the bounded CI form)."""
    seconds: float | None = request.config.getoption("--chaos-seconds", default=None)
    if seconds is None and request.config.getoption("--long", default=False):
        seconds = LONG_SECONDS
    return seconds
