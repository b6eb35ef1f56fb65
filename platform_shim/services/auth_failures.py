"""The login failure counter, shared by every process on a store.

Per email (known or not) it keeps the times of the last ``MAX_FAILURES`` failed logins; an
email with that many inside ``FAILURE_WINDOW_MS`` is refused until the oldest leaves the window.
It is a fold of the auth log's ``fail``/``okay`` lines (``auth_state.py``), so a guesser who
spreads attempts over several hosts on one store is counted once, not once per host. Emails are
kept as a hash (``failure_key``): the log never holds an address nobody registered. At most
``MAX_TRACKED_EMAILS`` are tracked (the least recently failed are forgotten first), so a flood
of made-up emails cannot grow it without bound.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from collections.abc import Iterator

__all__ = [
    "FAILURE_WINDOW_MS",
    "MAX_FAILURES",
    "MAX_TRACKED_EMAILS",
    "Failures",
    "failure_key",
]

MAX_FAILURES = 5
FAILURE_WINDOW_MS = 15 * 60 * 1000
MAX_TRACKED_EMAILS = 100_000  # the failure counter's memory bound


def failure_key(email: str) -> str:
    """What the counter and the log know an email by."""
    return hashlib.sha256(email.encode()).hexdigest()[:32]


class Failures:
    """Failed logins per email key, bounded in memory (oldest emails forgotten first)."""

    def __init__(self) -> None:
        self._by_key: OrderedDict[str, deque[int]] = OrderedDict()

    def retry_after_ms(self, key: str, now: int) -> int:
        times = self._by_key.get(key)
        if not times:
            return 0
        while times and times[0] <= now - FAILURE_WINDOW_MS:
            times.popleft()
        if len(times) < MAX_FAILURES:
            return 0
        return times[0] + FAILURE_WINDOW_MS - now

    def failed(self, key: str, at: int) -> None:
        times = self._by_key.setdefault(key, deque(maxlen=MAX_FAILURES))
        times.append(at)
        self._by_key.move_to_end(key)
        # Least recently failed first: forget those whose last failure left the window (they
        # limit nothing any more), and the oldest past the bound.
        by_key = self._by_key
        while by_key:
            oldest = by_key[next(iter(by_key))]
            if len(by_key) <= MAX_TRACKED_EMAILS and oldest and oldest[-1] > at - FAILURE_WINDOW_MS:
                break
            by_key.popitem(last=False)

    def succeeded(self, key: str) -> bool:
        """Forget ``key``'s failures; whether it had any."""
        return self._by_key.pop(key, None) is not None

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def __len__(self) -> int:
        return len(self._by_key)

    def live(self, now: int) -> Iterator[tuple[str, int]]:
        """``(key, time)`` of every failure still inside the window, oldest email first."""
        for key, times in self._by_key.items():
            for at in times:
                if at > now - FAILURE_WINDOW_MS:
                    yield key, at

    def clear(self) -> None:
        self._by_key.clear()
