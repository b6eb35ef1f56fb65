"""``open_platform(store=…)``, ``open_client(store=…)`` and ``get_platform()`` on
``$PLATFORM_STORE``: the library's side of ``--store``.

Every existing caller passes a folder positionally; ``store=`` is the alternative that takes
what ``--store`` takes (a URL or a folder). ``get_platform()`` outside a running platform reads
``$PLATFORM_STORE`` before ``$PLATFORM_DATA_DIR``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from platform_shim import get_platform, open_platform
from platform_shim import platform as platform_module
from platform_shim.platform import open_client
from platform_shim.store.postgres import BadStoreUrl
from platform_shim.workflows import define_workflow


@define_workflow({"id": "double"})
async def double(input: int, step: Any, ctx: Any) -> Any:
    return await step.run("double", lambda: input * 2)


@pytest.fixture
def fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``get_platform``'s client cache, emptied before and closed after the test."""
    monkeypatch.delenv("PLATFORM_STORE", raising=False)
    monkeypatch.delenv("PLATFORM_DATA_DIR", raising=False)
    saved = dict(platform_module._clients)
    platform_module._clients.clear()
    try:
        yield
    finally:
        for client in platform_module._clients.values():
            client.close()
        platform_module._clients.clear()
        platform_module._clients.update(saved)


async def test_open_platform_store_memory_runs_a_workflow() -> None:
    async with open_platform(store="memory:", workflows=[double]) as platform:
        handle = await platform.workflows.start("double", 21)
        assert await handle.result() == 42
        assert platform.store.location.startswith("memory:")
        assert repr(platform) == f"<Platform {platform.store.location!r}>"


async def test_open_platform_store_folder_is_the_same_as_the_positional_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "data"
    async with open_platform(store=str(folder), workflows=[double]) as platform:
        run_id = (await platform.workflows.start("double", 1)).run_id
        await platform.settle()
    async with open_platform(folder, workflows=[double]) as platform:
        assert await platform.workflows.handle(run_id).result() == 2


async def test_open_platform_refuses_a_bad_url_and_two_locations(tmp_path: Path) -> None:
    with pytest.raises(BadStoreUrl) as raised:
        async with open_platform(store="postgresql://alice:s3cret@h/"):
            pass
    assert "alice:***@h" in str(raised.value) and "s3cret" not in str(raised.value)
    with pytest.raises(TypeError, match="exactly one"):
        async with open_platform(tmp_path, store="memory:"):
            pass
    with pytest.raises(TypeError, match="exactly one"):
        async with open_platform():
            pass
    assert list(tmp_path.iterdir()) == []  # nothing opened, nothing written


async def test_open_client_store_reads_what_a_worker_wrote(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    async with open_platform(folder) as worker:
        await worker.kv.put("ns", "k", "v")
    client = open_client(store=str(folder))
    try:
        assert await client.kv.get("ns", "k") == "v"
    finally:
        client.close()
    with pytest.raises(TypeError, match="exactly one"):
        open_client(folder, store=str(folder))


async def test_get_platform_reads_platform_store_before_platform_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_clients: None
) -> None:
    chosen, ignored = tmp_path / "chosen", tmp_path / "ignored"
    for folder, value in ((chosen, "chosen"), (ignored, "ignored")):
        async with open_platform(folder) as worker:
            await worker.kv.put("ns", "k", value)
    monkeypatch.setenv("PLATFORM_DATA_DIR", str(ignored))
    assert await get_platform().kv.get("ns", "k") == "ignored"
    monkeypatch.setenv("PLATFORM_STORE", str(chosen))
    client = get_platform()
    assert await client.kv.get("ns", "k") == "chosen"
    assert get_platform() is client  # opened once per process and location


def test_get_platform_refuses_memory_and_bad_urls(
    monkeypatch: pytest.MonkeyPatch, fresh_clients: None
) -> None:
    monkeypatch.setenv("PLATFORM_STORE", "memory:")
    with pytest.raises(ValueError, match="private to the process"):
        get_platform()
    monkeypatch.setenv("PLATFORM_STORE", "mysql://alice:s3cret@h/db")
    with pytest.raises(BadStoreUrl) as raised:
        get_platform()
    assert str(raised.value).startswith("$PLATFORM_STORE: unsupported store")
    assert "s3cret" not in str(raised.value)
    assert platform_module._clients == {}
