"""The import layering of the packages, read from their source with `ast` (nothing is imported).

Layers, lowest first: kachery_core <- kachery_transports <- kachery_client <- kachery_cli, and
kachery_core <- kachery_daemon; the example plugin kachery_mirror sits on top and no product
package imports it. A lower layer never imports a higher one, and no module imports itself
back round a cycle. Inside kachery_core each sub-package imports only the floors below it
(`CORE_FLOORS`); the daemon never imports the backend interface; only the daemon's runner
imports its HTTP and gRPC front ends. The CLI only parses and dispatches to `Client`: of
kachery_client it imports only the modules users and plugin authors are told to use
(`CLI_CLIENT_MODULES`: the API, the verified stream `Client.open` returns, the plugin
registry behind `backends` and plugin warnings), never a backend module, the directory
operations or the backend selection, and it never touches `client.transport`
(`test_the_cli_never_reaches_a_backend`). ARCHITECTURE.md draws the same picture.

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

ROOT = Path(__file__).resolve().parents[2]
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
    "kachery_client": ("kachery_cli", "kachery_daemon", "kachery_mirror"),
    "kachery_cli": ("kachery_daemon", "kachery_mirror", "kachery_transports"),
}

# The only kachery_client modules the CLI may import: what it dispatches to.
CLI_CLIENT_MODULES = (
    "kachery_client",
    "kachery_client.client",
    "kachery_client.verified_read",
    "kachery_client.backends.registry",
    "kachery_client.hit",
)

# Old plugin-facing import paths, kept for one release as aliases of the moved modules
# (tests/system/test_compat_paths.py checks each). They name their new home only, so they are
# left out of the layer rules: `kachery_core.testing` naming `kachery_client.testing` is
# the alias itself, not a dependency of the core.
COMPAT_SHIMS: Dict[str, str] = {
    "kachery_core.hookspecs": "kachery_core.backend.hookspecs",
    "kachery_core.transport": "kachery_core.backend.base",
    "kachery_core.config": "kachery_core.settings.config",
    "kachery_core.uri": "kachery_core.content.uri",
    "kachery_core.hashing": "kachery_core.content.hashing",
    "kachery_core.manifest": "kachery_core.content.manifest",
    "kachery_core.storage": "kachery_core.store.base",
    "kachery_core.layout": "kachery_core.store.layout",
    "kachery_core.local_storage": "kachery_core.store.local",
    "kachery_core.plugins": "kachery_client.backends.registry",
    "kachery_core.verified_read": "kachery_client.verified_read",
    "kachery_core.testing": "kachery_client.testing",
}

# The floors of kachery_core, and the floors each may import. "ground" is the package
# itself and its top-level modules (errors, atomic files, progress).
CORE_FLOORS: Dict[str, Tuple[str, ...]] = {
    "ground": (),
    "content": ("ground",),
    "settings": ("ground",),
    "protocol": ("ground", "content"),
    "store": ("ground", "content"),
    "grpc_api": ("ground", "content", "protocol"),
    "backend": ("ground", "content", "settings", "store"),
}

# Module prefixes a package must not import, finer than FORBIDDEN.
FORBIDDEN_MODULES: Dict[str, Tuple[str, ...]] = {
    # the node serves storage; the interface a client reaches a node through is not its own
    "kachery_daemon": ("kachery_core.backend",),
}

# Front ends of the node that only its runner starts: the protocol-neutral Node knows
# neither aiohttp nor gRPC.
RUNNER_ONLY = ("kachery_daemon.http_api", "kachery_daemon.grpc_service")
RUNNER = "kachery_daemon.runner"


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


def core_floor(module: str) -> Optional[str]:
    """The floor of a kachery_core module (None outside the core)."""
    parts = module.split(".")
    if parts[0] != "kachery_core":
        return None
    if len(parts) > 1 and parts[1] in CORE_FLOORS:
        return parts[1]
    return "ground"


def layer_violations(imports: Iterable[Import]) -> List[str]:
    lines = []
    for imp in imports:
        if imp.source in COMPAT_SHIMS:
            continue
        kind = " (TYPE_CHECKING only)" if imp.type_only else ""
        at = f"{imp.source} imports {imp.target} at {imp.where}{kind}"
        if imp.target in COMPAT_SHIMS:
            lines.append(f"old path: {at}: import {COMPAT_SHIMS[imp.target]} instead")
        if _package(imp.target) in FORBIDDEN.get(_package(imp.source), ()):
            lines.append(
                f"layer: {at}: {_package(imp.source)} must not import {_package(imp.target)}"
            )
        for prefix in FORBIDDEN_MODULES.get(_package(imp.source), ()):
            if imp.target == prefix or imp.target.startswith(prefix + "."):
                lines.append(f"layer: {at}: {_package(imp.source)} must not import {prefix}")
        source_floor, target_floor = core_floor(imp.source), core_floor(imp.target)
        if (
            source_floor
            and target_floor
            and source_floor != target_floor
            and target_floor not in CORE_FLOORS[source_floor]
        ):
            lines.append(
                f"floor: {at}: kachery_core.{source_floor} may import only "
                f"{', '.join(CORE_FLOORS[source_floor]) or 'nothing below it'}"
            )
        if (
            _package(imp.source) == "kachery_cli"
            and _package(imp.target) == "kachery_client"
            and imp.target not in CLI_CLIENT_MODULES
        ):
            lines.append(
                f"cli: {at}: the CLI dispatches to Client; of kachery_client it imports only "
                + ", ".join(CLI_CLIENT_MODULES)
            )
        if imp.target in RUNNER_ONLY and imp.source != RUNNER:
            lines.append(f"front end: {at}: only {RUNNER} starts {imp.target}")
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
    assert (
        "kachery_core.backend.hookspecs",
        "kachery_core.settings.config",
    ) in edges  # relative, TYPE_CHECKING
    assert ("kachery_cli.state", "kachery_client.client") in edges
    assert ("kachery_core.store.local", "kachery_core.content.hashing") in edges
    assert ("kachery_daemon.runner", "kachery_daemon.http_api") in edges
    assert set(COMPAT_SHIMS) <= {imp.source for imp in imports}  # their TYPE_CHECKING import


def test_every_core_module_is_on_a_known_floor() -> None:
    floors = {core_floor(m) for m in module_files(PACKAGE_DIRS) if m.startswith("kachery_core")}
    assert floors == set(CORE_FLOORS)
    subpackages = {
        p.name for p in (ROOT / "kachery_core").iterdir() if (p / "__init__.py").exists()
    }
    assert subpackages == set(CORE_FLOORS) - {"ground"}, "a new floor needs a row in CORE_FLOORS"


def test_each_rule_fires() -> None:
    """A made-up import per rule, so a rule that silently stopped matching fails here."""
    here = ROOT / "x.py"

    def check(source: str, target: str) -> List[str]:
        return layer_violations([Import(source, target, here, 1, False)])

    assert check("kachery_core.content.uri", "kachery_core.store.layout")[0].startswith("floor:")
    assert check("kachery_core.store.local", "kachery_core.content.uri") == []
    assert check("kachery_daemon.node", "kachery_core.backend.base")[0].startswith("layer:")
    assert check("kachery_daemon.node", "kachery_daemon.http_api")[0].startswith("front end:")
    assert check("kachery_transports.remote", "kachery_client.client")[0].startswith("layer:")
    assert check("kachery_client.client", "kachery_core.hookspecs")[0].startswith("old path:")
    assert check("kachery_core.testing", "kachery_client.testing") == []  # a listed alias
    assert check("kachery_cli.files", "kachery_client.directories.operations")[0].startswith("cli:")
    assert check("kachery_cli.listing", "kachery_transports.http")[0].startswith("layer:")
    assert check("kachery_cli.files", "kachery_client.client") == []
    assert backend_uses("client.transport.node_info()", here) != []
    assert backend_uses("client.node_info()", here) == []


def backend_uses(source: str, path: Path) -> List[str]:
    """Every `.transport` attribute in a CLI module's source: the CLI reaching past `Client`."""
    return [
        f"{path.name}:{node.lineno}: .transport (call a Client method instead)"
        for node in ast.walk(ast.parse(source, filename=str(path)))
        if isinstance(node, ast.Attribute) and node.attr == "transport"
    ]


def test_the_cli_never_reaches_a_backend() -> None:
    lines: List[str] = []
    for path in sorted(PACKAGE_DIRS["kachery_cli"].rglob("*.py")):
        lines.extend(backend_uses(path.read_text(encoding="utf-8"), path))
    _fail_with(lines)


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
