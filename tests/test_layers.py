"""The layering rule of docs/architecture.md, checked: no module imports one of a layer above
it, and no front end imports another. Imports inside functions and under TYPE_CHECKING count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "falconchat"

# Bottom to top; a module may import its own layer and those listed before it.
LAYERS = [
    ["types", "environment", "__init__"],
    ["errors"],
    ["text", "backends.registry", "structured"],
    ["config_values", "config_env", "config"],
    ["prompt", "thinking"],
    ["conversation", "sessions", "records", "log_store", "log_query", "conversation_log"],
    ["backends"],
    ["markdown_view", "live_region", "render", "reasoning_view"],
    ["exchange"],
    ["repl", "batch", "serve", "bench"],  # the front ends: each may not import another
    ["cli", "__main__"],
]
FRONT_ENDS = {"repl", "batch", "serve", "bench"}


def layer_of(module: str) -> tuple[int, str]:
    """(rank, unit): the unit is the most specific name the table lists for this module."""
    for unit in sorted((u for layer in LAYERS for u in layer), key=len, reverse=True):
        if module == unit or module.startswith(unit + "."):
            rank = next(i for i, layer in enumerate(LAYERS) if unit in layer)
            return rank, unit
    raise AssertionError(f"falconchat.{module} is in no layer of tests/test_layers.py")


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts.pop()
        names.append(".".join(parts))
    return names


def imports_of(module: str) -> set[str]:
    path = PACKAGE.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("falconchat"):
            if node.module == "falconchat":  # from falconchat import sessions
                found.update(alias.name for alias in node.names if alias.name != "__version__")
            else:
                found.add(node.module.removeprefix("falconchat."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("falconchat.") for a in node.names if a.name.startswith("falconchat."))
    return found


@pytest.mark.parametrize("module", modules())
def test_imports_point_down(module: str) -> None:
    rank, unit = layer_of(module)
    for imported in imports_of(module):
        their_rank, their_unit = layer_of(imported)
        assert their_rank <= rank, (
            f"falconchat.{module} (layer {rank}) imports falconchat.{imported} (layer {their_rank})"
        )
        if unit in FRONT_ENDS and their_unit in FRONT_ENDS:
            assert unit == their_unit, f"front end falconchat.{module} imports another front end, falconchat.{imported}"


def test_the_table_covers_every_module() -> None:
    assert len(modules()) > 30
    for module in modules():
        layer_of(module)


def test_the_check_sees_an_upward_import() -> None:
    """The rule can fail: a backend importing the renderer is caught."""
    rank, _ = layer_of("backends.local")
    assert layer_of("render")[0] > rank
    assert layer_of("repl.loop")[0] > layer_of("exchange")[0]
