"""Durable workflows: ``define_workflow`` and the records runs and steps are reported as."""

from platform_shim.workflows.definition import (
    EventTrigger,
    ScheduleTrigger,
    Workflow,
    WorkflowRegistry,
    define_workflow,
)
from platform_shim.workflows.records import RunStatus, StepKind, StepRecord, StepStatus, WorkflowRun

__all__ = [
    "EventTrigger",
    "RunStatus",
    "ScheduleTrigger",
    "StepKind",
    "StepRecord",
    "StepStatus",
    "Workflow",
    "WorkflowRegistry",
    "WorkflowRun",
    "define_workflow",
]
