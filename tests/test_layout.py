"""The package layout: no import cycle and no import from a higher floor, counting every
import in the source (deferred imports inside functions included, ``TYPE_CHECKING`` blocks
excluded because they never run).

The graph is read from the source with :mod:`ast`, so it sees the imports a test run would
not exercise. ``from package import name`` is an edge to ``package.name`` when that is a
module and to ``package`` otherwise. The root ``attnunet`` package imports nothing when it
is imported (its names resolve on first use), so ``from attnunet import X`` is an edge to
the module that defines ``X`` (``attnunet._EXPORTS``), and ``import attnunet`` is none.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import attnunet

ROOT = Path(attnunet.__file__).parent

# Each top-level package's floor: a module may import its own floor and those below it.
FLOORS = {
    "layers": 0,
    "blocks": 1,
    "encoders": 1,
    "losses": 1,
    "metrics": 1,
    "inference": 1,
    "data": 1,
    "models": 2,
    "training": 3,
    "integrations": 3,
    "study": 4,
    "cli": 5,
    "__main__": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _target(source: str, name: str, modules: dict[str, Path]) -> str:
    if f"{source}.{name}" in modules:
        return f"{source}.{name}"
    if source == "attnunet":  # a lazily exported name: the module that defines it
        return attnunet._EXPORTS.get(name, source)
    return source


def import_graph() -> dict[str, set[str]]:
    """Module -> the attnunet modules it imports (any depth, any place in the file)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = _resolve(name, path.name == "__init__.py", node)
                targets = [_target(source, a.name, modules) for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t not in ("attnunet", name)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def _floor(module: str) -> int:
    top = module.split(".")[1]
    if top not in FLOORS:
        pytest.fail(f"{module} is in no floor: add its package to FLOORS in this test")
    return FLOORS[top]


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_from_a_higher_floor():
    upward = [
        f"{source} (floor {_floor(source)}) imports {target} (floor {_floor(target)})"
        for source, targets in import_graph().items()
        if source != "attnunet"
        for target in sorted(targets)
        if _floor(target) > _floor(source)
    ]
    assert not upward, "\n".join(upward)


def test_the_root_holds_only_the_package_entry_points():
    """The floors are packages: at the root only ``__init__``, ``__main__`` and the one-module
    floor ``inference``."""
    flat = sorted(p.name for p in ROOT.glob("*.py"))
    assert flat == ["__init__.py", "__main__.py", "inference.py"], flat


def test_no_private_name_is_imported_from_another_package():
    """A helper used across packages is public where it belongs."""
    crossing = []
    for name, path in _modules().items():
        top = name.split(".")[:2]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                crossing += [
                    f"{name} imports {a.name}"
                    for a in node.names
                    if a.name.startswith("attnunet.")
                    and a.name.split(".")[:2] != top
                    and any(p.startswith("_") and p != "__main__" for p in a.name.split("."))
                ]
                continue
            source = node.module or ""
            if node.level or not source.startswith("attnunet.") or source.split(".")[:2] == top:
                continue
            crossing += [
                f"{name} imports {source}.{a.name}"
                for a in node.names
                if a.name.startswith("_") or any(p.startswith("_") for p in source.split("."))
            ]
    assert not crossing, "\n".join(crossing)


# ------------------------------------------------------------- the checker can fail


def test_find_cycle_finds_a_deferred_cycle(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_a_name_imported_from_the_root_is_an_edge_to_its_module():
    modules = {"attnunet.models": Path("m"), "attnunet.layers": Path("l")}
    assert _target("attnunet", "create_model", modules) == "attnunet.models"
    assert _target("attnunet", "ChannelLayerNorm", modules) == "attnunet.layers"
    assert _target("attnunet", "__version__", modules) == "attnunet"


def test_imports_inside_functions_count_and_type_checking_ones_do_not():
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import attnunet.cli\n"
        "def f():\n    from attnunet.models import create_model\n"
    )
    assert [getattr(n, "module", None) for n in _imports(tree)] == ["typing", "attnunet.models"]
