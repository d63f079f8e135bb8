"""The import layering of the packages, read from their source with `ast` (nothing is imported).

Layers, lowest first: kachery_core <- kachery_transports <- kachery_daemon / kachery_client /
kachery_cli; the example plugin kachery_mirror sits on top and no product package imports it.
A lower layer never imports a higher one, and no module imports itself back round a cycle.

Rules the graph is built with (what counts as an import):
- Module-level AND function-level imports count: a lazy import is still a dependency.
- Relative imports are resolved against the importing module's package; `from pkg import name`
  is an import of the submodule `pkg.name` when that module exists, else of `pkg`.
- Imports under `if TYPE_CHECKING:` count for the layer rules (a lower layer that names a
  higher layer's types still depends on it by design) but not for cycles: they never run, so
  they cannot form an import cycle, and they are the standard way to type across one.
- A package `__init__` importing its own submodules is not a cycle edge: that is how a package
  re-exports its parts, and the submodule importing the package back is the normal case.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIRS: Dict[str, Path] = {
    "kachery_core": ROOT / "kachery_core",
    "kachery_transports": ROOT / "kachery_transports",
    "kachery_cli": ROOT / "kachery_cli",
    "kachery_client": ROOT / "kachery_client",
    "kachery_daemon": ROOT / "kachery_daemon",
    "kachery_mirror": ROOT / "examples" / "kachery-mirror" / "kachery_mirror",
}
PRODUCT = ("kachery_core", "kachery_transports", "kachery_cli", "kachery_client", "kachery_daemon")

# package -> the packages it must not import (directly, at any level, even for types only)
FORBIDDEN: Dict[str, Tuple[str, ...]] = {
    "kachery_core": (
        "kachery_transports",
        "kachery_cli",
        "kachery_client",
        "kachery_daemon",
        "kachery_mirror",
    ),
    "kachery_transports": ("kachery_daemon", "kachery_cli", "kachery_client", "kachery_mirror"),
    "kachery_daemon": ("kachery_transports", "kachery_cli", "kachery_client", "kachery_mirror"),
    "kachery_client": ("kachery_mirror",),
    "kachery_cli": ("kachery_mirror",),
}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the project module it imports
    path: Path
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if ROOT in self.path.parents else self.path
        return f"{path}:{self.line}"


def module_files(package_dirs: Dict[str, Path]) -> Dict[str, Tuple[Path, bool]]:
    """module name -> (file, is a package __init__)."""
    modules: Dict[str, Tuple[Path, bool]] = {}
    for package, directory in package_dirs.items():
        for path in sorted(directory.rglob("*.py")):
            parts = list(path.relative_to(directory).with_suffix("").parts)
            is_init = parts[-1] == "__init__"
            if is_init:
                parts.pop()
            modules[".".join([package, *parts])] = (path, is_init)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_nodes(tree: ast.AST) -> Iterable[Tuple[ast.stmt, bool]]:
    """Every Import/ImportFrom anywhere in the tree, with whether it is TYPE_CHECKING-only."""

    def visit(node: ast.AST, type_only: bool) -> Iterable[Tuple[ast.stmt, bool]]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, type_only
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from visit(child, True)
            for child in node.orelse:
                yield from visit(child, type_only)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child, type_only)

    yield from visit(tree, False)


def _resolve(
    module: str, is_init: bool, node: ast.stmt, known: Dict[str, Tuple[Path, bool]]
) -> List[str]:
    """The project modules one import statement imports (outside modules are dropped)."""
    names: List[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module.split(".") if is_init else module.split(".")[:-1]
            base_parts = package[: len(package) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            names.append(submodule if submodule in known else base)
    targets = []
    for name in names:
        while name and name not in known:  # `import a.b.c` of a non-module: its nearest module
            name = name.rpartition(".")[0]
        if name and name != module and name not in targets:
            targets.append(name)
    return targets


def import_graph(package_dirs: Dict[str, Path]) -> List[Import]:
    known = module_files(package_dirs)
    imports: List[Import] = []
    for module, (path, is_init) in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, type_only in _import_nodes(tree):
            for target in _resolve(module, is_init, node, known):
                imports.append(Import(module, target, path, node.lineno, type_only))
    return imports


def _package(module: str) -> str:
    return module.split(".")[0]


def layer_violations(imports: Iterable[Import]) -> List[str]:
    lines = []
    for imp in imports:
        if _package(imp.target) in FORBIDDEN.get(_package(imp.source), ()):
            kind = " (TYPE_CHECKING only)" if imp.type_only else ""
            lines.append(
                f"layer: {imp.source} imports {imp.target} at {imp.where}{kind}: "
                f"{_package(imp.source)} must not import {_package(imp.target)}"
            )
    return lines


def _cycle_edges(imports: Iterable[Import], known_inits: Set[str]) -> Dict[str, Dict[str, Import]]:
    edges: Dict[str, Dict[str, Import]] = {}
    for imp in imports:
        if imp.type_only:
            continue
        if imp.source in known_inits and imp.target.startswith(imp.source + "."):
            continue  # a package __init__ importing its own submodule
        edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    return edges


def _shortest_cycle_through(start: str, edges: Dict[str, Dict[str, Import]]) -> Optional[List[str]]:
    """BFS from `start` back to `start`: the shortest import cycle through it."""
    previous: Dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(edges.get(node, {})):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return list(reversed(path)) + [start]
                if target not in seen:
                    seen.add(target)
                    previous[target] = node
                    following.append(target)
        frontier = following
    return None


def cycle_violations(imports: List[Import], known_inits: Set[str]) -> List[str]:
    """One line per distinct import cycle: the shortest cycle through each module on one."""
    edges = _cycle_edges(imports, known_inits)
    found: Dict[Tuple[str, ...], List[str]] = {}
    for module in sorted(edges):
        cycle = _shortest_cycle_through(module, edges)
        if cycle is None:
            continue
        ring = cycle[:-1]
        first = ring.index(min(ring))  # one rotation per cycle, so each is reported once
        canonical = ring[first:] + ring[:first]
        found.setdefault(tuple(canonical), canonical + [canonical[0]])
    lines = []
    for cycle in found.values():
        steps = ", ".join(edges[a][b].where for a, b in zip(cycle, cycle[1:]))
        lines.append(f"import cycle: {' -> '.join(cycle)} ({steps})")
    return lines


def _inits(package_dirs: Dict[str, Path]) -> Set[str]:
    return {name for name, (_, is_init) in module_files(package_dirs).items() if is_init}


def _fail_with(lines: List[str]) -> None:
    if lines:
        pytest.fail(f"{len(lines)} violation(s):\n" + "\n".join(lines), pytrace=False)


def test_no_import_cycles() -> None:
    _fail_with(cycle_violations(import_graph(PACKAGE_DIRS), _inits(PACKAGE_DIRS)))


def test_lower_layers_do_not_import_higher_ones() -> None:
    _fail_with(layer_violations(import_graph(PACKAGE_DIRS)))


def test_the_graph_sees_the_real_imports() -> None:
    """Guards the reader itself: a graph that saw nothing would pass every rule above."""
    imports = import_graph(PACKAGE_DIRS)
    sources = {imp.source for imp in imports}
    assert set(PRODUCT) <= {_package(s) for s in sources}
    edges = {(imp.source, imp.target) for imp in imports}
    assert ("kachery_core.hookspecs", "kachery_core.config") in edges  # relative, TYPE_CHECKING
    assert ("kachery_cli.main", "kachery_client.client") in edges


# --- the reader on a made-up package, so each rule is known to fire ---


def _write(root: Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_reader_resolves_relative_function_level_and_type_only_imports(tmp_path: Path) -> None:
    _write(
        tmp_path / "kachery_core",
        {
            "__init__.py": "from . import a\n",
            "a.py": "from .sub import b\nfrom typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from .sub.b import Thing\n",
            "sub/__init__.py": "",
            "sub/b.py": "def f():\n    from .. import a\n    from ..sub import c\n"
            "    import kachery_client.x\n",
            "sub/c.py": "import os\n",
        },
    )
    _write(tmp_path / "kachery_client", {"__init__.py": "", "x.py": "import kachery_core\n"})
    dirs = {
        "kachery_core": tmp_path / "kachery_core",
        "kachery_client": tmp_path / "kachery_client",
    }
    imports = import_graph(dirs)
    edges = {(i.source, i.target, i.type_only) for i in imports}
    assert edges == {
        ("kachery_core", "kachery_core.a", False),
        ("kachery_core.a", "kachery_core.sub.b", False),
        ("kachery_core.a", "kachery_core.sub.b", True),
        ("kachery_core.sub.b", "kachery_core.a", False),
        ("kachery_core.sub.b", "kachery_core.sub.c", False),
        ("kachery_core.sub.b", "kachery_client.x", False),
        ("kachery_client.x", "kachery_core", False),
    }
    cycles = cycle_violations(imports, _inits(dirs))
    # sub.b -> client.x -> kachery_core is no cycle: the __init__'s `from . import a` is exempt
    assert len(cycles) == 1, cycles
    assert cycles[0].startswith(
        "import cycle: kachery_core.a -> kachery_core.sub.b -> kachery_core.a ("
    )
    layers = layer_violations(imports)
    assert len(layers) == 1 and "kachery_core.sub.b imports kachery_client.x" in layers[0]


def test_type_only_imports_make_no_cycle(tmp_path: Path) -> None:
    _write(
        tmp_path / "kachery_daemon",
        {
            "__init__.py": "",
            "server.py": "from .routes import add\n",
            "routes.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from .server import Node\nelse:\n    import json\n",
        },
    )
    dirs = {"kachery_daemon": tmp_path / "kachery_daemon"}
    assert cycle_violations(import_graph(dirs), _inits(dirs)) == []
