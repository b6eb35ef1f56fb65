"""Where state lives, as a person names it: one rule for flags, variables and arguments.

A location is a store URL (``postgresql://…`` or ``postgres://…``; ``memory:`` for state kept
in one process) or a data folder's path. Anything that starts like a URL scheme (two or more
letters, then ``:``) is read as a URL and must be one the platform knows, so a mistyped URL
is an error naming it, never a new folder called ``postgresql:`` (a folder whose name holds a
colon is written ``./name:x``).

Precedence, the same for the host, the CLI and ``get_platform()``: a location given explicitly
(``--store`` or ``--data``, at most one of them) beats the environment, because a command line
says what this one command is for while the environment is shared by every command of a shell;
then ``$PLATFORM_STORE``, then ``$PLATFORM_DATA_DIR``, then the caller's default folder.

A URL's password is never part of a message: ``describe`` hides it, and every error raised here
names the location with the password replaced by ``***``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from platform_shim.store import MEMORY_SCHEME, Location, MemorySpace
from platform_shim.store.postgres import BadStoreUrl, check_url, redact

__all__ = [
    "DATA_VARIABLE",
    "STORE_VARIABLE",
    "describe",
    "given_location",
    "is_folder",
    "parse_location",
    "resolve_location",
    "scrub",
]

STORE_VARIABLE = "PLATFORM_STORE"
DATA_VARIABLE = "PLATFORM_DATA_DIR"
POSTGRES_SCHEMES = ("postgresql", "postgres")

# RFC 3986's scheme, at least two characters long: "C:" alone is not read as one.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")
_KNOWN = "postgresql://USER@HOST:PORT/DATABASE, memory: or a data folder's path"


def parse_location(text: str) -> str | Path:
    """``text`` as a location: the URL itself (checked), or the folder's absolute path.

    Raises ``BadStoreUrl`` (a ``ValueError``) for an empty text, an unknown scheme or a
    PostgreSQL URL that cannot be used (no database, a bad port), naming it without password."""
    if not text:
        raise BadStoreUrl(f"the store location is empty: give {_KNOWN}")
    if text.startswith(MEMORY_SCHEME):
        return text
    scheme = _SCHEME.match(text)
    if scheme is None:
        return Path(text).absolute()
    if scheme.group(1).lower() in POSTGRES_SCHEMES:
        if not text[scheme.end() :].startswith("//"):
            # urlsplit takes "postgresql:/db" for a path; the store would see no URL at all.
            raise BadStoreUrl(
                f"bad store URL {_hide(text)!r}: write {scheme.group(1)}://USER@HOST:PORT/DATABASE"
            )
        check_url(text)
        return text
    raise BadStoreUrl(f"unsupported store {_hide(text)!r}: give {_KNOWN}")


def resolve_location(
    *,
    store: str | None = None,
    data: str | os.PathLike[str] | None = None,
    default: Path,
    environ: Mapping[str, str] | None = None,
) -> str | Path:
    """The location the settings name: ``store`` (a URL or a folder), else ``data`` (a folder),
    else ``$PLATFORM_STORE``, else ``$PLATFORM_DATA_DIR``, else ``default``.

    Raises ``ValueError`` if both ``store`` and ``data`` are given, and ``BadStoreUrl`` for a
    location that is no usable URL (from the variable: its name leads the message)."""
    if store is not None and data is not None:
        raise ValueError("give a store location or a data folder, not both")
    if store is not None:
        return parse_location(store)
    if data is not None:
        return Path(data).absolute()
    env = os.environ if environ is None else environ
    from_env = env.get(STORE_VARIABLE)
    if from_env:
        try:
            return parse_location(from_env)
        except BadStoreUrl as exc:
            raise BadStoreUrl(f"${STORE_VARIABLE}: {exc}") from None
    folder = env.get(DATA_VARIABLE)
    return Path(folder).absolute() if folder else default.absolute()


def given_location(data_dir: Location | None, store: Location | None, caller: str) -> Location:
    """The location a function was given as ``data_dir`` (as before ``store=`` existed) or as
    ``store=`` (a text is read by ``parse_location``, as ``--store`` is); ``TypeError`` unless
    exactly one of them was given."""
    if (data_dir is None) == (store is None):
        raise TypeError(f"{caller}() takes a data folder or store=, exactly one of them")
    if store is None:
        assert data_dir is not None
        return data_dir
    return parse_location(store) if isinstance(store, str) else store


def is_folder(location: Location) -> bool:
    """Whether ``location`` is a data folder (not a URL, not a memory space)."""
    if isinstance(location, MemorySpace):
        return False
    text = os.fspath(location)
    return not text.startswith(MEMORY_SCHEME) and _SCHEME.match(text) is None


def describe(location: Location) -> str:
    """``location`` for a message or a log line: a folder's path, a URL without its password."""
    if isinstance(location, MemorySpace):
        return location.name
    text = os.fspath(location)
    return text if is_folder(text) else _hide(text)


_USERINFO_PASSWORD = re.compile(r"(:)[^:@/]*(@)")


def _hide(url: str) -> str:
    """``redact``, and then any ``:secret@`` left where a malformed URL kept ``redact`` from
    finding the password (``postgres:/user:secret@host``)."""
    return _USERINFO_PASSWORD.sub(r"\1***\2", redact(url))


def scrub(text: str, location: Location) -> str:
    """``text`` with ``location``'s password (as written, and as the URL decodes it) hidden:
    for error messages that come from elsewhere and might quote the URL whole."""
    if is_folder(location) or isinstance(location, MemorySpace):
        return text
    from urllib.parse import unquote, urlsplit

    url = os.fspath(location)
    try:
        password = urlsplit(url).password
    except ValueError:
        return text.replace(url, "<unparsable URL>")
    if not password:
        return text
    text = text.replace(url, _hide(url))
    for secret in {password, unquote(password)} - {""}:
        text = text.replace(secret, "***")
    return text
