"""The KV snapshot for compaction: copied a chunk per loop turn, serialized on a thread.

A million keys take 40-100 ms to copy in one go, and the loop could serve nothing meanwhile. So
the keys are listed in chunks of ``CHUNK``, one chunk per loop turn (only a dict iteration needs
the loop: the table must not change under it), and handed to the compaction thread through a
queue; the thread looks each key up in the live namespace (a single lookup is atomic under the
GIL) and turns it into a snapshot line. Listing keys creates no new objects for the cyclic
collector to trace (copying a million (key, entry) pairs did, and set off full collections).

Why a copy that spans many loop turns is still a right snapshot: it starts at the checkpoint
(the last event id when compaction took the state) and every event after the checkpoint stays
in ``events.jsonl``, replayed over the snapshot at load. A key no event touched after the
checkpoint is copied with its value at the checkpoint; a key some later event touched may be
copied with any of its values since, or be missing, and replaying the later events leaves it as
the last of them says, because every KV event is absolute: ``kv.put`` sets the value,
``kv.delete`` removes it, ``kv.expired`` removes the version it names. A key that appears twice
(see below) loads as its later copy, which is at least as new.

A dict iterator survives values being replaced but not keys being added or removed (the table
may be rebuilt under it). ``KvState.shape`` counts those changes per namespace; when it moved
between two chunks, the namespace is copied again from its start (already-copied keys come
twice: harmless, as said). After ``RESTARTS`` restarts the rest of the namespace is copied in
one go, so a namespace under a steady stream of new keys costs at worst what a one-shot copy
costs, and compaction always ends.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from platform_shim.services.kv import KvState

__all__ = ["chunked_snapshot"]

CHUNK = 20_000
RESTARTS = 2
_YIELD_EVERY = 500
_PAUSE_S = 0.0002
_WAIT_S = 300.0  # a thread left waiting longer than this has lost its loop: give up

Entry = tuple[bytes, "int | None"]
Chunk = tuple[str, dict[str, Entry], list[str]]
Item = Chunk | BaseException | None  # a chunk, the copy failed, the copy is complete


def chunked_snapshot(state: KvState) -> Iterator[bytes]:
    """Start copying ``state`` on the running loop; the returned lines are for another thread."""
    chunks: queue.SimpleQueue[Item] = queue.SimpleQueue()
    _Copier(state, chunks).start()
    return _lines(chunks)


class _Copier:
    def __init__(self, state: KvState, out: queue.SimpleQueue[Item]) -> None:
        self._state = state
        self._out = out
        # Namespaces made after the checkpoint are all in the stream's tail.
        self._names = list(state.spaces)
        self._loop = asyncio.get_running_loop()
        self._keys: Iterator[str] | None = None
        self._shape = 0
        self._restarts = 0

    def start(self) -> None:
        self._loop.call_soon(self._step)

    def _step(self) -> None:
        try:
            more = self._copy_chunk()
        except BaseException as exc:
            # The thread must not take a partial copy for a whole one, nor wait forever.
            self._out.put(exc)
            raise
        if more:
            self._loop.call_soon(self._step)
        else:
            self._out.put(None)

    def _copy_chunk(self) -> bool:
        while self._names:
            ns = self._names[0]
            space = self._state.spaces.get(ns)
            if space is None:  # emptied and dropped since: its removals are in the tail
                self._next_namespace()
                continue
            shape = self._state.shape.get(ns, 0)
            if self._keys is not None and shape != self._shape:
                self._restarts += 1
                self._keys = None
            if self._keys is None:
                if self._restarts > RESTARTS:
                    self._out.put((ns, space, list(space)))
                    self._next_namespace()
                    return True
                self._keys, self._shape = iter(space), shape
            chunk = list(itertools.islice(self._keys, CHUNK))
            if chunk:
                self._out.put((ns, space, chunk))
                return True
            self._next_namespace()
        return False

    def _next_namespace(self) -> None:
        self._names.pop(0)
        self._keys = None
        self._restarts = 0


def _lines(chunks: queue.SimpleQueue[Item]) -> Iterator[bytes]:
    dumps = orjson.dumps
    while True:
        try:
            item = chunks.get(timeout=_WAIT_S)
        except queue.Empty:
            raise RuntimeError("the KV snapshot copy stopped (its event loop is gone)") from None
        if item is None:
            return
        if isinstance(item, BaseException):
            raise RuntimeError("copying the KV snapshot failed") from item
        ns, space, keys = item
        head = b'{"ns":' + dumps(ns) + b',"k":'
        get = space.get
        for n, key in enumerate(keys):
            if not n % _YIELD_EVERY:
                # Let the loop have the GIL now if it waits for it, rather than after the
                # interpreter's 5 ms switch interval: its requests are what must stay quick.
                time.sleep(_PAUSE_S)
            entry = get(key)  # one lookup: atomic under the GIL, whatever the loop does
            if entry is None:
                continue  # removed since the checkpoint: its removal is in the stream's tail
            value, expiration = entry
            exp = b"null" if expiration is None else str(expiration).encode()
            yield head + dumps(key) + b',"v":' + value + b',"exp":' + exp + b"}"
