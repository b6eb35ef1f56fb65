"""Building blocks of ``/openapi.json`` shared by the ``host/openapi*.py`` modules.

Schemas are referenced by name (``ref``), error answers by status (``error``): the components
they point to are assembled once, in ``host/openapi.py``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ANY",
    "MS",
    "MS_OR_NULL",
    "OBJECT",
    "answers",
    "body",
    "error",
    "json_answer",
    "path_param",
    "query_param",
    "ref",
]

ANY: dict[str, Any] = {}  # any JSON value
OBJECT: dict[str, Any] = {"type": "object"}
MS = {"type": "integer", "description": "epoch milliseconds"}
MS_OR_NULL = {"type": ["integer", "null"], "description": "epoch milliseconds"}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(status: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{status}"}


def answers(ok: dict[str, Any], *errors: str) -> dict[str, Any]:
    """``200: ok`` plus the error answers any handler may give and ``errors``: 404 is also what a
    path no route matches gets (a path parameter holding a line break, say). The middleware's
    refusals (401, 403, 413, 415) are added by ``host.openapi`` to every operation they guard."""
    out: dict[str, Any] = {"200": ok}
    for code in ("400", "404", "503", *errors):
        out[code] = error(code)
    return out


def body(schema: dict[str, Any], *, required: bool = True, description: str = "") -> dict[str, Any]:
    return {
        "required": required,
        "description": description,
        "content": {"application/json": {"schema": schema}},
    }


def path_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string", "minLength": 1},
    }


def query_param(
    name: str, description: str, schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }
