"""`falconchat models`: every configured model, where it points, and whether it answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from falconchat.backends import open_backend
from falconchat.backends.probe import served_models
from falconchat.environment import Environment
from falconchat.errors import FalconchatError
from falconchat.render import make_console
from falconchat.text import safe_url, sanitize


def print_models(settings, env: Environment) -> None:
    from rich.table import Table  # noqa: PLC0415 (heavy: rich)

    specs = list(settings.models.values())
    with ThreadPoolExecutor(max_workers=8) as pool:  # endpoints are checked side by side
        statuses = list(pool.map(check_model, specs))
    table = Table(box=None, pad_edge=False)
    for column in ("", "name", "backend", "format", "where", "status"):
        table.add_column(column)
    for spec, status in zip(specs, statuses):
        where = spec.endpoint or spec.model_path or "bundled"
        mark = "*" if spec.name == settings.model.name else ""
        table.add_row(mark, sanitize(spec.name), spec.backend, spec.format, sanitize(_shown(where)), sanitize(status))
    console = make_console(env.stdout, env)
    console.width = max(console.width, 120)
    console.print(table)


def check_model(spec) -> str:

    if spec.backend == "auto":  # opening it asks the server its API: a quick look, like check()
        spec = replace(spec, timeout=min(spec.timeout, 5.0))
    try:
        backend = open_backend(spec)
    except FalconchatError as exc:
        return exc.message
    try:
        return backend.check()
    except FalconchatError as exc:
        return exc.message
    finally:
        backend.close()


def _shown(where: str) -> str:
    return safe_url(where) if where.startswith("http") else where


def print_served(spec, env: Environment) -> None:
    """`falconchat models --endpoint URL`: what the server says it serves."""
    from rich.table import Table  # noqa: PLC0415 (heavy: rich)

    found = served_models(spec)
    console = make_console(env.stdout, env)
    console.width = max(console.width, 120)
    server = f" ({sanitize(found.server)})" if found.server else ""
    if not found.models:
        console.print(f"{safe_url(found.endpoint)}: no model list; treated as a TGI endpoint{server}", markup=False)
        return
    console.print(f"{safe_url(found.endpoint)}: {found.api} API{server}", markup=False, highlight=False)
    table = Table(box=None, pad_edge=False)
    for column in ("name", "context", "owned by"):
        table.add_column(column)
    for model in found.models:
        context = str(model.context_length) if model.context_length else "—"
        table.add_row(sanitize(model.name), context, sanitize(model.owner or ""))
    console.print(table)
