"""Hostile input: property-based fuzzing of every HTTP route, in-process and over a real socket.

In-process (the real app, lifespan run, called as Hypercorn would call it): hypothesis builds
requests from the app's own route table: any method, every path template filled with hostile
segments (``..``, ``%2e%2e``, ``%00``, ``%ff``, a stray ``%``, NUL, long and unicode names),
hostile query strings, headers (``Content-Type``, ``X-TTL``, ``X-Metadata``, ``Last-Event-ID``,
``Authorization``, invalid UTF-8 values), and bodies (random JSON, 100k ``[``, ``1e400``,
``2**70``, invalid UTF-8, Mongo operators, valid bodies that reach deep into the handlers),
sent in one to three chunks. For each: never a 5xx, never a stack trace, a source path or the
data/project folder in the answer, and a refused request (4xx) changes no data file (the data
folder's digest before and after). At the end every data file is whole JSON lines, nothing was
written outside the data folder, and blobs are only ever named by their digest.

Over a real socket to ``python -m host serve`` (Hypercorn): raw request bytes, so the parser
sees what no client library sends (non-ASCII and NUL in the target, invalid UTF-8 header
values, bad Content-Length, broken chunked bodies): never a 5xx, the host stays up.

``schemathesis`` runs against the published ``/openapi.json`` on a real host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import schemathesis  # in the 'test' extra: a missing one is a broken install, not a skip
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from host.openapi import OPENAPI
from platform_shim.testing import FakeClock
from tests.chaos.inproc import data_state, inprocess_host, raw_request
from tests.support.hostproc import ROOT, HostProcess
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until_async

FUZZ_PROJECT = """
from platform_shim.workflows import define_workflow


@define_workflow({"id": "echo", "options": {"retries": 0}})
async def echo(input, step, ctx):
    return await step.run("echo", lambda: input)


@define_workflow({"id": "waiter", "options": {"retries": 0}})
async def waiter(input, step, ctx):
    key = input.get("k") if isinstance(input, dict) else None
    return await step.wait_for_event("w", type="fuzz.go", match={"k": key})
"""

IN_PROCESS_EXAMPLES = 1500
SOCKET_EXAMPLES = 150
SOCKET_REQUESTS = [0]

# ------------------------------------------------------------------------------ strategies

SEGMENTS = st.one_of(
    st.text(min_size=1, max_size=30).map(lambda s: quote(s, safe="")),
    st.sampled_from(
        [
            "..",
            ".",
            "%2e%2e",
            "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
            "..%2f..%2f..%2fetc%2fpasswd",
            "../../../../etc/passwd",
            "%00",
            "a%00b",
            "%ff%fe",
            "%c0%af",
            "%",
            "%zz",
            "%2",
            "%2F",
            "a%2Fb",
            "a/b/c",
            "a//b",
            "~root",
            "con",
            "NUL",
            "%20",
            "%0d%0aX-Injected:%201",
            "x" * 1500,
            "%E2%80%AE",
            "1e400",
            "-1",
            "echo",
            "waiter",
            "ns",
            "key",
            "coll",
        ]
    ),
)

QUERY = st.lists(
    st.tuples(
        st.sampled_from(
            ["limit", "since", "runId", "many", "prefix", "status", "workflowId", "t", "token", "x"]
        ),
        st.one_of(
            st.sampled_from(
                [
                    "-1",
                    "0",
                    "1",
                    "1e400",
                    "99999999999999999999999",
                    "abc",
                    "true",
                    "%00",
                    "%ff",
                    "..%2F..",
                    "a b",
                ]
            ),
            st.text(max_size=10).map(lambda s: quote(s, safe="")),
        ),
    ),
    max_size=3,
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode())

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.one_of(
                st.text(max_size=8),
                st.sampled_from(
                    ["_id", "id", "$gt", "$in", "$where", "$set", "$inc", "$and", "$or"]
                ),
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)

ROUTE_BODIES = st.sampled_from(
    [
        {"filter": {"n": {"$gt": 1}}, "options": {"sort": {"n": -1}, "limit": 2}},
        {"filter": {"$or": [{"a": 1}, {"b": {"$in": [1, 2]}}]}, "update": {"$set": {"a": 2}}},
        {"filter": {}, "update": {"$inc": {"n": "x"}}},
        {"keys": {"a": 1}, "unique": True},
        {"keys": {"a": 7}},
        {"eventType": "fuzz.go", "payload": {"k": 1}},
        {"eventType": ""},
        {"t": "custom.fuzz", "data": {"a": [1, 2]}},
        {"t": "kv.put", "ns": "x", "k": "y"},
        {"t": "a\nb"},
        {"prefix": "a", "limit": 0},
        {"cursor": "!!!"},
        {"fromStep": "echo"},
        {"_id": "../../etc/passwd", "n": 1},
        {"_id": {"$gt": ""}},
    ]
)

BODIES = st.one_of(
    st.just(b""),
    JSON.map(lambda value: json.dumps(value).encode()),
    ROUTE_BODIES.map(orjson.dumps),
    st.sampled_from(
        [
            b"[" * 100_000,
            b"{" * 50_000,
            b'{"a":' * 2000 + b"1" + b"}" * 2000,
            b"[" * 300 + b"]" * 300,
            b"[" * 254 + b"1" + b"]" * 254,
            b"1e400",
            b"-1e400",
            b'{"n": 1e400}',
            str(2**70).encode(),
            b'{"n": ' + str(2**70).encode() + b"}",
            b'{"limit": 1e300}',
            b"NaN",
            b"\xff\xfe\xfd",
            b'{"a": "\xff"}',
            b'{"a": "\\ud800"}',
            b"\x00" * 10,
            b'{"eventType": "x", "payload": ' + b"[" * 1100 + b"]" * 1100 + b"}",
            b"{bad json",
            b"null",
            b'"string"',
        ]
    ),
    st.binary(max_size=200),
)

HEADER_VALUES = st.one_of(
    st.sampled_from(
        [
            b"application/json",
            b"text/plain",
            b"application/octet-stream",
            b"multipart/form-data; boundary=x",
            b"nan",
            b"inf",
            b"-5",
            b"1e400",
            b"0",
            b"abc",
            b"\xff\xfe",
            b'{"contentType": 5}',
            b'{"a": "\xe9"}',
            b"[1, 2]",
            b"Bearer x",
            b"99999999999999999999",
        ]
    ),
    st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b),
)

HEADERS = st.lists(
    st.tuples(
        st.sampled_from(
            [b"content-type", b"x-ttl", b"x-metadata", b"last-event-id", b"authorization", b"x-y"]
        ),
        HEADER_VALUES,
    ),
    max_size=3,
)

METHODS = st.sampled_from(
    ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "PROPFIND", "get"]
)

_PARAM = re.compile(r"\{[^}]+\}")


def templates(app: Any) -> list[tuple[str, list[str]]]:
    """Every route of the app (the API, the dashboard, /openapi.json) with its methods."""
    routes = [
        (route.path, sorted(route.methods or ["GET"]))
        for route in app.router.routes
        if isinstance(route, Route)
    ]
    extra = ["/", "/api", "/api/", "/api/kv", "/api/unknown/route", "/_platform/x"]
    return [*routes, *((path, ["GET"]) for path in extra)]


def fill(template: str, segments: list[str]) -> bytes:
    values = iter(segments)
    return _PARAM.sub(lambda _: next(values, "x"), template).encode("ascii")


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    chunks, start = [], 0
    for point in points:
        chunks.append(body[start:point])
        start = point
    chunks.append(body[start:])
    return chunks


# ---------------------------------------------------------------------------- answer checks

LEAKS = ["Traceback", 'File "', "site-packages", '.py"', str(ROOT)]


def check_answer(status: int, body: bytes, secrets: list[str], what: str) -> None:
    assert status < 500, f"{what} -> {status}: {body[:500]!r}"
    text = body.decode("utf-8", "replace")
    if status < 400 and not text.startswith('{"error"'):
        return  # a stored value (echoed back) may hold any text
    for leak in [*LEAKS, *secrets]:
        assert leak not in text, f"{what} -> {status} leaked {leak!r}: {text[:500]}"


# ---------------------------------------------------------------------------- in-process


@pytest.fixture(scope="module")
def fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "project" / "workflows").mkdir(parents=True)
    (root / "project" / "workflows" / "flows.py").write_text(textwrap.dedent(FUZZ_PROJECT))
    return root


class InProcess:
    """The host app on a private event loop, for a synchronous hypothesis test."""

    def __init__(self, root: Path, store: str | None = None) -> None:
        self.root = root
        self.data: Path | str = store or root / "data"
        self.loop = asyncio.new_event_loop()
        self._context = inprocess_host(
            root / "project", self.data, worker_options=None, clock=FakeClock()
        )
        self.app, self.client = self.loop.run_until_complete(self._context.__aenter__())
        self.templates = templates(self.app)
        self.requests = 0
        self.refused = 0

    def settle(self) -> None:
        worker = self.app.state.worker
        self.loop.run_until_complete(worker.settle(timeout=10))

    def close(self) -> None:
        self.loop.run_until_complete(self._context.__aexit__(None, None, None))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture(scope="module")
def inproc(fuzz_root: Path) -> Iterator[InProcess]:
    host = InProcess(fuzz_root)
    try:
        yield host
    finally:
        host.close()
    ours = {
        "data",
        "data-hangup",
        "data-limit",
        "data-real",
        "data-schema",
        "logs-hangup",
        "logs-real",
        "logs-schema",
        "project",
    }
    outside = sorted(p.name for p in fuzz_root.iterdir() if p.name not in ours)
    assert not outside, f"something was written outside the data folder: {outside}"
    for path in (fuzz_root / "project").rglob("*"):
        assert path.suffix in (".py", "") or "__pycache__" in path.parts, path
    for path in (fuzz_root / "data" / "blobs").rglob("*"):
        assert path.is_dir() or re.fullmatch(r"[0-9a-f]{64}", path.name), path
    for path in (fuzz_root / "data").glob("*.jsonl"):
        for line in path.read_bytes().split(b"\n")[:-1]:
            assert isinstance(orjson.loads(line), dict), (path, line[:200])
    print(f"\nFUZZ in-process: {host.requests} requests, {host.refused} refused, 0 5xx")


def _fuzzed(examples: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The in-process fuzz's hypothesis settings and inputs, for ``examples`` requests."""

    def wrap(test: Callable[..., None]) -> Callable[..., None]:
        fuzzed: Callable[..., None] = settings(
            max_examples=examples,
            phases=[Phase.explicit, Phase.generate],
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )(
            given(
                data=st.data(),
                method=METHODS,
                query=QUERY,
                headers=HEADERS,
                body=BODIES,
                cuts=st.lists(st.integers(0, 10**6), max_size=2),
            )(test)
        )
        return fuzzed

    return wrap


@_fuzzed(IN_PROCESS_EXAMPLES)
@pytest.mark.slow
def test_fuzz_every_route_in_process(
    inproc: InProcess,
    data: st.DataObject,
    method: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    cuts: list[int],
) -> None:
    fuzz_once(inproc, data, method, query, headers, body, cuts)


@pytest.fixture(scope="module")
def inproc_postgres(fuzz_root: Path, postgres_server: PostgresServer) -> Iterator[InProcess]:
    """The same host in process, on a PostgreSQL database instead of a folder."""
    database = postgres_server.create_database()
    host = InProcess(fuzz_root, store=database.url)
    try:
        yield host
    finally:
        host.close()
        postgres_server.drop_database(database.name)
    print(f"\nFUZZ in-process on PostgreSQL: {host.requests} requests, {host.refused} refused")


@_fuzzed(IN_PROCESS_EXAMPLES // 3)
@pytest.mark.slow
def test_fuzz_every_route_in_process_on_postgres(
    inproc_postgres: InProcess,
    data: st.DataObject,
    method: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    cuts: list[int],
) -> None:
    """No 5xx and nothing written by a refused request, on the PostgreSQL store (whose
    state is rows: ``data_state`` digests them)."""
    fuzz_once(inproc_postgres, data, method, query, headers, body, cuts)


def fuzz_once(
    inproc: InProcess,
    data: st.DataObject,
    method: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    cuts: list[int],
) -> None:
    template, methods = data.draw(st.sampled_from(inproc.templates), label="route")
    if data.draw(st.booleans(), label="a method of the route"):
        method = data.draw(st.sampled_from(methods), label="method")
    segments = data.draw(st.lists(SEGMENTS, min_size=2, max_size=2), label="segments")
    raw_path = fill(template, segments)
    before = data_state(inproc.data)
    response = inproc.loop.run_until_complete(
        asyncio.wait_for(
            raw_request(
                inproc.app,
                method,
                raw_path,
                query=query,
                headers=[*headers, (b"content-length", str(len(body)).encode())],
                chunks=split(body, cuts),
            ),
            timeout=20,
        )
    )
    inproc.requests += 1
    what = f"{method} {raw_path[:200]!r}?{query[:100]!r} body={body[:80]!r}"
    check_answer(response.status, response.body, [str(inproc.root)], what)
    if response.status >= 400:
        inproc.refused += 1
        assert data_state(inproc.data) == before, f"a refused request wrote: {what}"
    else:
        inproc.settle()


def test_json_depth_and_body_size_are_bounded(inproc: InProcess) -> None:
    """Nesting past what can be stored is a 400; a body over the limit a 413 (also unannounced,
    streamed in chunks); neither writes anything."""
    deep_bodies = [b"[" * 100_000, b"[" * 300 + b"]" * 300, b'{"a":' * 2000 + b"1" + b"}" * 2000]
    writes = [
        ("PUT", b"/api/kv/ns/deep"),
        ("PUT", b"/api/db/deep"),
        ("POST", b"/api/db/deep/update"),
        ("POST", b"/api/events"),
        ("POST", b"/api/workflows/signal"),
        ("POST", b"/api/workflows/echo/start"),
    ]
    for method, path in writes:
        for body in deep_bodies:
            before = data_state(inproc.data)
            response = inproc.loop.run_until_complete(
                raw_request(inproc.app, method, path, chunks=[body])
            )
            assert response.status == 400, (method, path, response.body[:300])
            assert data_state(inproc.data) == before
    nested_filter = b'{"filter": ' + b'{"$and": [' * 600 + b'{"a": 1}' + b"]}" * 600 + b"}"
    response = inproc.loop.run_until_complete(
        raw_request(inproc.app, "POST", b"/api/db/deep", chunks=[nested_filter])
    )
    assert response.status == 400, response.body[:300]

    async def over_limit() -> list[int]:
        async with inprocess_host(
            inproc.root / "project", inproc.root / "data-limit", max_body=64 * 1024
        ) as (app, _):
            big = b'"' + b"x" * 100_000 + b'"'
            statuses = []
            announced = [(b"content-length", str(len(big)).encode())]
            statuses.append(
                (
                    await raw_request(
                        app, "PUT", b"/api/kv/ns/big", headers=announced, chunks=[big]
                    )
                ).status
            )
            streamed = [big[i : i + 8192] for i in range(0, len(big), 8192)]
            statuses.append(
                (await raw_request(app, "PUT", b"/api/kv/ns/big", chunks=streamed)).status
            )
            statuses.append(
                (await raw_request(app, "PUT", b"/api/storage/big", chunks=streamed)).status
            )
            statuses.append((await raw_request(app, "GET", b"/api/kv/ns/big")).status)
            return statuses

    assert inproc.loop.run_until_complete(over_limit()) == [413, 413, 413, 404]
    import shutil

    shutil.rmtree(inproc.root / "data-limit")


def test_a_run_output_nested_254_deep_ends(inproc: InProcess) -> None:
    body = b"[" * 254 + b"1" + b"]" * 254
    response = inproc.loop.run_until_complete(
        raw_request(
            inproc.app, "POST", b"/api/workflows/echo/start", query=b"runId=deep254", chunks=[body]
        )
    )
    if response.status == 400:
        return  # refused up front: fine too
    assert response.status == 200, response.body

    async def ended() -> bool:
        run = (await inproc.client.get("/api/workflows/runs/deep254")).json()
        return run["status"] in ("completed", "failed")

    inproc.loop.run_until_complete(wait_until_async(ended, what="the run deep254 to end"))


# ------------------------------------------------------------------------------ real socket


@pytest.fixture(scope="module")
def real_host(fuzz_root: Path) -> Iterator[HostProcess]:
    runner = HostProcess(fuzz_root / "project", fuzz_root / "data-real", fuzz_root / "logs-real")
    runner.start()
    try:
        runner.wait_ready()
        yield runner
    finally:
        code = runner.stop()
    log = runner.log()
    assert code == 0, log[-4000:]
    assert not real_errors(log), real_errors(log)[0]
    print(f"\nFUZZ real Hypercorn: {SOCKET_REQUESTS[0]} raw requests, 0 5xx, host up")


def real_errors(log: str) -> list[str]:
    """The host log's unhandled errors, less those of a client that hung up mid-body (a known
    bug: ``test_client_hanging_up_mid_body_is_not_an_error``)."""
    entries = re.split(r"\n(?=\d{4}-\d\d-\d\d |\[\d{4}-)", log)
    return [
        entry
        for entry in entries
        if ("unhandled error" in entry or "Error in ASGI Framework" in entry)
        and not entry.rstrip().endswith("starlette.requests.ClientDisconnect")
    ]


def send_raw(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send bytes, read the answer; (status, body) or (0, b"") if the server just closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(request)
        data = b""
        with contextlib.suppress(OSError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
                if b"text/event-stream" in data:
                    break  # a live stream: its start is enough
    if not data.startswith(b"HTTP/1.1 "):
        return 0, data
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12]), body


def settled_state(data: Path) -> dict[str, str]:
    """The data folder's digest once it stopped changing (a run may still be finishing, the
    relay and the dispatcher write their positions just after): unchanged for 4 looks 50 ms
    apart, so a loaded machine does not pass an earlier request's late writes off as this one's."""
    previous = data_state(data)
    quiet = 0
    while quiet < 4:
        time.sleep(0.05)
        current = data_state(data)
        quiet = quiet + 1 if current == previous else 0
        previous = current
    return previous


RAW_TARGETS = st.one_of(
    st.builds(
        lambda t, s: fill(t, s),
        st.sampled_from(
            [
                "/api/kv/{ns}/{key}",
                "/api/storage/{key}",
                "/api/db/{coll}",
                "/api/workflows/runs/{runId}",
                "/api/workflows/{id}/start",
                "/_platform/runs/{id}",
            ]
        ),
        st.lists(SEGMENTS, min_size=2, max_size=2),
    ),
    st.binary(min_size=1, max_size=60).map(
        lambda b: b"/api/kv/ns/" + b.replace(b" ", b"").replace(b"\r", b"").replace(b"\n", b"")
    ),
    st.sampled_from(
        [
            b"/api/kv/ns/\x00",
            b"/api/kv/ns/\xff\xfe",
            b"*",
            b"http://evil/api/kv/ns/k",
            b"/api/kv/ns/%",
            b"//api//kv",
            b"/api/storage/..%2f..%2fetc",
        ]
    ),
)


@settings(
    max_examples=SOCKET_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@given(
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"G\x00T", b"BREW"]),
    target=RAW_TARGETS,
    headers=HEADERS,
    body=BODIES.filter(lambda b: len(b) < 200_000),
    framing=st.sampled_from(["length", "none", "chunked", "bad-chunked", "bogus-length"]),
)
@pytest.mark.slow
def test_fuzz_real_hypercorn(
    real_host: HostProcess,
    fuzz_root: Path,
    method: bytes,
    target: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    framing: str,
) -> None:
    head = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [name + b": " + value for name, value in headers]
    payload = body
    if framing == "length":
        head.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    elif framing == "bad-chunked":
        head.append(b"Transfer-Encoding: chunked")
        payload = b"zz\r\n" + body
    elif framing == "bogus-length":
        head.append(b"Content-Length: -1, 5")
    data = fuzz_root / "data-real"
    SOCKET_REQUESTS[0] += 1
    before = settled_state(data)
    status, answer = send_raw(real_host.port, b"\r\n".join(head) + b"\r\n\r\n" + payload)
    what = f"{method!r} {target[:200]!r} {framing} body={body[:80]!r}"
    assert real_host.proc is not None and real_host.proc.poll() is None, real_host.log()[-4000:]
    if status == 0:
        return  # the parser dropped the connection: nothing reached the app
    check_answer(status, answer, [str(fuzz_root)], what)
    if status >= 400:
        assert settled_state(data) == before, f"a refused request wrote: {what}"


def test_client_hanging_up_mid_body_is_not_an_error(fuzz_root: Path) -> None:
    runner = HostProcess(
        fuzz_root / "project", fuzz_root / "data-hangup", fuzz_root / "logs-hangup"
    )
    runner.start()
    try:
        runner.wait_ready()
        request = b"PUT /api/kv/ns/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"
        with socket.create_connection(("127.0.0.1", runner.port), timeout=5) as sock:
            sock.sendall(request)
            time.sleep(0.2)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", runner.port), timeout=5) as sock:
            sock.sendall(
                b"GET /api/kv/ns/k HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )
            assert sock.recv(100).startswith(b"HTTP/1.1 404")
    finally:
        assert runner.stop() == 0
    log = runner.log()
    assert "unhandled error" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


# ------------------------------------------------------------------------------ schemathesis

SCHEMATHESIS_CALLS = [0]


@pytest.fixture(scope="module")
def schema_host(fuzz_root: Path) -> Iterator[str]:
    runner = HostProcess(
        fuzz_root / "project", fuzz_root / "data-schema", fuzz_root / "logs-schema"
    )
    runner.start()
    try:
        runner.wait_ready()
        served = httpx.get(f"{runner.url}/openapi.json").json()
        assert served == orjson.loads(orjson.dumps(OPENAPI))
        yield runner.url
    finally:
        assert runner.stop() == 0, runner.log()[-4000:]
    log = runner.log()
    assert not real_errors(log), real_errors(log)[0]
    print(f"\nFUZZ schemathesis: {SCHEMATHESIS_CALLS[0]} requests, 0 5xx")


SCHEMA = schemathesis.openapi.from_dict(OPENAPI).exclude(path="/api/events/stream")


@SCHEMA.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_schemathesis(case: Any, schema_host: str) -> None:
    """Every operation of /openapi.json (the SSE stream aside: it never ends): no 5xx,
    every status code, content type and body as documented."""
    SCHEMATHESIS_CALLS[0] += 1
    case.call_and_validate(
        base_url=schema_host,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
