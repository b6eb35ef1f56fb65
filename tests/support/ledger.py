"""The workflow ledger's raw lines, wherever the store keeps them (tests read them as a file)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

__all__ = ["ledger_bytes", "ledger_generation"]


def ledger_bytes(location: str | Path) -> bytes:
    """The ledger's lines as a file holds them: ``runs.jsonl`` in a data folder, or the live
    generation of the ``runs`` log's rows in a PostgreSQL store."""
    location = str(location)
    if "://" not in location:
        return (Path(location) / "runs.jsonl").read_bytes()

    async def rows() -> bytes:
        conn = await asyncpg.connect(location)
        try:
            lines = await conn.fetch(
                "SELECT line FROM platform.log_lines l JOIN platform.logs g"
                " ON g.name = l.log AND g.generation = l.generation"
                " WHERE l.log = 'runs' ORDER BY l.seq"
            )
        finally:
            await conn.close()
        return b"".join(bytes(r["line"]) + b"\n" for r in lines)

    return asyncio.run(rows())


def ledger_generation(url: str) -> int:
    """How many times the ``runs`` log of a PostgreSQL store was rewritten, plus one."""

    async def read() -> int:
        conn = await asyncpg.connect(url)
        try:
            generation: int = await conn.fetchval(
                "SELECT generation FROM platform.logs WHERE name = 'runs'"
            )
            return generation
        finally:
            await conn.close()

    return asyncio.run(read())
