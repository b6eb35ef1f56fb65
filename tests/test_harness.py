"""The test harness's own rules (``tests/support/``): a program the run requires is never a skip,
and a wait that times out says what it waited for."""

from __future__ import annotations

import pytest

from tests.support.required import REQUIRE_VARIABLE, find_program
from tests.support.waiting import wait_until, wait_until_async

MISSING = "no-such-program-for-the-harness-test"


def test_a_missing_program_skips_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_VARIABLE, "chromium")
    with pytest.raises(pytest.skip.Exception, match=f"{MISSING} is not installed.*apt-get"):
        find_program("node", "apt-get install -y nodejs", MISSING)


@pytest.mark.parametrize("listed", ["node", "chromium,node", " chromium , node "])
def test_a_missing_program_the_run_requires_fails(
    monkeypatch: pytest.MonkeyPatch, listed: str
) -> None:
    monkeypatch.setenv(REQUIRE_VARIABLE, listed)
    with pytest.raises(pytest.fail.Exception, match=f"{REQUIRE_VARIABLE} requires node"):
        find_program("node", "apt-get install -y nodejs", MISSING)


def test_a_present_program_is_its_path() -> None:
    assert find_program("sh", "it is part of every system").endswith("/sh")


def test_wait_until_returns_the_first_truthy_answer() -> None:
    answers = iter([0, None, "", {"done": 1}])
    assert wait_until(lambda: next(answers), timeout=5, interval=0) == {"done": 1}


def test_wait_until_names_what_it_waited_for_and_the_last_answer() -> None:
    with pytest.raises(AssertionError, match=r"waiting for the run to finish \(last: None\)"):
        wait_until(lambda: None, timeout=0, what="the run to finish")
    with pytest.raises(AssertionError, match=r"waiting for the key \(last: \[\]\)"):
        wait_until(list, timeout=0, what="the key")


async def test_wait_until_async_takes_plain_and_async_checks() -> None:
    seen: list[int] = []

    async def grows() -> bool:
        seen.append(1)
        return len(seen) >= 3

    assert await wait_until_async(grows, timeout=5, interval=0) is True
    assert await wait_until_async(lambda: seen, timeout=5) == [1, 1, 1]
    with pytest.raises(AssertionError, match="waiting for nothing"):
        await wait_until_async(lambda: None, timeout=0, what="nothing")
