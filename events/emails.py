"""The ``emails`` queue's consumer: a local stand-in for an email provider.

The workflows send mail with ``ctx.queue.send("emails", {...})``. Nothing leaves this machine:
each message is filed in the KV namespace ``outbox`` under its message id, where you can read
it (``python -m host kv list outbox``). A batch whose handler raises is delivered again, up to
``maxAttempts`` times, then moved to ``data/deadletter.jsonl``.
"""

from __future__ import annotations

from typing import Any

from platform_shim.events import on_queue


@on_queue("emails", {"batch": 10, "maxAttempts": 3})
async def deliver_emails(messages: list[dict[str, Any]], ctx: Any) -> None:
    for message in messages:
        # Keyed by message id: a redelivered message overwrites its own copy, it is not sent twice.
        await ctx.kv.put(
            "outbox", message["id"], {**message["payload"], "enqueuedAt": message["enqueuedAt"]}
        )
