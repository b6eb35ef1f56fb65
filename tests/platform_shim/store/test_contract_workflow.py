"""The engine and the services end to end on every store implementation.

The contract suite (``test_contract.py``) checks the store's promises one by one; this checks
that they are all the engine needs: a run that steps, sleeps on a fake clock and waits for an
event, recovery after the worker stops, and a client's start reaching the worker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from platform_shim.platform import Platform, open_client
from platform_shim.runtime import open_platform
from platform_shim.store import Location, MemorySpace
from platform_shim.store.postgres import StoreUnreachable
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus, StepKind


@pytest.fixture(params=["file", "memory", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Location:
    if request.param == "postgres":  # a fresh database (tests/support/postgres.py)
        url: str = request.getfixturevalue("postgres_db").url
        return url
    return tmp_path / "data" if request.param == "file" else MemorySpace("memory:errands")


def errand(fetched: list[str]) -> Any:
    @define_workflow({"id": "errand"})
    async def run(input: Any, step: Any, ctx: Any) -> Any:
        def fetch() -> dict[str, Any]:
            fetched.append(input["id"])
            return {"id": input["id"], "name": "Jane"}

        user = await step.run("fetch", fetch)
        await ctx.kv.put("errands", input["id"], user)
        await step.sleep("nap", "1h")
        reply = await step.wait_for_event(
            "reply", type="reply.sent", match={"id": input["id"]}, timeout="1d"
        )
        return {"user": user, "reply": reply}

    return run


async def _until_parked(platform: Platform, run_id: str) -> None:
    """Poll until the worker has taken a client's run up and parked it on its sleep."""
    for _ in range(3000):
        run = await platform.workflows.handle(run_id).status()
        if run is not None and run.status is RunStatus.SLEEPING:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the worker never took up the client's run {run_id}")


def _options() -> dict[str, Any]:
    return {"retry_backoff": lambda attempt: 0, "watch": False}


async def test_a_run_steps_sleeps_and_waits_on_every_store(
    location: Location, clock: FakeClock
) -> None:
    fetched: list[str] = []
    async with open_platform(
        location, workflows=[errand(fetched)], clock=clock, **_options()
    ) as platform:
        handle = await platform.workflows.start("errand", {"id": "u1"})
        await platform.settle()
        run = await handle.status()
        assert run is not None and run.status is RunStatus.SLEEPING
        assert await platform.kv.get("errands", "u1") == {"id": "u1", "name": "Jane"}
        clock.advance("1h")
        await platform.settle()
        run = await handle.status()
        assert run is not None and run.status is RunStatus.WAITING_EVENT
        assert await platform.workflows.send_event("reply.sent", {"id": "other"}) == 0
        assert await platform.workflows.send_event("reply.sent", {"id": "u1", "ok": True}) == 1
        result = await handle.result(timeout=30)
        assert result == {"user": {"id": "u1", "name": "Jane"}, "reply": {"id": "u1", "ok": True}}
        history = await handle.history()
        assert [(s.name, s.kind) for s in history] == [
            ("fetch", StepKind.RUN),
            ("nap", StepKind.SLEEP),
            ("reply", StepKind.WAIT_EVENT),
        ]
    assert fetched == ["u1"]


async def test_a_parked_run_resumes_after_the_worker_reopens(
    location: Location, clock: FakeClock
) -> None:
    fetched: list[str] = []
    workflow = errand(fetched)
    async with open_platform(location, workflows=[workflow], clock=clock, **_options()) as first:
        handle = await first.workflows.start("errand", {"id": "u2"})
        await first.settle()
        run_id = handle.run_id
    clock.advance("1h")
    async with open_platform(location, workflows=[workflow], clock=clock, **_options()) as again:
        await again.settle()
        handle = again.workflows.handle(run_id)
        run = await handle.status()
        assert run is not None and run.status is RunStatus.WAITING_EVENT
        clock.advance("1d")  # the wait times out: the run completes with no reply
        await again.settle()
        assert await handle.result(timeout=30) == {
            "user": {"id": "u2", "name": "Jane"},
            "reply": None,
        }
        assert await again.kv.get("errands", "u2") == {"id": "u2", "name": "Jane"}
    assert fetched == ["u2"]  # the recorded step never ran again


async def test_a_clients_start_reaches_the_worker_on_every_store(
    location: Location, clock: FakeClock
) -> None:
    fetched: list[str] = []
    async with open_platform(
        location, workflows=[errand(fetched)], clock=clock, retry_backoff=lambda attempt: 0
    ) as platform:
        client = open_client(location, clock=clock)
        try:
            # The worker's advert reaches the client through the store: unknown ids are refused.
            with pytest.raises(Exception, match="errand"):
                await client.workflows.start("no-such-workflow")
            handle = await client.workflows.start("errand", {"id": "u3"})
            await client.workflows.send_event("reply.sent", {"id": "u3"})
            await _until_parked(platform, handle.run_id)
            clock.advance("1h")
            await platform.settle()
            assert await handle.result(timeout=30) == {
                "user": {"id": "u3", "name": "Jane"},
                "reply": {"id": "u3"},
            }
        finally:
            client.close()
    assert fetched == ["u3"]


async def test_ticks_and_compaction_requests_go_through_the_service(
    location: Location, clock: FakeClock
) -> None:
    """What the CLI needs (the fired ticks, asking the host to compact) is public API."""

    @define_workflow({"id": "minutely", "trigger": {"kind": "schedule", "cron": "0 * * * * *"}})
    async def minutely(input: Any, step: Any, ctx: Any) -> Any:
        return input["scheduledAt"]

    async with open_platform(location, workflows=[minutely], clock=clock, **_options()) as platform:
        assert await platform.workflows.ticks() == {}
        clock.advance("61s")
        await platform.settle()
        ticks = await platform.workflows.ticks()
        assert list(ticks) == ["minutely"] and ticks["minutely"] % 60_000 == 0
        client = open_client(location, clock=clock)
        try:
            assert await client.workflows.ticks() == ticks
            worker = platform.worker
            assert worker is not None and worker.maintenance_passes == 0
            await client.workflows.request_compaction()
            worker.refresh()  # what the watch does when another process appends
            await platform.settle()
            assert worker.maintenance_passes == 1
        finally:
            client.close()


async def test_an_unsupported_store_url_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="mysql://db/app"):
        async with open_platform("mysql://db/app"):
            pass  # pragma: no cover - never opens


async def test_an_unreachable_database_is_named_without_its_password() -> None:
    with pytest.raises(
        StoreUnreachable, match=r"postgresql://app:\*\*\*@127.0.0.1:1/app"
    ) as caught:
        async with open_platform("postgresql://app:secret@127.0.0.1:1/app"):
            pass  # pragma: no cover - never opens
    assert "secret" not in str(caught.value)
