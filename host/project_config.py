"""The project's ``platform.toml``: settings that belong to the app, not to one run of the host.

Only a ``[realtime]`` table today::

    [realtime]
    presence_grace = "5s"      # how long a closed WebSocket's presence lingers (default 5s)
    outbox = 256               # messages queued per WebSocket before a slow client is dropped

    [realtime.history]
    channels = ["chat:*"]      # globs of the channels whose messages are kept (default: none)
    max_messages = 1000        # kept per channel (default 1000)

A missing file means the defaults. A file that is not valid TOML, an unknown key, or a value of
the wrong type stops the host at start with an error naming the file and the key: a typo must
not silently turn history off.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from host.realtime_ws import DEFAULT_GRACE_MS, DEFAULT_OUTBOX
from platform_shim.durations import parse_duration_ms
from platform_shim.services.realtime_state import DEFAULT_MAX_MESSAGES, HistoryConfig

__all__ = ["CONFIG_FILE", "ProjectConfig", "ProjectConfigError", "load_project_config"]

CONFIG_FILE = "platform.toml"


class ProjectConfigError(Exception):
    """``platform.toml`` is unreadable or says something we do not understand."""


@dataclass(frozen=True)
class ProjectConfig:
    history: HistoryConfig = field(default_factory=HistoryConfig)
    presence_grace_ms: int = DEFAULT_GRACE_MS
    outbox: int = DEFAULT_OUTBOX


def _table(value: Any, where: str, keys: set[str], path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProjectConfigError(f"{path}: [{where}] must be a table")
    unknown = set(value) - keys
    if unknown:
        raise ProjectConfigError(
            f"{path}: unknown key(s) {sorted(unknown)} in [{where}]; known: {sorted(keys)}"
        )
    return value


def load_project_config(project_dir: Path) -> ProjectConfig:
    """Read ``project_dir/platform.toml`` (defaults when there is none)."""
    path = project_dir / CONFIG_FILE
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ProjectConfig()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProjectConfigError(f"{path}: {exc}") from None
    top = _table(raw, "top level", {"realtime"}, path)
    realtime = _table(
        top.get("realtime", {}), "realtime", {"presence_grace", "outbox", "history"}, path
    )
    history = _table(
        realtime.get("history", {}), "realtime.history", {"channels", "max_messages"}, path
    )
    try:
        grace = parse_duration_ms(
            realtime.get("presence_grace", DEFAULT_GRACE_MS), "realtime.presence_grace"
        )
        outbox = realtime.get("outbox", DEFAULT_OUTBOX)
        if isinstance(outbox, bool) or not isinstance(outbox, int) or outbox < 1:
            raise ValueError(f"realtime.outbox must be a positive integer, not {outbox!r}")
        channels = history.get("channels", [])
        if not isinstance(channels, list):
            raise ValueError(f"realtime.history.channels must be a list, not {channels!r}")
        kept = HistoryConfig(tuple(channels), history.get("max_messages", DEFAULT_MAX_MESSAGES))
    except ValueError as exc:
        raise ProjectConfigError(f"{path}: {exc}") from None
    return ProjectConfig(kept, grace, outbox)
