"""The storage layer: the ``Store`` contract, its implementations, and ``open_store``.

Everything outside this package reaches storage through ``open_store`` and the contract in
``protocol.py``; only this package knows files, folders and which implementation is which.
"""

from __future__ import annotations

import os

from platform_shim.store.filestore import FileStore
from platform_shim.store.log import FileLog
from platform_shim.store.memory import MemorySpace, MemoryStore
from platform_shim.store.postgres.connect import redact
from platform_shim.store.protocol import Consumer, Durability, Log, Prepare, Record, Store

__all__ = [
    "MEMORY_SCHEME",
    "POSTGRES_SCHEMES",
    "Consumer",
    "Durability",
    "FileLog",
    "FileStore",
    "Location",
    "Log",
    "MemorySpace",
    "MemoryStore",
    "Prepare",
    "Record",
    "Store",
    "open_store",
]

Location = str | os.PathLike[str] | MemorySpace
"""Where state lives: a data folder's path, ``"memory:"`` (a new in-memory space), a
``MemorySpace`` (to open the same in-memory state again, as a second process would), or a
``postgresql://user:password@host:port/database`` URL."""

MEMORY_SCHEME = "memory:"


POSTGRES_SCHEMES = ("postgresql", "postgres")


def open_store(location: Location, *, durability: Durability = "fsync") -> Store:
    """The store at ``location``: a ``FileStore`` for a folder path, a ``MemoryStore`` for
    ``"memory:"`` or a ``MemorySpace``, a ``PostgresStore`` for a ``postgresql://`` URL (which
    needs the ``postgres`` extra). Any other ``scheme://`` is refused by name."""
    if isinstance(location, MemorySpace):
        return MemoryStore(location, durability=durability)
    if isinstance(location, str):
        if location.startswith(MEMORY_SCHEME):
            return MemoryStore(MemorySpace(location), durability=durability)
        scheme, sep, _ = location.partition("://")
        if sep and scheme in POSTGRES_SCHEMES:
            from platform_shim.store.postgres.store import PostgresStore

            return PostgresStore(location, durability=durability)
        if sep and scheme.isalpha():
            raise ValueError(
                f"unsupported store {redact(location)!r}: give a data folder's path,"
                f" {MEMORY_SCHEME!r} or a postgresql:// URL"
            )
    return FileStore(location, durability=durability)
