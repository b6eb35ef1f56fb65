"""The worker: one process per data folder runs the engine, the dispatcher and the scheduler.

``open_platform`` (and the host, which adds HTTP and code loading around it) takes the folder's
worker lock, loads the logs, compacts them if they grew past the threshold, recovers every run,
and starts handlers, triggers and the watcher for other processes' writes, in that order;
stopping goes the other way and leaves every acknowledged write fsync'd and the lock released.

Size (over 400 lines, on purpose): the Worker wires the store, the engine, the dispatcher, the
scheduler and maintenance, and owns start, stop, settle and compaction across all of them;
each of those parts lives in its own module.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from platform_shim.clock import Clock, SystemClock
from platform_shim.dispatch import Dispatcher, DispatchState, default_handler_backoff
from platform_shim.events import EventHandler
from platform_shim.locations import given_location
from platform_shim.maintenance import Maintenance
from platform_shim.platform import Platform, current_platform
from platform_shim.scheduler import Scheduler
from platform_shim.services.compaction import compact_stream
from platform_shim.services.realtime_state import HistoryConfig
from platform_shim.services.signals import RelayingEngineWorkflows
from platform_shim.services.stream import StreamEvent
from platform_shim.store import MEMORY_SCHEME, Location, MemorySpace, open_store
from platform_shim.store.jsonl import bulk_load
from platform_shim.store.protocol import Durability, Store, Watch
from platform_shim.workflows.definition import ScheduleTrigger, Workflow, WorkflowRegistry
from platform_shim.workflows.engine import (
    DEFAULT_MAX_RECOVERIES,
    DEFAULT_MAX_SUSPENDED,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_STEP_THREADS,
    Engine,
    default_backoff,
)

__all__ = ["Worker", "WorkerOptions", "open_platform"]

log = logging.getLogger("platform_shim.runtime")

DEFAULT_COMPACT_BYTES = 64 * 1024 * 1024
DEFAULT_RUN_RETENTION_MS = 7 * 24 * 3600 * 1000
DEFAULT_MAINTENANCE_MS = 30_000


class WorkerOptions:
    """Tunables of a worker (every one has a documented default)."""

    def __init__(
        self,
        *,
        durability: Durability = "fsync",
        retry_backoff: Callable[[int], int] = default_backoff,
        handler_backoff: Callable[[int], int] = default_handler_backoff,
        handler_attempts: int = 3,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        event_window: int = 1000,
        watch: bool = True,
        poll_interval: float = 0.5,
        compact_bytes: int = DEFAULT_COMPACT_BYTES,
        run_retention_ms: int = DEFAULT_RUN_RETENTION_MS,
        maintenance_interval_ms: int = DEFAULT_MAINTENANCE_MS,
        tune_gc: bool = True,
        freeze_gc: bool = False,
        max_suspended: int = DEFAULT_MAX_SUSPENDED,
        max_recoveries: int = DEFAULT_MAX_RECOVERIES,
        step_threads: int = DEFAULT_STEP_THREADS,
        realtime_history: HistoryConfig | None = None,
    ) -> None:
        self.durability: Durability = durability
        self.retry_backoff = retry_backoff
        self.handler_backoff = handler_backoff
        self.handler_attempts = handler_attempts
        self.output_limit = output_limit
        self.event_window = event_window
        self.watch = watch
        self.poll_interval = poll_interval
        self.compact_bytes = compact_bytes
        self.run_retention_ms = run_retention_ms
        # How often (on the worker's clock) to look at whether compaction is due; finished runs
        # past the retention are looked for at most hourly (maintenance.py).
        self.maintenance_interval_ms = maintenance_interval_ms
        # The worker keeps every live run in memory: with the default thresholds the cyclic
        # collector re-walks all of it again and again (filling 100,000 parked runs took 3x
        # longer). tune_gc raises the thresholds; freeze_gc (the host sets it: it owns its
        # process) also moves the state loaded at start out of the collector's sight for good.
        self.tune_gc = tune_gc
        self.freeze_gc = freeze_gc
        # Parked runs whose activation stays suspended in memory (past it, the least recently
        # parked is unwound and replays when it wakes); 0 unwinds every run as it parks.
        self.max_suspended = max_suspended
        # A run whose step body was running each time the process died this many times in a
        # row is failed instead of run again.
        self.max_recoveries = max_recoveries
        self.step_threads = step_threads  # worker threads for sync step bodies
        # Which realtime channels keep a replayable history (none by default; the host reads
        # it from the project's platform.toml).
        self.realtime_history = realtime_history or HistoryConfig()


class Worker:
    """Engine, dispatcher, scheduler and watcher on one store (a data folder, or memory)."""

    def __init__(
        self,
        data_dir: Location,
        *,
        registry: WorkflowRegistry | None = None,
        handlers: Iterable[EventHandler] = (),
        clock: Clock | None = None,
        options: WorkerOptions | None = None,
    ) -> None:
        if isinstance(data_dir, str) and data_dir.startswith(MEMORY_SCHEME):
            # Made here, not at open: stopping and opening this worker again finds its state.
            data_dir = MemorySpace(data_dir)
        # A URL stays a string (open_store names an unsupported one); a folder becomes absolute.
        url = isinstance(data_dir, str) and "://" in data_dir
        self.location: Location = (
            data_dir if url or isinstance(data_dir, MemorySpace) else Path(data_dir).absolute()
        )
        self.registry = registry if registry is not None else WorkflowRegistry()
        self.handlers = list(handlers)
        self.clock: Clock = clock or SystemClock()
        self.options = options or WorkerOptions()
        self.store: Store | None = None
        self._platform: Platform | None = None
        self._engine: Engine | None = None
        self._dispatcher: Dispatcher | None = None
        self._scheduler: Scheduler | None = None
        self._watcher: Watch | None = None
        self._maintenance: Maintenance | None = None
        self._compaction_lock = asyncio.Lock()

    @property
    def data_dir(self) -> Path:
        """The folder for the few files that are not records (the memory store's is private)."""
        if self.store is not None:
            return self.store.data_dir
        location = self.location
        return location.data_dir if isinstance(location, MemorySpace) else Path(location)

    @property
    def platform(self) -> Platform:
        assert self._platform is not None, "the worker is not started"
        return self._platform

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "the worker is not started"
        return self._engine

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None, "the worker is not started"
        return self._dispatcher

    @property
    def maintenance_passes(self) -> int:
        """How many background maintenance passes compacted so far."""
        return self._maintenance.passes if self._maintenance is not None else 0

    @property
    def scheduler(self) -> Scheduler:
        assert self._scheduler is not None, "the worker is not started"
        return self._scheduler

    async def start(self) -> None:
        """``open`` then ``begin``: for code that knows its workflows and handlers up front."""
        self.open()
        await self.begin()

    def open(self, store: Store | None = None) -> None:
        """Take the worker lock and load the logs; nothing runs yet. User code may be imported
        between ``open`` and ``begin`` (``get_platform()`` then returns this platform).

        ``store``: one this process opened on this worker's location and whose worker lock it
        already holds (a standby host that won the lock took it off the event loop); the worker
        owns it from here and closes it on failure as on ``stop``."""
        options = self.options
        if options.tune_gc:
            first, second, third = gc.get_threshold()
            gc.set_threshold(max(first, 50_000), max(second, 20), max(third, 100))
        if store is None:
            store = open_store(self.location, durability=options.durability)
            try:
                store.acquire_worker_lock()
            except BaseException:
                store.close()
                raise
        self.store = store
        try:
            self._open_logs(store)
        except BaseException:
            store.close()
            self.store = None
            raise

    def _open_logs(self, store: Store) -> None:
        options = self.options
        dispatch_state = DispatchState()
        dispatch_log = store.open_log("dispatch", dispatch_state)
        retain = min(dispatch_state.cursors.values(), default=None)
        platform = self._platform = Platform(
            store, self.clock, event_window=options.event_window, retain_from=retain
        )
        platform.worker = self
        engine = self._engine = Engine(
            platform,
            store,
            self.registry,
            clock=self.clock,
            output_limit=options.output_limit,
            retry_backoff=options.retry_backoff,
            relay_cursor=dispatch_state.relay,
            max_suspended=options.max_suspended,
            max_recoveries=options.max_recoveries,
            step_threads=options.step_threads,
        )
        platform.workflows = RelayingEngineWorkflows(engine, platform.realtime)
        dispatcher = self._dispatcher = Dispatcher(
            platform,
            engine,
            store,
            dispatch_state,
            dispatch_log,
            clock=self.clock,
            handler_attempts=options.handler_attempts,
            handler_backoff=options.handler_backoff,
        )
        engine.relay.on_relayed = dispatcher.save_relay
        engine.on_compact_request = self.request_compaction
        self._scheduler = Scheduler(engine, self.clock)
        context = contextvars.copy_context()
        context.run(current_platform.set, platform)
        platform.context = context

    async def begin(self) -> None:
        """Compact if due, recover every run, start handlers, triggers and the watcher."""
        options = self.options
        store, platform, engine = self.store, self.platform, self.engine
        dispatcher, scheduler = self.dispatcher, self.scheduler
        assert store is not None
        dispatcher.configure(self.handlers, self.registry)
        scheduler.configure(self.registry)
        if self._needs_compaction(False):
            await self.compact()
        self._advertise()
        with bulk_load():  # recovery builds a timer entry per parked run: no collector passes
            engine.start()
        if options.freeze_gc:
            gc.freeze()
        await platform.realtime.configure(options.realtime_history)
        await platform.auth.announce_pending()  # events a crash kept from the stream
        platform.kv.start_sweeper()
        dispatcher.start()
        scheduler.start()
        if options.watch:
            self._watcher = store.watch(self.refresh, poll_interval=options.poll_interval)
            self._watcher.start()
        self._maintenance = Maintenance(
            self.clock,
            self._needs_compaction,
            self.compact,
            interval_ms=options.maintenance_interval_ms,
            context=platform.context,
        )
        self._maintenance.start()
        attach = getattr(self.clock, "attach", None)
        if attach is not None:
            attach(self)  # a test clock that skips time when this worker is idle (FakeClock)
        log.info(
            "worker on %s: %d workflow(s), %d handler(s), %d run(s) in the ledger",
            store.location,
            len(self.registry),
            len(self.handlers),
            len(engine.state.runs),
        )

    async def stop(self) -> None:
        detach = getattr(self.clock, "detach", None)
        if detach is not None:
            await detach(self)
        if self._maintenance is not None:
            await self._maintenance.stop()
        if self._watcher is not None:
            await self._watcher.stop()
        if self._scheduler is not None:
            await self._scheduler.stop()
        if self._dispatcher is not None:
            await self._dispatcher.stop()
        # A store that lost the worker lock writes nothing more: nothing to wait for.
        writable = self.store is not None and not self.store.lock_lost
        if self._engine is not None:
            await self._engine.stop()
            # Status events still being written move the relay cursor (a dispatch record) when
            # they are: let that happen, and be written, before the files close.
            if writable:
                await self._engine.relay.drain()
            if self._dispatcher is not None and writable:
                await self._dispatcher.log.submit(_fence, durable=False)
                await self._dispatcher.log.barrier()
        if self._platform is not None:
            self._platform.kv.stop_sweeper()
            if writable:
                await self._platform.stream.log.barrier()
                await self._platform.realtime.log.barrier()
                await self._platform.auth.log.barrier()
        if self.store is not None:
            self.store.close()  # releasing the worker lock withdraws the advert
            self.store = None

    def reload(
        self,
        workflows: Iterable[Workflow] | None = None,
        handlers: Iterable[EventHandler] | None = None,
    ) -> None:
        """New code was loaded: reconfigure triggers and handlers, resume waiting runs."""
        if handlers is not None:
            self.handlers = list(handlers)
        if workflows is not None:
            pass  # the registry is shared with the loader and already holds them
        self.dispatcher.configure(self.handlers, self.registry)
        self.scheduler.configure(self.registry)
        self.engine.registry_changed()
        self._advertise()

    def refresh(self) -> None:
        """Apply what other processes appended to the logs."""
        if self._platform is None or self._engine is None:
            return
        self._platform.stream.log.refresh()
        self._platform.realtime.log.refresh()
        self._platform.auth.log.refresh()
        self._engine.log.refresh()

    # ------------------------------------------------------------------------ compaction

    def _needs_compaction(self, check_retention: bool) -> bool:
        """A log past the size threshold that is mostly dead lines (over half superseded or
        consumed), or (``check_retention``) a finished run past the retention, whatever the
        size. A big log that is all live, 100,000 parked runs say, is left alone: rewriting it
        would gain nothing and cost seconds at every start."""
        if check_retention and self._runs_past_retention():
            return True
        limit = self.options.compact_bytes
        stream, ledger = self.platform.stream, self.engine.state
        return (
            self.platform.stream.log.size() > limit
            and self.platform.stream.log.line_count() > 2 * len(stream.retained())
        ) or (
            self.engine.log.size() > limit
            and self.engine.log.line_count() > 2 * ledger.live_line_count()
        )

    def _runs_past_retention(self) -> bool:
        cutoff = self.clock.now_ms() - self.options.run_retention_ms
        oldest = self.engine.archive.oldest()
        if oldest is not None and oldest < cutoff:
            return True  # archived runs to prune (compaction prunes the archive too)
        return any(
            run.status.terminal and (run.completed_at or run.updated_at) <= cutoff
            for run in self.engine.state.runs.values()
        )

    def request_compaction(self) -> None:
        """Compact soon, in the background (another process asked for it)."""
        if self._maintenance is not None:
            self._maintenance.request()

    async def compact(self) -> dict[str, Any]:
        """Compact the stream (with snapshots), the ledger and the dispatch log now.

        The loop keeps serving meanwhile: each log copies its live state on the loop and writes
        it on a thread (``Log.rewrite``). One compaction at a time; a second caller waits for
        the first and then compacts again."""
        async with self._compaction_lock:
            return await self._compact()

    async def _compact(self) -> dict[str, Any]:
        platform, engine, dispatcher = self.platform, self.engine, self.dispatcher
        stream = platform.stream
        # Every queued message whose event may stay in events.jsonl: those retained now and
        # those sent while the stream compacts (their acks must outlive the dispatch compaction).
        in_stream = {event.k or "" for event in stream.retained() if event.t == "queue.sent"}

        def sent(event: StreamEvent) -> None:
            if event.t == "queue.sent":
                in_stream.add(event.k or "")

        stream.add_listener(sent)
        try:
            report = await compact_stream(platform.store, stream, storage=platform.storage_state)
            now = self.clock.now_ms()
            retention = self.options.run_retention_ms

            def keep(run: Any) -> bool:
                return (
                    not run.status.terminal
                    or (run.completed_at or run.updated_at) > now - retention
                )

            before_runs = engine.log.size()
            pruned: list[str] = []
            # Finished runs leave the ledger with this rewrite once the archive holds them:
            # every entry archived so far is made durable first, and runs archived from now on
            # stay in the ledger's copy (``hold``) until the rewrite is done. Retention prunes
            # the archive by the same cutoff.
            engine.archive.hold()

            def take() -> list[bytes]:
                # The ledger's objects change in place, so its lines are made here, on the loop;
                # writing and fsyncing them happens off it.
                pruned.extend(run_id for run_id, run in engine.state.runs.items() if not keep(run))
                return list(engine.state.live_records(keep))

            try:
                await engine.archive.sync()
                archived_pruned = await engine.archive.prune(now - retention)
                await engine.log.rewrite(take)
            finally:
                engine.archive.release()
            for run_id in pruned:
                run = engine.state.runs.get(run_id)
                if run is not None and not keep(run):
                    engine.state.forget(run_id)
            await dispatcher.compact(in_stream)
            await platform.realtime.compact()
            await platform.auth.compact()
        finally:
            stream.remove_listener(sent)
        log.info(
            "compacted runs.jsonl: %d -> %d bytes, %d finished run(s) past retention pruned",
            before_runs,
            engine.log.size(),
            len(pruned) + archived_pruned,
        )
        return {
            "events": {
                "before": report.bytes_before,
                "after": report.bytes_after,
                "kept": report.events_kept,
            },
            "runs": {
                "before": before_runs,
                "after": engine.log.size(),
                "pruned": len(pruned) + archived_pruned,
            },
            "blobsRemoved": report.blobs_removed,
        }

    def _advertise(self) -> None:
        assert self.store is not None
        advert = {
            "pid": os.getpid(),
            "workflows": self.registry.ids(),
            "handlers": [h.id for h in self.handlers],
            "schedules": [
                {"workflowId": w.id, "cron": w.trigger.cron}
                for w in self.registry
                if isinstance(w.trigger, ScheduleTrigger)
            ],
        }
        self.store.write_advert(advert)

    # --------------------------------------------------------------------------- testing

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until nothing is running or due: every activation parked or ended, every
        handler caught up, every write durable (with a fake clock: until only timers remain).

        A run counts as parked once every step call of its activation awaits an outcome, and
        quiet means the loop had no callback ready to run: a step that resumes a branch which
        then reaches its next step through nested ``gather``s (several loop turns, no I/O) is
        seen. A branch that awaits I/O or a thread of its own before it reaches its next step
        is not (await ``handle.result()`` for such runs)."""
        engine, dispatcher, scheduler = self.engine, self.dispatcher, self.scheduler
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet = 0
        while quiet < 3:
            if loop.time() > deadline:
                raise TimeoutError(f"the worker did not settle within {timeout}s")
            tasks = engine.busy_tasks()
            if self._maintenance is not None and self._maintenance.busy():
                quiet = 0
                await self._maintenance.wait()
                continue
            if tasks:
                # Polled: a busy activation may suspend on a parked step instead of ending.
                quiet = 0
                await asyncio.wait(tasks, timeout=min(0.01, max(0.0, deadline - loop.time())))
                continue
            if engine.relay.hurry() or engine.relay.save_pending():
                # Status changes waiting to share a write, or the relayed position waiting
                # for its interval: written now (settled, the worker writes nothing later).
                quiet = 0
                continue
            logs = (self.platform.stream.log, engine.log, dispatcher.log)
            if (
                not dispatcher.idle()
                or not scheduler.idle()
                or any(log.has_pending() for log in logs)
                or engine.archive.pending
            ):
                # Submissions still queued (a commit cycle may be waiting for another process's
                # append lock) can start more work once applied: wait for them too.
                quiet = 0
                engine.archive.hurry()
                await asyncio.sleep(0.001)
                continue
            await self.platform.stream.log.barrier()
            await engine.log.barrier()
            await _ready_queue_drained(loop)
            quiet += 1


async def _ready_queue_drained(loop: asyncio.AbstractEventLoop, turns: int = 100) -> None:
    """Yield until no other callback is ready to run on ``loop`` (at most ``turns`` times): the
    chain of wake-ups a resumed step starts (a task ends, its gather's callback, the waiting
    task, the next branch's first step) runs to its end. A loop without a ready queue we can
    see (not asyncio's own) gets one yield."""
    for _ in range(turns):
        await asyncio.sleep(0)
        ready = getattr(loop, "_ready", None)
        if ready is None or not ready:
            return


def _fence() -> tuple[None, None]:
    """A submission that writes nothing: it resolves once every earlier one is applied."""
    return None, None


@asynccontextmanager
async def open_platform(
    data_dir: Location | None = None,
    *,
    store: Location | None = None,
    workflows: Iterable[Workflow] = (),
    handlers: Iterable[EventHandler] = (),
    clock: Clock | None = None,
    durability: Durability = "fsync",
    **options: Any,
) -> AsyncIterator[Platform]:
    """Run the engine, dispatcher and scheduler on ``data_dir`` (or ``store``) in this process.

    ``data_dir`` is a folder, or ``"memory:"`` / a ``MemorySpace`` for state kept in memory
    (``platform_shim.store.memory``: the same semantics, nothing written to disk). ``store=`` is
    the alternative for any location, read as ``--store`` is: a URL (``postgresql://…``,
    ``memory:``) or a folder; a bad URL raises ``BadStoreUrl`` (a ``ValueError``) naming it
    without its password. Exactly one of the two is given.

    Raises ``DataDirLocked`` (naming the holder's pid) if another worker has the folder. Inside
    the block ``get_platform()`` returns this platform. ``options`` are ``WorkerOptions``.
    """
    worker = Worker(
        given_location(data_dir, store, "open_platform"),
        registry=WorkflowRegistry(workflows),
        handlers=handlers,
        clock=clock,
        options=WorkerOptions(durability=durability, **options),
    )
    await worker.start()
    token = current_platform.set(worker.platform)
    try:
        yield worker.platform
    finally:
        current_platform.reset(token)
        await worker.stop()
