"""The Hub's cached GGUFs in `falconchat models`, and `models rm` / `models info` on one of them."""

from __future__ import annotations

from pathlib import Path

from falconchat.backends.gguf import bundled_model_path
from falconchat.backends.gguf_meta import read_metadata, summary
from falconchat.backends.hub import cache_dir
from falconchat.backends.hub_cache import CachedModel, cached_models, locate, remove
from falconchat.backends.hub_names import is_hub_name, parse_hub_name
from falconchat.config import BUNDLED_MODEL
from falconchat.environment import Environment
from falconchat.errors import ConfigError, ExitCode, FalconchatError, UsageError
from falconchat.text import sanitize

TEMPLATE_LINES = 8  # `models info` shows the chat template's first lines


def print_cached(env: Environment, print_table) -> None:
    """A second table under the configured models: name, type, quant, size, context, template."""
    from rich.table import Table  # noqa: PLC0415 (heavy: rich)

    models = cached_models()
    if not models:
        return
    env.stdout.write(f"\nIn the Hugging Face cache ({sanitize(str(cache_dir()))}):\n")
    table = Table(box=None, pad_edge=False)
    for column in ("name", "type", "quant", "size", "context", "template"):
        table.add_column(column, no_wrap=column != "name", overflow="fold")
    for model in models:
        facts = _facts(model.path)
        context = str(facts["context"]) if facts.get("context") else "—"
        kind = sanitize(str(facts.get("architecture") or "?"))
        template = "yes" if facts.get("template") else "no"
        table.add_row(sanitize(model.name), kind, model.quant or "—", _mb(model.size), context, template)
    print_table(table, env)


def _facts(path: Path) -> dict:
    try:
        return summary(read_metadata(path))
    except FalconchatError:
        return {"architecture": "not GGUF"}


def rm_command(env: Environment, text: str, yes: bool) -> int:
    model = _cached(text)
    if not yes:
        if env.stdin is None or not env.stdin.isatty():
            raise UsageError(f"models rm deletes {model.name} ({_mb(model.size)}): add -y to confirm in a script")
        env.stderr.write(f"Delete {sanitize(model.name)}, {_mb(model.size)}? [y/N] ")
        env.stderr.flush()
        if env.stdin.readline().strip().lower() not in ("y", "yes"):
            env.stderr.write("kept\n")
            return ExitCode.OK
    freed = remove(model)
    env.stderr.write(f"removed {sanitize(model.name)}: freed {_mb(freed)}\n")
    return ExitCode.OK


def info_command(env: Environment, text: str) -> int:
    """What the GGUF says about itself: a cached hf: model, a file, or the bundled model."""
    if is_hub_name(text):
        path = _cached(text).path
    elif text == BUNDLED_MODEL:
        path = bundled_model_path()
    else:
        path = env.cwd / Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"no such model file: {text} (give an hf: name, a GGUF file or {BUNDLED_MODEL})")
    meta = read_metadata(path)
    facts = summary(meta)
    rows = [
        ("name", facts["name"]),
        ("file", str(path)),
        ("size", _mb(path.stat().st_size)),
        ("architecture", facts["architecture"]),
        ("parameters", facts["parameters"]),
        ("context", facts["context"]),
        ("chat template", "yes" if facts["template"] else "no (the Falcon-style prompt is used)"),
    ]
    for label, value in rows:
        if value is not None:
            env.stdout.write(f"{label + ':':<15}{sanitize(str(value))}\n")
    if facts["template"]:
        lines = str(facts["template"]).splitlines()
        for line in lines[:TEMPLATE_LINES]:
            env.stdout.write(f"  {sanitize(line)}\n")
        if len(lines) > TEMPLATE_LINES:
            env.stdout.write(f"  … ({len(lines) - TEMPLATE_LINES} more lines)\n")
    return ExitCode.OK


def _cached(text: str) -> CachedModel:
    if not is_hub_name(text):
        raise UsageError(f"give a Hub model, hf:OWNER/REPO[:QUANT] or hf:OWNER/REPO/FILE.gguf (got {text!r})")
    name = parse_hub_name(text)
    model = locate(name)
    if model is None:
        raise ConfigError(f"{name} is not in the Hugging Face cache ({cache_dir()}); see falconchat models")
    return model


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"
