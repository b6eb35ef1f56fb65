"""Programs some tests need that pip cannot install (Debian's Chromium, Node).

On a developer's machine without them those tests skip and say why. CI installs them and sets
``PLATFORM_TESTS_REQUIRE`` (a comma-separated list such as ``chromium,node``): a program it
names must be there and work, so a skip can never hide a failure where the tests are meant to run.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE_VARIABLE = "PLATFORM_TESTS_REQUIRE"


def required(program: str) -> bool:
    """Whether this run must have ``program`` (it is named in ``PLATFORM_TESTS_REQUIRE``)."""
    names = os.environ.get(REQUIRE_VARIABLE, "").split(",")
    return program in {name.strip() for name in names}


def unavailable(program: str, reason: str) -> NoReturn:
    """Skip the test because ``program`` is missing or broken, or fail it where it is required."""
    if required(program):
        pytest.fail(f"{reason} ({REQUIRE_VARIABLE} requires {program})", pytrace=False)
    pytest.skip(reason)


def find_program(name: str, hint: str, command: str | None = None) -> str:
    """The path of ``command`` (by default ``name``; a name on PATH or an absolute path), or
    ``unavailable``: skipped with ``hint`` (how to install it), failed where required."""
    found = shutil.which(command or name)
    if found is None:
        unavailable(name, f"{command or name} is not installed on this machine: {hint}")
    return found
