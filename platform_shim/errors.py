"""Every error the platform raises, under one base class.

Each message names the thing at fault (workflow id, run id, step name, key, file and line) so
that a user reading a log line knows where to look without a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from platform_shim.workflows.records import WorkflowRun

__all__ = [
    "DataDirLocked",
    "DefinitionError",
    "DuplicateKey",
    "DuplicateStepName",
    "NonDeterminismError",
    "PlatformError",
    "RunIdConflict",
    "StaleWrite",
    "StepFailed",
    "StepOutputTooLarge",
    "StepTimeout",
    "StoreError",
    "UnknownRun",
    "UnknownWorkflow",
    "WorkflowCancelled",
    "WorkflowFailed",
]


class PlatformError(Exception):
    """Base class of every error raised by the platform."""


class StoreError(PlatformError, OSError):
    """A data file could not be written or read; nothing was half-written."""


class StaleWrite(StoreError):
    """A document write was planned from a read another write has since changed (PostgreSQL);
    the database service reads again and plans again, so a caller sees this only when that kept
    failing."""

    def __init__(self, collection: str, doc_id: str) -> None:
        super().__init__(
            None, f"document {doc_id!r} in collection {collection!r} changed while being written"
        )
        self.collection = collection
        self.doc_id = doc_id


class DataDirLocked(PlatformError):
    """Another worker (host or ``open_platform``) already runs on this data folder."""

    def __init__(self, data_dir: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        what = "store" if "://" in data_dir or data_dir.startswith("memory:") else "data folder"
        super().__init__(f"{what} {data_dir!r} is already in use by {holder}")
        self.data_dir = data_dir
        self.pid = pid


class DuplicateKey(PlatformError):
    """An insert or update would give two documents the same ``_id`` or unique-index value."""

    def __init__(self, collection: str, index: str, value: Any) -> None:
        super().__init__(
            f"duplicate key in collection {collection!r}: index {index!r} already has {value!r}"
        )
        self.collection = collection
        self.index = index
        self.value = value


class DefinitionError(PlatformError, ValueError):
    """A workflow or handler declaration is invalid (unknown key, bad cron, duplicate id, ...)."""


class UnknownWorkflow(PlatformError, LookupError):
    """``start`` named a workflow id that is not registered."""

    def __init__(self, workflow_id: str, known: list[str]) -> None:
        listing = ", ".join(sorted(known)) if known else "none"
        super().__init__(f"unknown workflow {workflow_id!r}; known workflows: {listing}")
        self.workflow_id = workflow_id
        self.known = sorted(known)


class RunIdConflict(PlatformError, ValueError):
    """A caller-chosen run id already names a run of another workflow."""

    def __init__(self, run_id: str, existing_workflow: str, workflow_id: str) -> None:
        super().__init__(
            f"run id {run_id!r} already belongs to a run of workflow {existing_workflow!r}; "
            f"it cannot also start workflow {workflow_id!r}"
        )
        self.run_id = run_id
        self.existing_workflow = existing_workflow
        self.workflow_id = workflow_id


class UnknownRun(PlatformError, LookupError):
    """A handle names a run that does not exist."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"unknown workflow run {run_id!r}")
        self.run_id = run_id


class _RunError(PlatformError):
    """An error that carries the run record it is about."""

    def __init__(self, message: str, run: WorkflowRun) -> None:
        super().__init__(message)
        self.run = run


class WorkflowFailed(_RunError):
    """The run ended ``failed``; ``.run`` is its record and ``.run.error`` says why."""


class WorkflowCancelled(_RunError):
    """The run ended ``cancelled``; ``.run`` is its record."""


class StepFailed(PlatformError):
    """A step's function raised. The original exception is chained as ``__cause__`` when the
    step ran in this process; on replay only its type name and message are known."""

    def __init__(self, step: str, error_type: str, message: str) -> None:
        super().__init__(f"step {step!r} failed: {error_type}: {message}")
        self.step = step
        self.error_type = error_type
        self.message = message


class StepOutputTooLarge(PlatformError):
    """A step returned more JSON than the configured limit."""

    def __init__(self, step: str, size: int, limit: int) -> None:
        super().__init__(f"step {step!r} output is {size} bytes, over the limit of {limit} bytes")
        self.step = step
        self.size = size
        self.limit = limit


class StepTimeout(PlatformError, TimeoutError):
    """An ``invoke`` outlived its timeout."""


class DuplicateStepName(PlatformError):
    """Two steps of one run used the same name; the run fails without retry."""

    def __init__(self, run_id: str, step: str) -> None:
        super().__init__(f"run {run_id!r}: step name {step!r} is used twice")
        self.run_id = run_id
        self.step = step


class NonDeterminismError(PlatformError):
    """On replay a recorded step came back as another kind; the run fails without retry."""

    def __init__(self, run_id: str, step: str, recorded: str, now: str) -> None:
        super().__init__(
            f"run {run_id!r}: step {step!r} was recorded as {recorded!r} but replay called it "
            f"as {now!r}; the workflow code changed in a way that breaks replay"
        )
        self.run_id = run_id
        self.step = step
        self.recorded = recorded
        self.now = now
