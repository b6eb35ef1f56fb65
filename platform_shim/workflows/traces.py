"""A failed attempt as a developer debugs it: the error plus a traceback of the user's frames.

The traceback is kept beside a run (``RunState.failures``, one entry per failed attempt, the
last ``FAILURES_KEPT``) and never in its public ``error`` (``{type, message, step}``): the HTTP
API, the event stream and ``WorkflowRun`` do not carry it; the dashboard, which sits behind the
host's token, shows it. Frames of the platform itself and of the standard library are left out:
they are the same for every failure and hide the line that raised.
"""

from __future__ import annotations

import sysconfig
import traceback
from pathlib import Path
from typing import Any

from platform_shim.errors import StepFailed

__all__ = ["FAILURES_KEPT", "TRACE_CHARS", "failure_entry", "user_trace"]

FAILURES_KEPT = 10
"""How many failed attempts a run keeps (the latest ones)."""

TRACE_CHARS = 8000
"""The longest traceback kept; a longer one keeps its end, where the error was raised."""

_PLATFORM = str(Path(__file__).resolve().parents[1])
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())


def _is_users(frame: traceback.FrameSummary) -> bool:
    filename = frame.filename
    return not (filename.startswith((_PLATFORM, _STDLIB)) or filename.startswith("<frozen "))


def _frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(exc.__traceback__) if _is_users(f)]


def user_trace(exc: BaseException) -> str:
    """``exc``'s traceback (and its causes') with only the user's frames, at most ``TRACE_CHARS``.

    A step's failure reads as one traceback: from the handler's ``await step.run(...)`` down to
    the line in the step's function that raised (the platform's ``StepFailed`` wrapper between
    the two is left out)."""
    head: list[traceback.FrameSummary] = []
    if isinstance(exc, StepFailed) and exc.__cause__ is not None:
        head = _frames(exc)
        exc = exc.__cause__
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    lines: list[str] = []
    for link in reversed(chain):
        frames = head + _frames(link) if link is exc else _frames(link)
        if frames:
            lines.append("Traceback (most recent call last):\n")
            lines.extend(traceback.format_list(frames))
        lines.extend(traceback.format_exception_only(link))
        if link is not exc:
            lines.append("\nThe above exception led to:\n\n")
    text = "".join(lines)
    return text if len(text) <= TRACE_CHARS else "…" + text[-TRACE_CHARS:]


def failure_entry(
    error: dict[str, Any], exc: BaseException, attempt: int, at: int
) -> dict[str, Any]:
    """One failed attempt as ``RunState.failures`` keeps it."""
    return {**error, "attempt": attempt, "at": at, "trace": user_trace(exc)}


def describe_error(exc: BaseException, step: str | None = None) -> dict[str, Any]:
    """An exception as the JSON error a run or step records (type, message, and the step it
    was raised in: ``step``, or the one the exception itself names)."""
    if isinstance(exc, StepFailed):
        error: dict[str, Any] = {"type": exc.error_type, "message": _text(exc.message)}
    else:
        error = {"type": type(exc).__name__, "message": _text(str(exc))}
    if step is None:
        named = getattr(exc, "step", None)
        step = named if isinstance(named, str) else None
    if step is not None:
        error["step"] = _text(step)
    return error


def _text(value: str) -> str:
    """``value`` as text the ledger can hold: a lone surrogate (a file name from os.listdir,
    say) would make the whole record unwritable, so it is escaped instead."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
