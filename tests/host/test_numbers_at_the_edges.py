"""Numbers at the edges: each is a clear 400 (or an exact round trip), and nothing is written.

Before: ``X-TTL: 1e308`` answered 500; ``X-TTL: 1e20`` was accepted and then broke listing the
namespace (an expiration past 64 bits); ``$inc`` overflowing to infinity stored ``null`` and
reported "modified"; an integer past 64 bits in a body silently became a float; a queue delay or
duration past 64 bits failed at write time with a ``TypeError`` naming nothing.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from host.app import create_app
from host.config import HostConfig
from platform_shim.jsonvalue import INT_MAX, INT_MIN, loads_input
from platform_shim.platform import Platform
from tests.chaos.inproc import inprocess_host, lifespan

WORKFLOWS = """
from platform_shim.workflows import define_workflow


@define_workflow({"id": "echo"})
async def echo(input, step, ctx):
    return input
"""


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "echo.py").write_text(textwrap.dedent(WORKFLOWS))
    async with inprocess_host(project, tmp_path / "data") as (_, http):
        yield http


async def state(http: httpx.AsyncClient) -> dict[str, Any]:
    events = (await http.get("/api/events?limit=1000")).json()
    return {
        "events": [e["id"] for e in events],
        "runs": len((await http.get("/api/workflows/runs")).json()),
        "kv": (await http.post("/api/kv/n", json={})).json(),
        "docs": (await http.post("/api/db/c", json={})).json(),
    }


@pytest.mark.parametrize("ttl", ["1e308", "1e20", "1e15", "inf", "-inf", "nan", "1e-400"])
async def test_an_x_ttl_out_of_range_is_a_400(client: httpx.AsyncClient, ttl: str) -> None:
    before = await state(client)
    answer = await client.put("/api/kv/n/k", json=1, headers={"X-TTL": ttl})
    assert answer.status_code == 400, answer.text
    assert "ttl" in answer.json()["detail"].lower()
    assert await state(client) == before  # and listing the namespace still works


async def test_the_longest_ttl_is_stored_and_listed(client: httpx.AsyncClient) -> None:
    answer = await client.put("/api/kv/n/k", json=1, headers={"X-TTL": "1e14"})
    assert answer.status_code == 200
    (key,) = (await client.post("/api/kv/n", json={})).json()["result"]
    assert isinstance(key["expiration"], int) and key["expiration"] > 10**17


@pytest.mark.parametrize("number", [INT_MAX, INT_MIN, 2**53 + 1, -(2**63) + 1])
async def test_integers_within_64_bits_round_trip_exactly(
    client: httpx.AsyncClient, number: int
) -> None:
    body = b'{"n": %d, "l": [%d]}' % (number, number)
    assert (await client.put("/api/kv/n/k", content=body)).status_code == 200
    got = (await client.get("/api/kv/n/k")).json()
    assert got == {"n": number, "l": [number]} and type(got["n"]) is int
    assert (
        await client.put("/api/db/c", content=b'{"_id": "a", "n": %d}' % number)
    ).status_code == 200
    assert (await client.post("/api/db/c/findOne", json={"_id": "a"})).json()["n"] == number


BIG = [b"%d" % (INT_MAX + 1), b"%d" % (INT_MIN - 1), b"1" + b"0" * 30, b"-" + b"9" * 300]


@pytest.mark.parametrize("big", BIG)
async def test_integers_past_64_bits_are_a_400_everywhere(
    client: httpx.AsyncClient, big: bytes
) -> None:
    before = await state(client)
    requests = [
        ("PUT", "/api/kv/n/k", big, {}),
        ("PUT", "/api/db/c", b'{"_id": "a", "n": %s}' % big, {}),
        ("POST", "/api/db/c/update", b'{"filter": {}, "update": {"$set": {"n": %s}}}' % big, {}),
        ("POST", "/api/workflows/echo/start", b'{"n": %s}' % big, {}),
        ("POST", "/api/workflows/signal", b'{"eventType": "x", "payload": {"n": %s}}' % big, {}),
        ("POST", "/api/events", b'{"t": "x", "data": [%s]}' % big, {}),
        ("PUT", "/api/storage/o", b"bytes", {"X-Metadata": f'{{"n": {big.decode()}}}'}),
    ]
    for method, path, body, headers in requests:
        answer = await client.request(
            method, path, content=body, headers={"Content-Type": "application/json", **headers}
        )
        assert answer.status_code == 400, (path, answer.text)
        assert "64-bit" in answer.json()["detail"], answer.text
    assert (await client.get("/api/storage/o")).status_code == 404
    assert await state(client) == before


async def test_long_digit_runs_that_are_not_big_integers_still_load(
    client: httpx.AsyncClient,
) -> None:
    body = b'{"s": "123456789012345678901234567890", "f": 0.12345678901234567890123, "e": 1e300}'
    assert (await client.put("/api/kv/n/k", content=body)).status_code == 200
    assert (await client.get("/api/kv/n/k")).json() == {
        "s": "123456789012345678901234567890",
        "f": 0.12345678901234567890123,
        "e": 1e300,
    }


@pytest.mark.parametrize(
    ("start", "amount"), [(1e308, 1e308), (-1e308, -1e308), (INT_MAX, 1), (INT_MIN, -1)]
)
async def test_inc_past_what_a_document_holds_is_a_400(
    client: httpx.AsyncClient, start: float, amount: float
) -> None:
    await client.put("/api/db/c", json={"_id": "a", "n": start})
    before = await state(client)
    update = {"filter": {"_id": "a"}, "update": {"$inc": {"n": amount}}}
    answer = await client.post("/api/db/c/update", json=update)
    assert answer.status_code == 400, answer.text
    assert "overflow" in answer.json()["detail"] and "'n'" in answer.json()["detail"]
    assert await state(client) == before


async def test_python_gets_value_errors_and_nothing_is_written(platform: Platform) -> None:
    await platform.database.insert_one("c", {"_id": "a", "n": 1e308, "i": INT_MAX})
    with pytest.raises(ValueError, match="overflow"):
        await platform.database.update_one("c", {"_id": "a"}, {"$inc": {"n": 1e308}})
    with pytest.raises(ValueError, match="overflow"):
        await platform.database.update_many("c", {}, {"$inc": {"i": 1}})
    for amount in (float("inf"), float("nan"), 2**64):
        with pytest.raises(ValueError, match="finite"):
            await platform.database.update_one("c", {"_id": "a"}, {"$inc": {"n": amount}})
    for ttl in (1e308, 1e20, float("inf")):
        with pytest.raises(ValueError, match="ttl"):
            await platform.kv.put("n", "k", 1, ttl=ttl)
    for delay in (1e300, 10**30, "99999999999999999999d"):
        with pytest.raises(ValueError, match="queue 'q'"):
            await platform.queue.send("q", {}, delay=delay)
    assert await platform.database.find_one("c", {"_id": "a"}) == {
        "_id": "a",
        "id": "a",
        "n": 1e308,
        "i": INT_MAX,
    }
    assert (await platform.kv.list("n"))["keys"] == []
    assert [e.t for e in platform.stream.events] == ["db.document.created"]


def test_loads_input_refuses_only_what_would_change() -> None:
    assert loads_input(b"[%d, %d]" % (INT_MAX, INT_MIN)) == [INT_MAX, INT_MIN]
    assert loads_input('{"a": "%s"}' % ("9" * 40)) == {"a": "9" * 40}
    for text in (b"%d" % (INT_MAX + 1), b"[[%d]]" % (INT_MIN - 1)):
        with pytest.raises(ValueError, match="64-bit"):
            loads_input(text)


async def test_the_dev_clock_refuses_a_skip_past_64_bits(tmp_path: Path) -> None:
    app = create_app(HostConfig(project_dir=tmp_path, data_dir=tmp_path / "data", dev=True))
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            for advance in ("99999999999999999999d", 1e300, 10**17 + 1):
                answer = await http.post("/api/dev/clock", json={"advance": advance})
                assert answer.status_code == 400, answer.text
                assert "longer than" in answer.json()["detail"]
            assert (await http.get("/api/dev/clock")).json()["offsetMs"] == 0
