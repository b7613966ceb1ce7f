"""The layering rule of docs/architecture.md, checked: no module imports one of a layer above
it, no front end imports another, and no import circle anywhere.

Every edge counts: absolute and relative imports (`from ..render import x`), imports inside
functions and under TYPE_CHECKING, and the `"module:Class"` strings of backends/registry.py,
which `open_backend` loads with importlib (an edge from the module that loads them)."""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "falconchat"

# Bottom to top; a module may import its own layer and those listed before it.
LAYERS = [
    ["types", "environment"],
    ["errors"],
    ["text", "backends.registry", "structured"],
    ["config_values", "config_env", "config_models", "config"],
    ["prompt", "thinking"],
    [
        "conversation",
        "sessions",
        "records",
        "log_store",
        "log_query",
        "conversation_log",
        "sources",
        "web_source",
        "images",
    ],
    ["backends"],
    ["markdown_view", "live_region", "render", "reasoning_view"],
    ["exchange"],
    # the library's surface: __init__ re-exports api's names (lazily; under TYPE_CHECKING for mypy),
    # so a module that reads `from falconchat import __version__` sits above it
    ["api", "__init__"],
    ["repl", "batch", "serve", "bench"],  # the front ends: each may not import another
    ["cli", "__main__"],
]
FRONT_ENDS = {"repl", "batch", "serve", "bench"}

# Import circles known to be there, each written as the cycle the check reports. Empty: there are
# none, and a new one fails the check. (Issue 22 item 1 removed serve's two.)
KNOWN_CYCLES: set[str] = set()

# "falconchat.backends.local:LocalBackend": a module to load by name, and what to take from it.
ENTRY_POINT = re.compile(r"falconchat(\.\w+)+:\w+")


def layer_of(module: str) -> tuple[int, str]:
    """(rank, unit): the unit is the most specific name the table lists for this module."""
    for unit in sorted((u for layer in LAYERS for u in layer), key=len, reverse=True):
        if module == unit or module.startswith(unit + "."):
            rank = next(i for i, layer in enumerate(LAYERS) if unit in layer)
            return rank, unit
    raise AssertionError(f"falconchat.{module} is in no layer of tests/test_layers.py")


@dataclass
class Package:
    """The import graph of a package's source tree: module names are relative to it ("render",
    "backends.local"; the top package's own __init__ is "__init__")."""

    root: Path
    name: str = "falconchat"
    edges: dict[str, set[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.modules = self._modules()
        trees = {module: ast.parse(self._path(module).read_text(encoding="utf-8")) for module in self.modules}
        self.edges = {module: self._imports(module, tree) for module, tree in trees.items()}
        self._add_loaded_by_name(trees)

    def _modules(self) -> list[str]:
        names = []
        for path in sorted(self.root.rglob("*.py")):
            parts = list(path.relative_to(self.root).with_suffix("").parts)
            if parts[-1] == "__init__" and len(parts) > 1:
                parts.pop()
            names.append(".".join(parts))
        return names

    def _path(self, module: str) -> Path:
        path = self.root.joinpath(*module.split("."))
        return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")

    def _ours(self, dotted: str) -> str | None:
        """`falconchat.x.y` -> "x.y" (and `falconchat` -> "__init__"); None for another package's."""
        if dotted == self.name:
            return "__init__"
        if dotted.startswith(self.name + "."):
            return dotted.removeprefix(self.name + ".")
        return None

    def _package_of(self, module: str) -> list[str]:
        """The dotted parts of the package a relative import in `module` starts from."""
        parts = [self.name] + ([] if module == "__init__" else module.split("."))
        return parts if self._path(module).name == "__init__.py" else parts[:-1]

    def _target(self, dotted: str) -> str | None:
        """Ours, and a module that exists (or a package's name for what its __init__ holds)."""
        module = self._ours(dotted)
        if module is None:
            return None
        return module if module in self.modules or module == "__init__" else None

    def _imports(self, module: str, tree: ast.Module) -> set[str]:
        found: set[str] = set()
        for node in ast.walk(tree):  # every import, at any depth: functions, TYPE_CHECKING, try
            if isinstance(node, ast.Import):
                found.update(t for alias in node.names if (t := self._ours(alias.name)) is not None)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = self._package_of(module)[: len(self._package_of(module)) - (node.level - 1)]
                    dotted = ".".join(base + ([node.module] if node.module else []))
                else:
                    dotted = node.module or ""
                source = self._ours(dotted)
                if source is None:
                    continue
                for alias in node.names:  # `from falconchat import sessions`: the module, if it is one
                    submodule = f"{dotted}.{alias.name}"
                    found.add(self._target(submodule) or source)
        found.discard(module)
        return found

    def _add_loaded_by_name(self, trees: dict[str, ast.Module]) -> None:
        """A module that calls importlib.import_module loads the "module:Class" strings it holds
        and those of the modules it imports (the registry's table): each is an edge of its own."""
        named = {module: self._entry_points(tree) for module, tree in trees.items()}
        for module, tree in trees.items():
            if not _calls_import_module(tree):
                continue
            for source in {module} | self.edges[module]:
                self.edges[module] |= named.get(source, set())
            self.edges[module].discard(module)

    def _entry_points(self, tree: ast.Module) -> set[str]:
        found = set()
        for node in ast.walk(tree):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            if ENTRY_POINT.fullmatch(text) and (t := self._ours(text.split(":")[0])):
                found.add(t)
        return found

    def upward_imports(self) -> list[str]:
        """Each import that breaks the layer rule, said as a sentence."""
        found = []
        for module in self.modules:
            rank, unit = layer_of(module)
            for imported in sorted(self.edges[module]):
                their_rank, their_unit = layer_of(imported)
                if their_rank > rank:
                    found.append(
                        f"falconchat.{module} (layer {rank}) imports falconchat.{imported} (layer {their_rank})"
                    )
                elif unit in FRONT_ENDS and their_unit in FRONT_ENDS and unit != their_unit:
                    found.append(f"front end falconchat.{module} imports another front end, falconchat.{imported}")
        return found

    def cycles(self) -> list[str]:
        """The circles, each as a path ("a -> b -> a"): in each strongly connected group of
        modules, the shortest circle through its first module not on a circle said already."""
        found = []
        for group in _strongly_connected(self.edges):
            unsaid = set(group)
            while unsaid:
                path = _cycle_path(min(unsaid), group, self.edges)
                found.append(" -> ".join(path))
                unsaid -= set(path)
        return sorted(found)


def _calls_import_module(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                return True
    return False


def _reachable(start: str, edges: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for successor in edges.get(todo.pop(), set()) - seen:
            seen.add(successor)
            todo.append(successor)
    return seen


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that each reach all the others: each holds one circle or more."""
    reach = {module: _reachable(module, edges) for module in edges}
    groups = {frozenset(m for m in reach[module] if module in reach[m]) for module in edges if module in reach[module]}
    return [set(group) for group in sorted(groups, key=min)]


def _cycle_path(start: str, group: set[str], edges: dict[str, set[str]]) -> list[str]:
    """The shortest circle from `start` back to it, inside its strongly connected group."""
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(edges[node] & group):
                if successor == start:
                    return [*paths[node], start]
                if successor not in paths:
                    paths[successor] = [*paths[node], successor]
                    following.append(successor)
        frontier = following
    raise AssertionError(f"no circle in {sorted(group)}")


TREE = Package(PACKAGE)


@pytest.mark.parametrize("module", TREE.modules)
def test_imports_point_down(module: str) -> None:
    found = [
        line
        for line in TREE.upward_imports()
        if line.startswith((f"falconchat.{module} ", f"front end falconchat.{module} "))
    ]
    assert not found, "\n".join(found)


def test_no_import_circles() -> None:
    found = set(TREE.cycles())
    assert found <= KNOWN_CYCLES, "import circles:\n" + "\n".join(sorted(found - KNOWN_CYCLES))
    assert found >= KNOWN_CYCLES, f"gone, take them off KNOWN_CYCLES: {sorted(KNOWN_CYCLES - found)}"


def test_the_table_covers_every_module() -> None:
    assert len(TREE.modules) > 30
    for module in TREE.modules:
        layer_of(module)


def test_the_registry_is_seen() -> None:
    """open_backend loads every backend the registry names: those are its edges, seen here."""
    assert {"backends.local", "backends.tgi", "backends.openai", "backends.probe"} <= TREE.edges["backends"]


BAD_MODULES = {
    "__init__.py": "",
    "types.py": "",
    "render.py": "",
    "backends/__init__.py": """
        import importlib
        from falconchat.backends.registry import TABLE

        def open_backend(name):
            module, _, cls = TABLE[name].partition(":")
            return getattr(importlib.import_module(module), cls)
    """,
    # the registry names a front end: open_backend (layer 6) would load the REPL (layer 10)
    "backends/registry.py": """TABLE = {"repl": "falconchat.repl.loop:Repl", "fine": "falconchat.backends.tgi:Tgi"}""",
    "backends/tgi.py": """
        def draw():
            from falconchat.render import draw  # inside a function: still an edge
    """,
    "backends/local.py": """
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from ..render import Writer  # relative, under TYPE_CHECKING
    """,
    "backends/openai.py": "import falconchat.render as shown  # a plain import",
    "repl/__init__.py": "",
    "repl/loop.py": "from . import commands",
    "repl/commands.py": "from .loop import Repl  # a circle: loop -> commands -> loop",
    "batch/__init__.py": "from falconchat.repl import loop  # another front end",
    "errors.py": "from . import types",  # a relative import that points down: fine
}


@pytest.fixture
def bad_package(tmp_path: Path) -> Package:
    root = tmp_path / "falconchat"
    for name, text in BAD_MODULES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return Package(root)


def test_the_check_catches_each_kind_of_bad_import(bad_package: Package) -> None:
    """The check can fail: a tree with each kind of bad import, each one reported."""
    assert sorted(bad_package.upward_imports()) == [
        "falconchat.backends (layer 6) imports falconchat.repl.loop (layer 10)",  # the registry's string
        "falconchat.backends.local (layer 6) imports falconchat.render (layer 7)",  # relative, TYPE_CHECKING
        "falconchat.backends.openai (layer 6) imports falconchat.render (layer 7)",  # import falconchat.x
        "falconchat.backends.tgi (layer 6) imports falconchat.render (layer 7)",  # inside a function
        "front end falconchat.batch imports another front end, falconchat.repl.loop",
    ]
    assert bad_package.edges["errors"] == {"types"}
    assert bad_package.cycles() == ["repl.commands -> repl.loop -> repl.commands"]


def test_a_circle_through_several_modules_is_reported_as_its_path(tmp_path: Path) -> None:
    root = tmp_path / "falconchat"
    (root / "serve").mkdir(parents=True)
    (root / "serve" / "__init__.py").write_text("")
    (root / "serve" / "a.py").write_text("from falconchat.serve import b\n")
    (root / "serve" / "b.py").write_text("def f():\n    from falconchat.serve.c import x\n")
    (root / "serve" / "c.py").write_text("from .a import y\n")
    assert Package(root).cycles() == ["serve.a -> serve.b -> serve.c -> serve.a"]
