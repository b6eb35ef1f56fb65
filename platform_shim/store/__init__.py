"""The storage layer: the ``Store`` contract and its JSON-lines file implementation."""

from platform_shim.store.filestore import FileStore
from platform_shim.store.log import FileLog
from platform_shim.store.protocol import Consumer, Durability, Log, Prepare, Record, Store

__all__ = ["Consumer", "Durability", "FileLog", "FileStore", "Log", "Prepare", "Record", "Store"]
