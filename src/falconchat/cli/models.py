"""`falconchat models`: every configured model, where it points, and whether it answers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from falconchat.backends import open_backend
from falconchat.backends.probe import resolve, served_models
from falconchat.cli.hub_models import print_cached
from falconchat.environment import Environment
from falconchat.errors import FalconchatError
from falconchat.render import make_console
from falconchat.text import safe_url, sanitize

API_NAMES = {"tgi": "TGI", "openai": "OpenAI-compatible"}


def print_models(settings, env: Environment) -> None:
    from rich.table import Table  # noqa: PLC0415 (heavy: rich)

    specs = list(settings.models.values())
    with ThreadPoolExecutor(max_workers=8) as pool:  # endpoints are checked side by side
        checked = list(pool.map(check_model, specs))
    table = Table(box=None, pad_edge=False)
    for column in ("", "name", "backend", "format", "where"):
        table.add_column(column, no_wrap=True)
    table.add_column("status", overflow="fold")  # the one that wraps in a narrow window
    for spec, (backend, form, status) in zip(specs, checked):
        where = spec.endpoint or spec.model_path or ("its replies" if spec.script is not None else "bundled")
        mark = "*" if spec.name == settings.model.name else ""
        table.add_row(mark, sanitize(spec.name), backend, form, sanitize(_shown(where)), sanitize(status))
    _print(table, env)
    print_cached(env, _print)  # the GGUFs pulled from the Hub (by falconchat or any Hugging Face tool)


def check_model(spec) -> tuple[str, str, str]:
    """(backend, format, status): an "auto" endpoint is probed, and listed as what it speaks."""
    if spec.backend == "auto":  # asking the server its API: a quick look, like check()
        try:
            spec = resolve(replace(spec, timeout=min(spec.timeout, 5.0)))
        except FalconchatError as exc:
            return spec.backend, spec.format, exc.message
    try:
        backend = open_backend(spec)
    except FalconchatError as exc:
        return spec.backend, spec.format, exc.message
    try:
        return spec.backend, spec.format, backend.check()
    except FalconchatError as exc:
        return spec.backend, spec.format, exc.message
    finally:
        backend.close()


def _print(renderable, env: Environment) -> None:
    """As wide as the terminal (a narrow one wraps the status), unbounded in a pipe; no line
    ends in the spaces a table pads its cells with."""
    from rich.segment import Segments  # noqa: PLC0415 (heavy: rich)

    from falconchat.markdown_view import without_trailing_spaces  # noqa: PLC0415 (heavy: rich)

    console = make_console(env.stdout, env)
    if not env.draws_on(env.stdout):
        console.width = 10_000  # a pipe or a file: one line per row, whatever its length
    lines = without_trailing_spaces(console.render(renderable))
    console.print(Segments(lines), end="")


def _shown(where: str) -> str:
    return safe_url(where) if where.startswith("http") else where


def print_served(spec, env: Environment) -> None:
    """`falconchat models --endpoint URL`: what the server says it serves."""
    from rich.table import Table  # noqa: PLC0415 (heavy: rich)

    found = served_models(spec)
    api = API_NAMES.get(found.api, found.api)
    server = f" ({sanitize(found.server)})" if found.server and found.server != found.api else ""
    if not found.models:
        env.stdout.write(f"{safe_url(found.endpoint)}: no model list; treated as a TGI endpoint{server}\n")
        return
    env.stdout.write(f"{safe_url(found.endpoint)}: {api} API{server}\n")
    table = Table(box=None, pad_edge=False)
    for column in ("name", "context", "owned by"):
        table.add_column(column)
    for model in found.models:
        context = str(model.context_length) if model.context_length else "—"
        table.add_row(sanitize(model.name), context, sanitize(model.owner or ""))
    _print(table, env)
