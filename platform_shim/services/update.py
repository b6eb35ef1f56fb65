"""MongoDB-style update documents applied to JSON documents, without mutating them.

What this module guarantees:

* ``apply_update`` (and the function ``compile_update`` returns) never mutates its input. The
  result is a new top-level dict; containers along each updated path are shallow copies; every
  value an operator writes is a fresh deep copy of the operand. Untouched values are shared with
  the input, so treat both documents as read-only.
* The whole update is checked before any document is touched: an unsupported operator or
  modifier, a malformed operand, a ``$``-prefixed path segment, two paths where one equals or
  is a prefix of the other (Mongo's conflict rule, across all operators), mixing operators with
  plain fields, and an empty update are each a ``ValueError`` naming the operator and/or field.
* An update with no ``$`` keys at all is ``$set`` of each of its fields: fields it does not
  name are kept (this is not a replacement).
* ``_id`` and ``id`` are immutable: an update that would add, remove or change either, or that
  names a path below one (``_id.x``), raises ``ValueError("_id is immutable ...")``; setting one
  to the value it already has is allowed (so a plain update may repeat the document's id).
* ``modified`` is true exactly when the result is not JSON-equal to the input (``1`` and ``1.0``
  are equal, ``true`` and ``1`` are not). An operator that would not change a value leaves the
  original value (and its Python type) in place.

Path rules: a dotted path descends into objects; an all-digit segment indexes a list (out of
range is a ``ValueError`` for writing operators, never padding); a name segment on a list is a
``ValueError``. ``$set``, ``$inc``, ``$push`` and ``$addToSet`` create missing intermediate
objects; ``$unset`` and ``$pull`` on a path that does not exist do nothing. ``$unset`` of a list
element sets it to null, as in Mongo.

Size (over 400 lines, on purpose): one small function per operator around the one path writer
they share; split by operator, that writer would have to become public.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from itertools import pairwise
from typing import Any, Final

from platform_shim.jsonvalue import INT_MAX, INT_MIN
from platform_shim.services.compare import (
    ARRAY,
    BOOL,
    NAN,
    NULL,
    NUMBER,
    OBJECT,
    STRING,
    check_json,
    kind_of,
    values_equal,
)
from platform_shim.services.paths import MISSING, Steps, parse_path
from platform_shim.services.query import compile_filter, compile_value_condition

__all__ = ["Updater", "apply_update", "compile_update"]

Updater = Callable[[Mapping[str, Any]], tuple[dict[str, Any], bool]]
"""A compiled update: takes a document, returns the updated copy and whether it changed."""

_IMMUTABLE: Final = ("_id", "id")
_KIND_NAMES: Final = {
    NULL: "null",
    NAN: "a number",
    NUMBER: "a number",
    STRING: "a string",
    OBJECT: "an object",
    ARRAY: "a list",
    BOOL: "a boolean",
}


def _describe(value: Any) -> str:
    return _KIND_NAMES.get(kind_of(value), type(value).__name__)


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


class _Writer:
    """Copy-on-write access to one document: a container is copied the first time it is entered."""

    __slots__ = ("_owned", "root")

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.root: dict[str, Any] = dict(doc)
        # Keyed by id(); holding the objects keeps their ids from being reused meanwhile.
        self._owned: dict[int, Any] = {id(self.root): self.root}

    def _own(self, value: Any) -> Any:
        if id(value) in self._owned:
            return value
        copy = dict(value) if isinstance(value, dict) else list(value)
        self._owned[id(copy)] = copy
        return copy

    def parent(self, steps: Steps, path: str, create: bool) -> Any:
        """Return the (owned) container of the path's last step, or ``None`` if it is absent.

        With ``create``, absent objects along the way are made and a dead end is a ValueError.
        """
        node: Any = self.root
        for depth, (name, index) in enumerate(steps[:-1]):
            if isinstance(node, dict):
                child = node.get(name, MISSING)
                if child is MISSING and create:
                    child = {}
                    self._owned[id(child)] = child
            elif index is None or index >= len(node):
                if not create:
                    return None
                raise ValueError(_bad_index(path, steps[: depth + 1], index, node))
            else:
                child = node[index]
            if isinstance(child, dict | list):
                child = self._own(child)
                if isinstance(node, dict):
                    node[name] = child
                else:
                    node[index] = child
            elif not create:
                return None
            else:
                raise ValueError(
                    f"cannot create field {steps[depth + 1][0]!r} of path {path!r}: "
                    f"{_join(steps[: depth + 1])!r} holds {_describe(child)}"
                )
            node = child
        return node


def _join(steps: Steps) -> str:
    return ".".join(name for name, _ in steps)


def _bad_index(path: str, steps: Steps, index: int | None, node: list[Any]) -> str:
    """The message for the last of ``steps`` failing to index the list ``node``."""
    if index is None:
        parent = _join(steps[:-1])
        return f"path {path!r}: {steps[-1][0]!r} is not a list index, and {parent!r} is a list"
    return f"path {path!r}: index {index} is out of range for a list of {len(node)} elements"


def _get(container: Any, steps: Steps) -> Any:
    name, index = steps[-1]
    if isinstance(container, dict):
        return container.get(name, MISSING)
    if index is not None and index < len(container):
        return container[index]
    return MISSING


def _put(container: Any, steps: Steps, path: str, value: Any) -> None:
    name, index = steps[-1]
    if isinstance(container, dict):
        container[name] = value
    elif index is None or index >= len(container):
        raise ValueError(_bad_index(path, steps, index, container))
    else:
        container[index] = value


# Each action applies one (operator, path) pair to a _Writer and says whether it changed anything.
_Action = Callable[[_Writer], bool]


def _set_action(path: str, steps: Steps, value: Any) -> _Action:
    def run(writer: _Writer) -> bool:
        parent = writer.parent(steps, path, create=True)
        old = _get(parent, steps)
        if old is not MISSING and values_equal(old, value):
            return False
        _put(parent, steps, path, _copy_json(value))
        return True

    return run


def _unset_action(path: str, steps: Steps) -> _Action:
    name, index = steps[-1]

    def run(writer: _Writer) -> bool:
        parent = writer.parent(steps, path, create=False)
        if isinstance(parent, dict):
            if name not in parent:
                return False
            del parent[name]
            return True
        if isinstance(parent, list) and index is not None and index < len(parent):
            # Removing would shift later elements; Mongo leaves a null hole instead.
            if parent[index] is None:
                return False
            parent[index] = None
            return True
        return False

    return run


def _inc_action(path: str, steps: Steps, amount: Any) -> _Action:
    if kind_of(amount) != NUMBER or not _representable(amount):
        raise ValueError(
            f"$inc: amount for field {path!r} must be a finite number"
            f" (integers within 64 bits), got {amount!r}"
        )

    def run(writer: _Writer) -> bool:
        parent = writer.parent(steps, path, create=True)
        old = _get(parent, steps)
        if old is MISSING:
            new = amount
        elif kind_of(old) in (NUMBER, NAN):
            new = old + amount
        else:
            raise ValueError(f"$inc: field {path!r} holds {_describe(old)}, not a number")
        if not _representable(new) and _representable(old if old is not MISSING else 0):
            # Stored, an infinity would read back as null and a 65-bit integer not at all.
            raise ValueError(
                f"$inc: field {path!r} would overflow: {old!r} + {amount!r} is past the"
                " numbers a document can hold (finite, integers within 64 bits)"
            )
        if old is not MISSING and values_equal(old, new):
            return False
        _put(parent, steps, path, new)
        return True

    return run


def _representable(number: Any) -> bool:
    """Whether a number survives storage as itself: finite, and an integer within 64 bits."""
    if isinstance(number, float):
        return math.isfinite(number)
    return bool(INT_MIN <= number <= INT_MAX)


def _each(op: str, path: str, operand: Any) -> list[Any]:
    """The values a ``$push``/``$addToSet`` operand adds: ``$each``'s list, or the operand."""
    if isinstance(operand, Mapping) and any(str(key).startswith("$") for key in operand):
        for key in operand:
            if key != "$each":
                raise ValueError(f"{op}: modifier {key!r} is not supported (field {path!r})")
        items = operand["$each"]
        if not isinstance(items, list):
            raise ValueError(f"{op}: '$each' for field {path!r} needs a list")
        return items
    return [operand]


def _append_action(op: str, path: str, steps: Steps, operand: Any) -> _Action:
    items = _each(op, path, operand)
    unique = op == "$addToSet"

    def run(writer: _Writer) -> bool:
        parent = writer.parent(steps, path, create=True)
        current = _get(parent, steps)
        if current is MISSING:
            old: list[Any] = []
        elif isinstance(current, list):
            old = current
        else:
            raise ValueError(f"{op}: field {path!r} holds {_describe(current)}, not a list")
        new = list(old)
        for item in items:
            if not unique or not any(values_equal(present, item) for present in new):
                new.append(_copy_json(item))
        if current is not MISSING and len(new) == len(old):
            return False
        # A missing field becomes a list even when nothing is added, as in Mongo.
        _put(parent, steps, path, new)
        return True

    return run


def _pull_matcher(path: str, operand: Any) -> Callable[[Any], bool]:
    if isinstance(operand, Mapping):
        dollar = [str(key).startswith("$") for key in operand]
        if operand and all(dollar):
            return compile_value_condition(operand, path)
        if any(dollar):
            raise ValueError(f"$pull: condition for field {path!r} mixes operators and fields")
        element_filter = compile_filter(operand)

        def matches_filter(item: Any) -> bool:
            return isinstance(item, dict) and element_filter(item)

        return matches_filter

    def equals(item: Any) -> bool:
        return values_equal(item, operand)

    return equals


def _pull_action(path: str, steps: Steps, operand: Any) -> _Action:
    matches = _pull_matcher(path, operand)

    def run(writer: _Writer) -> bool:
        parent = writer.parent(steps, path, create=False)
        old = MISSING if parent is None else _get(parent, steps)
        if old is MISSING:
            return False
        if not isinstance(old, list):
            raise ValueError(f"$pull: field {path!r} holds {_describe(old)}, not a list")
        kept = [item for item in old if not matches(item)]
        if len(kept) == len(old):
            return False
        _put(parent, steps, path, kept)
        return True

    return run


def _make_action(op: str, path: str, steps: Steps, operand: Any) -> _Action:
    if op == "$set":
        return _set_action(path, steps, operand)
    if op == "$unset":
        return _unset_action(path, steps)
    if op == "$inc":
        return _inc_action(path, steps, operand)
    if op in ("$push", "$addToSet"):
        return _append_action(op, path, steps, operand)
    if op == "$pull":
        return _pull_action(path, steps, operand)
    raise ValueError(f"unsupported update operator {op!r}")


_OPERATORS: Final = frozenset({"$set", "$unset", "$inc", "$push", "$pull", "$addToSet"})


def _parse_update_path(op: str, path: Any) -> Steps:
    try:
        steps = parse_path(path)
    except ValueError as exc:
        raise ValueError(f"{op}: {exc}") from None
    for name, _ in steps:
        if name.startswith("$"):
            raise ValueError(
                f"{op}: path {path!r}: positional and $-prefixed parts are not supported"
            )
    return steps


def _check_conflicts(paths: list[tuple[tuple[str, ...], str, str]]) -> None:
    # In sorted order a path is directly followed by the paths it is a prefix of, if any.
    ordered = sorted(paths)
    for (first, first_path, first_op), (second, second_path, second_op) in pairwise(ordered):
        if second[: len(first)] == first:
            raise ValueError(
                f"update paths {first_path!r} ({first_op}) and {second_path!r} ({second_op}) "
                "conflict: one is the same as or a prefix of the other"
            )


def compile_update(update: Mapping[str, Any]) -> Updater:
    """Validate ``update`` once and return a function applying it to a document.

    See ``apply_update`` for the rules; every ``ValueError`` that does not depend on the
    document is raised here.
    """
    if not isinstance(update, Mapping):
        raise ValueError(f"an update must be an object, got {type(update).__name__}")
    if not update:
        raise ValueError("an update must not be empty")
    dollar = [isinstance(key, str) and key.startswith("$") for key in update]
    if not any(dollar):
        update = {"$set": update}
    elif not all(dollar):
        raise ValueError("an update cannot mix operators ($set, ...) with plain field names")
    actions: list[_Action] = []
    paths: list[tuple[tuple[str, ...], str, str]] = []
    for op, fields in update.items():
        if op not in _OPERATORS:
            raise ValueError(f"unsupported update operator {op!r}")
        if not isinstance(fields, Mapping):
            raise ValueError(f"operator {op!r} needs an object of field: value pairs")
        for path, operand in fields.items():
            steps = _parse_update_path(op, path)
            if len(steps) > 1 and steps[0][0] in _IMMUTABLE:
                raise ValueError(f"_id is immutable: {op} cannot update {path!r}")
            if op != "$unset":
                check_json(operand, f"{op}: value for field {path!r}")
            actions.append(_make_action(op, path, steps, operand))
            paths.append((tuple(name for name, _ in steps), path, op))
    _check_conflicts(paths)
    guarded = [key for key in _IMMUTABLE if any(names[0] == key for names, _, _ in paths)]

    def apply(doc: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        writer = _Writer(doc)
        modified = False
        for action in actions:
            if action(writer):
                modified = True
        for key in guarded:
            before = doc.get(key, MISSING)
            after = writer.root.get(key, MISSING)
            if before is MISSING and after is MISSING:
                continue
            if before is MISSING or after is MISSING or not values_equal(before, after):
                raise ValueError(f"_id is immutable: the update would change {key!r}")
        return writer.root, modified

    return apply


def apply_update(doc: Mapping[str, Any], update: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Apply a MongoDB-style update to ``doc``; return the new document and whether it changed.

    Operators: ``$set``, ``$unset``, ``$inc`` (numbers only; missing starts at 0), ``$push`` and
    ``$addToSet`` (optionally ``{"$each": [...]}``), ``$pull`` (a value, an operator condition
    on the element, or a filter that object elements must match). ``doc`` is never mutated;
    ``ValueError`` names the operator or field for anything invalid. Applying one update to many
    documents is faster through ``compile_update``.
    """
    return compile_update(update)(doc)
