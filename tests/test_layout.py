"""The layout rules of the design card, checked on the source so they cannot drift:

- ``host`` imports ``platform_shim``, never the reverse;
- no import cycle at run time among the modules of ``platform_shim`` and ``host`` (imports
  under ``if TYPE_CHECKING:`` do not run and do not count);
- a module of ``platform_shim`` over 400 lines says at its top why it is not split.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("platform_shim", "host")
SIZE_LIMIT = 400


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def runtime_imports(path: Path) -> Iterator[tuple[str, int]]:
    """``(module, line)`` of every import that runs (at module level or inside a function)."""

    def visit(node: ast.AST) -> Iterator[tuple[str, int]]:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (item for child in node.orelse for item in visit(child))
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:
                yield f"{node.module}.{alias.name}", node.lineno
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(ast.parse(path.read_text(), str(path)))


def test_platform_shim_never_imports_host() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for module, path in modules().items()
        if module.startswith("platform_shim")
        for name, line in runtime_imports(path)
        if name == "host" or name.startswith("host.")
    ]
    assert not offending, offending


def test_no_import_cycle_at_run_time() -> None:
    known = modules()
    graph = {
        module: {name for name, _ in runtime_imports(path) if name in known and name != module}
        for module, path in known.items()
    }
    # Tarjan's strongly connected components: a component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph[module]:
            if target not in index:
                connect(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in graph:
        if module not in index:
            connect(module)
    assert not cycles, cycles


def test_a_long_module_says_why_it_is_not_split() -> None:
    unexplained = []
    for module, path in modules().items():
        if not module.startswith("platform_shim"):
            continue
        lines = path.read_text().count("\n")
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > SIZE_LIMIT and "over 400 lines" not in docstring.lower():
            unexplained.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not unexplained, unexplained
