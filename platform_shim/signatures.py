"""Checking the parameters of user functions when they are declared, not when they are called.

A workflow is called as ``(input, step, ctx)``, an event handler as ``(event, ctx)`` and a queue
consumer as ``(messages, ctx)``. A function that cannot take those positional arguments would
load, then fail every attempt with "takes 1 positional argument"; checking the signature at
declaration makes the load fail instead, naming the function's file and line. Defaults,
``*args`` and extra keyword-only parameters with defaults are accepted, as a call would be.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["signature_problem"]


def _describe(signature: inspect.Signature) -> str:
    return (
        "("
        + ", ".join(
            str(p.replace(annotation=inspect.Parameter.empty))
            for p in signature.parameters.values()
        )
        + ")"
    )


def signature_problem(fn: Callable[..., Any], expected: Sequence[str]) -> str | None:
    """``None`` when ``fn`` can be called with ``len(expected)`` positional arguments, else a
    sentence saying what it takes and what it must take (``expected`` names the arguments)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # a builtin or C function without a signature: let the call decide
    try:
        signature.bind(*expected)
    except TypeError:
        return f"takes {_describe(signature)} but is called with ({', '.join(expected)})"
    return None
