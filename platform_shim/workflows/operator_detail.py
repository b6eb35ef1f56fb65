"""What a run's public record leaves out, for its operators: ``RunDetail``.

``WorkflowRun`` is what user code, the HTTP API and the event stream see. The dashboard, behind
the host's token, also shows which run a rerun came from and each failed attempt's traceback
(``traces.py``). Both are read here, as copies: nothing a reader does to a ``RunDetail`` reaches
the run it describes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from platform_shim.workflows.state import RunState

__all__ = ["RunDetail"]


@dataclass(frozen=True)
class RunDetail:
    """``rerun_of``: ``{"runId", "fromStep"}`` of the run this one reran, or None; ``failures``:
    each failed attempt, oldest first, ``{"attempt", "at", "type", "message", "step"?, "trace"}``."""

    rerun_of: dict[str, str] | None
    failures: list[dict[str, Any]]

    @staticmethod
    def of(run: RunState | None) -> RunDetail | None:
        """The detail of ``run`` (live or archived), or None for no run."""
        if run is None:
            return None
        rerun_of = dict(run.rerun_of) if run.rerun_of is not None else None
        return RunDetail(rerun_of, copy.deepcopy(run.failures or []))
