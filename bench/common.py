"""Shared pieces of the harness: child jobs, temp folders on a real disk, statistics, machine facts."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
RESULT_MARK = "BENCH-RESULT "

# File systems that are memory, not disk: an fsync there costs nothing and proves nothing.
_MEMORY_FS = {"tmpfs", "ramfs", "devtmpfs", "overlay-tmpfs"}

H = TypeVar("H")


class JobError(RuntimeError):
    """A child job failed; the message carries the tail of its stderr."""


# ------------------------------------------------------------------------------ the disk


def mount_of(path: Path) -> tuple[str, str, str]:
    """``(mount point, fs type, device)`` of the file system holding ``path``."""
    path = path.resolve()
    best = ("/", "?", "?")
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    best_len = -1
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount, fstype = parts[0], parts[1].replace("\\040", " "), parts[2]
        try:
            inside = path == Path(mount) or path.is_relative_to(mount)
        except ValueError:
            inside = False
        if inside and len(mount) > best_len:
            best, best_len = (mount, fstype, device), len(mount)
    return best


def pick_tmp_root(explicit: str | None = None) -> Path:
    """A folder for the scenarios' data folders, on a disk (never tmpfs), preferably the one
    holding the repository: ``--tmp``, then ``$BENCH_TMPDIR``, then the system temp folder if it
    is on the repository's device, then ``bench/.tmp``."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get("BENCH_TMPDIR"):
        candidates.append(Path(os.environ["BENCH_TMPDIR"]))
    repo_dev = os.stat(REPO).st_dev
    system_tmp = Path(tempfile.gettempdir())
    with contextlib.suppress(OSError):
        if os.stat(system_tmp).st_dev == repo_dev:
            candidates.append(system_tmp)
    candidates.append(REPO / "bench" / ".tmp")
    for candidate in candidates:
        candidate.mkdir(parents=True, exist_ok=True)
        if mount_of(candidate)[1] not in _MEMORY_FS:
            return candidate
    raise SystemExit("no temp folder on a disk found (all candidates are tmpfs); pass --tmp DIR")


@contextlib.contextmanager
def scratch(root: Path, prefix: str) -> Iterator[Path]:
    """A fresh folder under ``root``, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fsync_probe(root: Path, count: int = 200) -> float:
    """Median microseconds of one fsync after a 100-byte append, in ``root``: the unit price
    of durability on this disk right now (it moves with the machine's load)."""
    with scratch(root, "fsync") as folder:
        fd = os.open(folder / "probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            times = []
            for _ in range(count):
                os.write(fd, b"x" * 99 + b"\n")
                t0 = time.perf_counter()
                os.fsync(fd)
                times.append(time.perf_counter() - t0)
        finally:
            os.close(fd)
    return statistics.median(times) * 1e6


# --------------------------------------------------------------------------- the machine


def loadavg() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def banner() -> str:
    """The first line a standalone bench prints: the code, the cores and the load right now."""
    load = " ".join(f"{x:.2f}" for x in loadavg())
    return f"code {code_revision()}, {os.cpu_count()} cores, load (1, 5, 15 min) {load}"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_total_mib() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def code_revision() -> str:
    """The git commit of the code measured, and whether the engine's files had local changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "platform_shim", "host"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} + uncommitted changes in platform_shim/ or host/" if dirty else head


@dataclass
class Machine:
    cpu: str
    cores: int
    kernel: str
    python: str
    disk: str  # fs type and device of the scenarios' temp folder
    tmp_root: str
    memory_mib: int

    @classmethod
    def probe(cls, tmp_root: Path) -> Machine:
        mount, fstype, device = mount_of(tmp_root)
        return cls(
            cpu=cpu_model(),
            cores=os.cpu_count() or 0,
            kernel=f"{platform.system()} {platform.release()}",
            python=platform.python_version(),
            disk=f"{fstype} on {device} (mounted at {mount})",
            tmp_root=str(tmp_root),
            memory_mib=memory_total_mib(),
        )

    def short(self) -> str:
        fstype = self.disk.split(" ", 1)[0]
        return f"{self.cpu}, {self.cores} cores, {self.kernel}, Python {self.python}, {fstype}"


# ------------------------------------------------------------------------------- numbers


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), linear between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def time_runs(
    start: Callable[[], Awaitable[H]],
    result: Callable[[H], Awaitable[Any]],
    runs: int,
    steps: int,
) -> float:
    """Start ``runs`` runs of ``steps`` steps at once (``start()``; step i returns i), wait for
    every ``result(handle)``; wall seconds. Ours and the peer are timed by this same code."""
    expected = steps * (steps - 1) // 2
    t0 = time.perf_counter()
    handles = await asyncio.gather(*(start() for _ in range(runs)))
    results = await asyncio.gather(*(result(h) for h in handles))
    elapsed = time.perf_counter() - t0
    if any(r != expected for r in results):
        raise AssertionError(f"wrong results: {set(results)} (expected {expected})")
    return elapsed


def rss_bytes() -> int:
    """This process's resident set size (VmRSS), after a full collection."""
    gc.collect()
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    import resource  # not Linux: the peak is the best we have

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def jsonl_sizes(path: Path) -> dict[str, int]:
    """Bytes of each ``*.jsonl`` file of a data folder."""
    return {p.name: p.stat().st_size for p in sorted(path.glob("*.jsonl"))}


# ---------------------------------------------------------------------------- child jobs


@dataclass
class JobRun:
    result: dict[str, Any]
    seconds: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    extra: dict[str, Any] = field(default_factory=dict)


def run_job(
    name: str,
    args: dict[str, Any],
    *,
    timeout: float = 1800,
    env: dict[str, str] | None = None,
    log_file: Path | None = None,
    python: str | None = None,
) -> JobRun:
    """Run ``python -m bench.job NAME ARGS`` in a fresh process; its result is the JSON it prints.
    ``python`` is the interpreter (default: this one); the peer's may live in a venv of its own,
    which needs only the standard library of ours (``bench.job`` and ``bench.common``)."""
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    child_env.setdefault("PYTHONHASHSEED", "0")
    if env:
        child_env.update(env)
    load_before = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [python or sys.executable, "-m", "bench.job", name, json.dumps(args)],
        cwd=REPO,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if log_file is not None:
        with log_file.open("a") as out:
            out.write(f"=== {name} {json.dumps(args)} rc={proc.returncode} {seconds:.1f}s\n")
            out.write(proc.stderr[-20000:])
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK) :])
    if proc.returncode != 0 or result is None:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise JobError(f"job {name} failed (exit {proc.returncode}):\n{tail}")
    return JobRun(result, seconds, load_before, loadavg())


def emit(result: dict[str, Any]) -> None:
    """Print a child's result where ``run_job`` looks for it."""
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


@contextlib.contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """Profile the block with pyinstrument (not a project dependency: ``pip install
    pyinstrument``) and write the call tree as text to ``path``; no-op without a path. (For the
    interactive view, ``pyinstrument -r html`` on a job works too; those files are megabytes.)"""
    if not path:
        yield
        return
    from pyinstrument import Profiler  # type: ignore[import-not-found,unused-ignore]

    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        Path(path).write_text(profiler.output_text(unicode=True, color=False, show_all=False))
