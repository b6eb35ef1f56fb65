"""Waiting for something to happen by polling it, never by sleeping a fixed time and hoping.

A test that sleeps then asserts fails on a loaded machine and wastes time on an idle one.
``wait_until`` asks again every few milliseconds and returns as soon as the answer is yes; when
the time is up it fails with a message naming what it waited for and the last answer it got.
The timeout is a guard against hanging, not a speed requirement: keep it generous.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

__all__ = ["wait_until", "wait_until_async"]


def wait_until(
    check: Callable[[], T | None],
    timeout: float = 15.0,
    what: str = "a condition",
    interval: float = 0.02,
) -> T:
    """Call ``check`` until it returns something truthy, and return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


@overload
async def wait_until_async(
    check: Callable[[], Awaitable[T | None]],
    timeout: float = ...,
    what: str = ...,
    interval: float = ...,
) -> T: ...


@overload
async def wait_until_async(
    check: Callable[[], T | None], timeout: float = ..., what: str = ..., interval: float = ...
) -> T: ...


async def wait_until_async(
    check: Callable[[], Any],
    timeout: float = 15.0,
    what: str = "a condition",
    interval: float = 0.02,
) -> Any:
    """``wait_until`` inside an event loop: ``check`` may be a plain or an async function, and
    the loop keeps running between looks (so the work being waited for can happen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)
