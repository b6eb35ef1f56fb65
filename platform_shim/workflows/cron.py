"""Cron schedules for workflows: seconds first, always UTC, times in epoch milliseconds.

The platform's cron has six fields, ``sec min hour day month weekday``; a five-field expression
is the classic ``min hour day month weekday`` with the second fixed at 0. Ticks fall on whole
seconds.

Guarantee: a :class:`CronSchedule` only exists for an expression that is well formed, in range and
fires at least once (``CronSchedule.parse`` raises ``DefinitionError`` naming the expression
otherwise), and its methods are pure functions of their arguments: they never read the clock, so
the engine decides what "now" is and the same question always gets the same answer.

croniter does the calendar arithmetic, and only that. Its own six-field form puts the seconds
*last*, where ``"0 0 3 * * *"`` would mean "every second of 00:00 on the 3rd", so every call
passes ``second_at_beginning=True``. The fields themselves are read here, not by croniter, and
handed to it as plain values and rising ranges: croniter reads an equal range such as ``9-9`` as
the whole cycle (so ``0 0 9-9 * * *`` would fire every hour) and gets some wrapping ranges with a
step wrong, and it accepts extensions (``L``, ``W``, ``#``, ``?``, ``H``, ``@daily``, a year
field) that are not part of the platform's cron.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from croniter import CroniterBadDateError, CroniterError, croniter

from platform_shim.errors import DefinitionError

__all__ = ["CronSchedule"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    """The largest value accepted; for the weekday 7, another name for Sunday."""
    cycle_high: int
    """The largest value of the field's cycle: ``high`` except for the weekday (6)."""
    names: tuple[str, ...] = ()
    """Three-letter names of ``low``, ``low + 1``, ..."""


_FIELDS = (
    _Field("second", 0, 59, 59),
    _Field("minute", 0, 59, 59),
    _Field("hour", 0, 23, 23),
    _Field("day of month", 1, 31, 31),
    _Field(
        "month",
        1,
        12,
        12,
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ),
    _Field("weekday", 0, 7, 6, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)

# One list item of a field: "*", "5", "mon", "1-5", "fri-mon", any of those with "/step".
# croniter also knows L, W, #, ?, H and @aliases; those are its own extensions with semantics
# other crons do not share, so they are refused here rather than accepted by accident. Nine
# digits at most keeps int() cheap and far from its digit limit; no field needs more.
_ITEM_RE = re.compile(
    r"(?:(?P<star>\*)|(?P<first>[0-9]{1,9}|[a-z]{3})(?:-(?P<last>[0-9]{1,9}|[a-z]{3}))?)"
    r"(?:/(?P<step>[0-9]{1,9}))?",
    re.ASCII | re.IGNORECASE,
)

# The supported expression syntax, quoted in field-count errors.
_SYNTAX = "six fields 'sec min hour day month weekday' (UTC), or five without the seconds"

# The last millisecond a datetime can hold.
_LAST_MS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _ONE_MS

# What croniter raises past the ends of datetime's range (years 1 and 9999).
_OUT_OF_RANGE = (CroniterBadDateError, OverflowError, ValueError)


def _to_datetime(ms: int) -> datetime:
    """The whole UTC second holding ``ms``: ticks are whole seconds, so nothing is lost."""
    try:
        return _EPOCH + timedelta(seconds=ms // 1000)
    except OverflowError:
        raise ValueError(f"time {ms!r} ms is outside the supported range of dates") from None


def _to_ms(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_MS


def _value(expr: str, spec: _Field, text: str) -> int:
    """One value of a field: a number in range or a name the field knows."""
    if text.isdigit():
        number = int(text)
        if not spec.low <= number <= spec.high:
            raise DefinitionError(
                f"invalid cron expression {expr!r}: {spec.name} value {text} is out of range "
                f"{spec.low}-{spec.high}"
            )
        return number
    try:
        return spec.names.index(text.lower()) + spec.low
    except ValueError:
        raise DefinitionError(
            f"invalid cron expression {expr!r}: {text!r} is not a valid {spec.name} value"
        ) from None


def _expand_item(expr: str, spec: _Field, item: str) -> list[int]:
    """The values one list item stands for, each within ``spec.low..spec.cycle_high``."""
    match = _ITEM_RE.fullmatch(item)
    if match is None:
        raise DefinitionError(
            f"invalid cron expression {expr!r}: cannot read {item!r} in the {spec.name} "
            f"field; use numbers, names, '*', ranges 'a-b', lists 'a,b' and steps '/n'"
        )
    step = 1 if match["step"] is None else int(match["step"])
    if step == 0:
        raise DefinitionError(f"invalid cron expression {expr!r}: step 0 in the {spec.name} field")
    if match["star"]:
        first, last = spec.low, spec.cycle_high
    else:
        first = _value(expr, spec, match["first"])
        if match["last"] is not None:
            last = _value(expr, spec, match["last"])
        elif match["step"] is not None:
            last = spec.cycle_high  # "a/n" runs from a to the end of the cycle
        else:
            last = first
        if first > spec.cycle_high and last < first:
            first = spec.low  # weekday 7 starting "7-2" or "7/2" is Sunday, 0
    size = spec.cycle_high - spec.low + 1
    if first <= last:
        values = range(first, last + 1, step)
    else:
        # A range ending below its start wraps around the cycle: "fri-mon", "22-2", "nov-feb".
        span = (last - first) % size
        values = range(first, first + span + 1, step)
    # Back into the cycle: wrapped values, and weekday 7 as 0.
    return [spec.low + (value - spec.low) % size for value in values]


def _expand_field(expr: str, spec: _Field, text: str) -> str:
    """Field ``text`` rewritten for croniter as ``*`` or a list of plain values and ranges.

    croniter's own reading of a field has traps this avoids: it takes an equal range such as
    ``9-9`` or ``mon-mon`` as the whole cycle, and gets some wrapping ranges with a step wrong
    (``50-10/4`` gives second 3 where 2 is due, ``6-1/2`` drops Monday). Only single values
    and rising ranges of two or more values reach it.
    """
    values: set[int] = set()
    for item in text.split(","):
        values.update(_expand_item(expr, spec, item))
    if text.startswith("*") and len(values) == spec.cycle_high - spec.low + 1:
        # Kept as "*" rather than a full list: whether day of month and weekday combine with
        # "or" depends on either being "*", as in classic cron.
        return "*"
    ordered = sorted(values)
    runs: list[str] = []
    start = previous = ordered[0]
    for value in [*ordered[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        if value is not None:
            start = previous = value
    return ",".join(runs)


def _normalize(expr: object) -> str:
    """Validate ``expr`` and return it as six croniter fields, seconds first."""
    if not isinstance(expr, str):
        raise DefinitionError(f"invalid cron expression {expr!r}: expected a string; {_SYNTAX}")
    fields = expr.split()
    if len(fields) == 5:
        fields.insert(0, "0")
    elif len(fields) != 6:
        raise DefinitionError(
            f"invalid cron expression {expr!r}: expected 5 or 6 fields, got {len(fields)}; "
            f"{_SYNTAX}"
        )
    # Rejoined with plain spaces: croniter splits on ASCII whitespace only, str.split() on any.
    return " ".join(
        _expand_field(expr, spec, text) for spec, text in zip(_FIELDS, fields, strict=True)
    )


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron expression. Build it with :meth:`parse`; it is immutable and thread-safe.

    All times are integer epoch milliseconds in UTC. Ticks fall on whole seconds.
    """

    expr: str
    """The expression exactly as given to :meth:`parse`."""
    _template: croniter = field(repr=False, compare=False)
    """croniter parsed once, at the Unix epoch; each call works on its own shallow copy."""

    @classmethod
    def parse(cls, expr: str) -> CronSchedule:
        """Validate ``expr`` and return its schedule.

        ``expr`` has six fields ``sec min hour day month weekday``, or five fields
        ``min hour day month weekday`` meaning second 0; all in UTC. A field is ``*``, a value,
        a range ``a-b`` (a range whose end is below its start wraps around, so ``fri-mon`` is
        Friday to Monday), any of those with a step ``/n``, or a comma-separated list of them.
        Months and weekdays may be given by three-letter English names; weekday 0 and 7 are
        both Sunday. ``a/n`` means ``a`` to the end of the cycle in steps of ``n``. An equal
        range ``a-a`` is just ``a``. When both day of month and weekday are restricted, a day
        matching either one fires, as in classic cron; a field is unrestricted when it is ``*``
        or another form starting with ``*`` that covers every value, such as ``*/1``.

        Raises ``DefinitionError`` naming ``expr`` and the reason for a wrong number of fields,
        a value out of range, text that is not cron syntax, or a schedule that never fires
        (such as ``0 0 0 30 2 *``, 30 February).
        """
        normalized = _normalize(expr)
        try:
            # start_time is always given: without it croniter reads time.time().
            template = croniter(normalized, _EPOCH, second_at_beginning=True)
        except CroniterError as exc:  # not expected after _normalize; kept as a backstop
            raise DefinitionError(f"invalid cron expression {expr!r}: {exc}") from None
        try:
            # Without a year field every date that exists recurs within 28 years (29 February
            # within 8), so one search inside croniter's 50-year window settles "ever fires".
            copy.copy(template).get_next(datetime)
        except CroniterBadDateError:
            raise DefinitionError(
                f"invalid cron expression {expr!r}: it never fires (no such date)"
            ) from None
        return cls(expr, template)

    def _iterator(self, start: datetime) -> croniter:
        # croniter keeps its position as mutable state, so sharing one instance would make
        # these methods neither pure nor thread-safe; a new one per call parses the expression
        # again (two thirds of the cost). A shallow copy of the template is both: a search
        # only reassigns the scalar position attributes and copies the parsed fields before
        # changing them.
        iterator = copy.copy(self._template)
        iterator.set_current(start, force=True)
        return iterator

    def next_after(self, ms: int) -> int:
        """Return the first tick strictly after ``ms``.

        Works for ``ms`` inside a second too: ticks are whole seconds, so the answer is the
        first tick after the whole second that holds ``ms``. Raises ``ValueError`` naming
        ``ms`` if the answer would fall outside the years 1 to 9999.
        """
        start = _to_datetime(ms)
        # From a whole-second start croniter's get_next is strictly after it, and a tick
        # after ms's second is after ms itself.
        try:
            moment: datetime = self._iterator(start).get_next(datetime)
        except _OUT_OF_RANGE:
            raise ValueError(
                f"cron expression {self.expr!r} has no tick after {ms!r} ms within the "
                f"supported range of dates"
            ) from None
        return _to_ms(moment)

    def latest_at_or_before(self, ms: int) -> int | None:
        """Return the last tick at or before ``ms``, or ``None`` if there is none.

        ``None`` only happens at the very start of the calendar (year 1); for any real time a
        valid schedule has an earlier tick. Raises ``ValueError`` naming ``ms`` if it lies
        outside the years 1 to 9999.
        """
        # get_prev is strictly before its start, so start one second after ms's own second:
        # that second is then included, whatever fraction of it ms is.
        try:
            start = _to_datetime(ms) + timedelta(seconds=1)
        except OverflowError:  # ms in the very last second of year 9999
            raise ValueError(f"time {ms!r} ms is outside the supported range of dates") from None
        try:
            moment: datetime = self._iterator(start).get_prev(datetime)
        except _OUT_OF_RANGE:
            return None
        return _to_ms(moment)

    def ticks_between(self, after_ms: int, upto_ms: int, cap: int = 10_000) -> int:
        """Return how many ticks ``t`` satisfy ``after_ms < t <= upto_ms``, counting up to ``cap``.

        The result is ``min(true count, cap)``: a caller that sees ``cap`` knows there were at
        least that many and not how many more. The cost is one croniter step per tick counted
        plus one (tens of microseconds each), so "none" and "one" take one and two steps.
        ``cap`` must be non-negative; an empty or reversed range gives 0. An ``upto_ms`` past
        the end of year 9999 counts as that end, so a far-future sentinel is safe.
        """
        if cap < 0:
            raise ValueError(f"cap must be non-negative, got {cap!r}")
        if upto_ms <= after_ms or cap == 0:
            return 0
        # Ticks are whole seconds: t*1000 > after_ms and t*1000 <= upto_ms are the same as
        # t > after_ms // 1000 and t <= upto_ms // 1000.
        last = _to_datetime(min(upto_ms, _LAST_MS))
        iterator = self._iterator(_to_datetime(after_ms))
        count = 0
        while count < cap:
            try:
                moment: datetime = iterator.get_next(datetime)
            except _OUT_OF_RANGE:
                break  # the calendar ran out before upto_ms; no more ticks to count
            if moment > last:
                break
            count += 1
        return count
