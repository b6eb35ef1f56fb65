"""``build``: discover and validate the project, write ``build/manifest.json``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from host.loader import Loader
from platform_shim.errors import DefinitionError

__all__ = ["MANIFEST_VERSION", "build_manifest", "write_manifest"]

MANIFEST_VERSION = 1


def build_manifest(project_dir: Path) -> dict[str, Any]:
    """Import every user module (raising ``LoadError`` naming file and line) and describe it."""
    loader = Loader(project_dir)
    loader.load_all(strict=True)
    ids: dict[str, str] = {}
    for handler in loader.handlers():
        if handler.id in ids:
            raise DefinitionError(
                f"two handlers share the id {handler.id!r}: {ids[handler.id]} and {handler.where}"
            )
        ids[handler.id] = handler.where

    def rel(path: Path | str) -> str:
        try:
            return str(Path(path).resolve().relative_to(loader.project_dir))
        except ValueError:
            return str(path)

    return {
        "version": MANIFEST_VERSION,
        "workflows": [
            {
                "id": wf.id,
                "export": export,
                "file": rel(defs.path),
                "options": wf.options(),
                "trigger": wf.trigger.to_dict() if wf.trigger else None,
            }
            for defs, export, wf in sorted(loader.workflows(), key=lambda e: e[2].id)
        ],
        "events": [
            {**handler.to_manifest(), "export": export, "file": rel(defs.path)}
            for defs, export, handler in sorted(loader.handler_entries(), key=lambda e: e[2].id)
        ],
        "routes": [str(getattr(route, "path", route)) for route in loader.routes()],
        "buildTime": int(time.time() * 1000),
    }


def write_manifest(project_dir: Path, out_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Build and write the manifest; returns its path and content."""
    manifest = build_manifest(project_dir)
    out = (out_dir or project_dir / "build") / "manifest.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    return out, manifest
