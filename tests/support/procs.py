"""Running helper scripts in real subprocesses (crash tests kill them with SIGKILL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(extra)
    return out


def spawn(script: str, *args: str, **extra_env: str) -> subprocess.Popen[str]:
    """Start ``tests/support/<script>.py`` with line-buffered text pipes."""
    return subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "tests" / "support" / f"{script}.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra_env),
    )
