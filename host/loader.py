"""Importing the user's code: ``workflows/``, ``events/``, ``routes/`` (or the single-file forms).

Files are imported by path under a private package (``_platform_app.<kind>.<name>``), so a user
folder called ``workflows`` never clashes with an installed package of that name, no
``__init__.py`` is needed, and relative imports between files of one folder work. What a module
declares at module level is collected: every ``Workflow``, every ``EventHandler``, and a
``routes`` list of Starlette routes.

A module that fails to import is reported with its file and line. On a reload the module is
imported afresh under the same name; only if that succeeds (and its workflow ids do not clash
with another file's) does it replace what the last good version declared.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute

from platform_shim.errors import DefinitionError
from platform_shim.events import EventHandler
from platform_shim.workflows.definition import Workflow, WorkflowRegistry

__all__ = ["LoadError", "Loader", "ModuleDefs"]

log = logging.getLogger("host.loader")

KINDS = ("workflows", "events", "routes")
_ROOT = "_platform_app"


class LoadError(Exception):
    """A user module could not be loaded; the message names the file and line."""

    def __init__(self, file: Path, line: int | None, message: str) -> None:
        where = f"{file}:{line}" if line else str(file)
        super().__init__(f"{where}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass
class ModuleDefs:
    """What one user module declares."""

    path: Path
    kind: str
    workflows: list[tuple[str, Workflow]] = field(default_factory=list)  # (export name, workflow)
    handlers: list[tuple[str, EventHandler]] = field(default_factory=list)
    routes: list[BaseRoute] = field(default_factory=list)


def _error_line(exc: BaseException, path: Path) -> int | None:
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path.resolve():
            line = frame.lineno
    return line


class Loader:
    """Discovers, imports and re-imports the user modules of one project folder."""

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir.resolve()
        self.modules: dict[Path, ModuleDefs] = {}
        self.registry = WorkflowRegistry()
        self._root = f"{_ROOT}_{abs(hash(str(self.project_dir))) % 10**8}"

    # ------------------------------------------------------------------------ discovery

    def sources(self) -> Iterator[tuple[str, Path]]:
        """Every user file as ``(kind, path)``, folders before single files, in name order."""
        for kind in KINDS:
            folder = self.project_dir / kind
            if folder.is_dir():
                for path in sorted(folder.rglob("*.py")):
                    if "__pycache__" not in path.parts:
                        yield kind, path.resolve()
            single = self.project_dir / f"{kind}.py"
            if single.is_file():
                yield kind, single.resolve()

    def kind_of(self, path: Path) -> str | None:
        path = path.resolve()
        for kind in KINDS:
            if path == (self.project_dir / f"{kind}.py").resolve():
                return kind
            folder = (self.project_dir / kind).resolve()
            if path.suffix == ".py" and folder in path.parents:
                return kind
        return None

    # -------------------------------------------------------------------------- loading

    def load_all(self, *, strict: bool) -> list[LoadError]:
        """Import every source. ``strict``: raise the first error; else log and skip it."""
        errors: list[LoadError] = []
        for kind, path in self.sources():
            try:
                self.load(kind, path)
            except LoadError as exc:
                if strict:
                    raise
                log.error("%s", exc)
                errors.append(exc)
        return errors

    def load(self, kind: str, path: Path) -> ModuleDefs:
        """Import (or re-import) one file and install what it declares, or raise ``LoadError``."""
        module = self._import(kind, path)
        defs = self._collect(kind, path, module)
        try:
            self.registry.replace_source(str(path), [workflow for _, workflow in defs.workflows])
        except DefinitionError as exc:
            raise LoadError(path, None, str(exc)) from None
        self.modules[path] = defs
        return defs

    def unload(self, path: Path) -> None:
        """Forget a deleted file's declarations."""
        path = path.resolve()
        if self.modules.pop(path, None) is not None:
            self.registry.replace_source(str(path), [])
            sys.modules.pop(self._module_name(self.kind_of(path) or "workflows", path), None)

    def _package(self, kind: str) -> str:
        root = self._root
        if root not in sys.modules:
            package = types.ModuleType(root)
            package.__path__ = []
            sys.modules[root] = package
        name = f"{root}.{kind}"
        folder = self.project_dir / kind
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
        package = sys.modules[name]
        # Again each time: the folder may have been created since (relative imports need it).
        package.__path__ = [str(folder)] if folder.is_dir() else [str(self.project_dir)]
        return name

    def _module_name(self, kind: str, path: Path) -> str:
        folder = (self.project_dir / kind).resolve()
        if folder in path.parents:
            rel = path.relative_to(folder).with_suffix("")
            return ".".join([self._package(kind), *rel.parts])
        return f"{self._package(kind)}._single"

    def _import(self, kind: str, path: Path) -> types.ModuleType:
        name = self._module_name(kind, path)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise LoadError(path, None, "cannot be imported as a Python module")
        module = importlib.util.module_from_spec(spec)
        previous = sys.modules.get(name)
        sys.modules[name] = module
        try:
            # Compiled from the source every time: the bytecode cache is keyed on whole-second
            # mtime and size, so an edit within the same second could run the old code.
            code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
            exec(code, module.__dict__)
        except BaseException as exc:
            if previous is not None:
                sys.modules[name] = previous
            else:
                sys.modules.pop(name, None)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            message = f"{type(exc).__name__}: {exc}"
            raise LoadError(path, _error_line(exc, path), message) from exc
        return module

    def _collect(self, kind: str, path: Path, module: types.ModuleType) -> ModuleDefs:
        defs = ModuleDefs(path, kind)
        for export, value in vars(module).items():
            if isinstance(value, Workflow):
                defs.workflows.append((export, value))
            elif isinstance(value, EventHandler):
                defs.handlers.append((export, value))
        routes: Any = getattr(module, "routes", None)
        if routes is not None and kind == "routes":
            if not isinstance(routes, list) or not all(isinstance(r, BaseRoute) for r in routes):
                raise LoadError(path, None, "'routes' must be a list of starlette.routing routes")
            defs.routes = list(routes)
        # A module importing a workflow from a sibling re-exports it: count it once, where defined.
        defs.workflows = [(e, w) for e, w in defs.workflows if Path(w.file).resolve() == path]
        defs.handlers = [(e, h) for e, h in defs.handlers if Path(h.file).resolve() == path]
        return defs

    # -------------------------------------------------------------------------- results

    def workflows(self) -> list[tuple[ModuleDefs, str, Workflow]]:
        return [
            (defs, export, wf) for defs in self.modules.values() for export, wf in defs.workflows
        ]

    def handlers(self) -> list[EventHandler]:
        return [handler for defs in self.modules.values() for _, handler in defs.handlers]

    def handler_entries(self) -> list[tuple[ModuleDefs, str, EventHandler]]:
        return [(defs, export, h) for defs in self.modules.values() for export, h in defs.handlers]

    def routes(self) -> list[BaseRoute]:
        return [route for defs in self.modules.values() for route in defs.routes]
