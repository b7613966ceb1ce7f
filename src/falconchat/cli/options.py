"""The flags every command shares, and how they become settings: Typer's context object
(the environment and the flags given before a subcommand), the shared options added to a
command's signature, and `--schema`/`--json-mode`/`--endpoint` applied to the settings."""

from __future__ import annotations

import copy
import functools
import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import typer

from falconchat.environment import Environment
from falconchat.errors import UsageError

# The flags every command takes: (name, type, typer.Option). Numbers arrive as text
# and are checked by config, so a wrong value reads the same from a flag, the
# environment or a file.
SHARED_OPTIONS: list[tuple[str, Any, Any]] = [
    (
        "model",
        Optional[str],
        typer.Option(
            None,
            "--model",
            "-m",
            metavar="NAME",
            help="Model name: smollm2 (bundled), a [models.NAME] from the config, or hf:OWNER/REPO[:QUANT] from the Hub.",
        ),
    ),
    (
        "endpoint",
        Optional[list[str]],
        typer.Option(
            None,
            "--endpoint",
            metavar="URL",
            help="A server's base URL: text-generation-inference or OpenAI-compatible (vLLM, Ollama, llama.cpp's server…); which one is asked of it. Repeat it for replicas of one model (batch spreads requests over them; ask and the chat fail over).",
        ),
    ),
    (
        "model_path",
        Optional[str],
        typer.Option(
            None, "--model-path", metavar="FILE", help="A GGUF model file to run locally (or hf:OWNER/REPO…)."
        ),
    ),
    ("system", Optional[str], typer.Option(None, "--system", "-s", metavar="TEXT", help="System message.")),
    (
        "temperature",
        Optional[str],
        typer.Option(
            None,
            "--temperature",
            "--temp",
            "-t",
            metavar="FLOAT",
            help="Sampling temperature; 0 is greedy.  [default: 0.7]",
        ),
    ),
    (
        "max_new_tokens",
        Optional[str],
        typer.Option(
            None, "--max-new-tokens", "--max-tokens", metavar="INT", help="Longest reply, in tokens.  [default: 512]"
        ),
    ),
    ("top_p", Optional[str], typer.Option(None, "--top-p", metavar="FLOAT", help="Nucleus sampling.  [default: 0.95]")),
    (
        "top_k",
        Optional[str],
        typer.Option(None, "--top-k", metavar="INT", help="Top-k sampling; 0 turns it off.  [default: 50]"),
    ),
    (
        "repetition_penalty",
        Optional[str],
        typer.Option(
            None, "--repetition-penalty", metavar="FLOAT", help="Penalty for repeated tokens.  [default: 1.0]"
        ),
    ),
    ("seed", Optional[str], typer.Option(None, "--seed", metavar="INT", help="Random seed, for repeatable sampling.")),
    (
        "stop",
        Optional[list[str]],
        typer.Option(None, "--stop", metavar="TEXT", help="Extra stop sequence (repeatable)."),
    ),
    ("plain", bool, typer.Option(False, "--plain", help="Plain text instead of rendered Markdown.")),
    (
        "force",
        bool,
        typer.Option(False, "--force", help="Load a local model even if it is larger than the free memory."),
    ),
    (
        "pull",
        bool,
        typer.Option(False, "--pull", help="Download an hf:OWNER/REPO model first if it is not in the Hub's cache."),
    ),
    (
        "schema",
        Optional[str],
        typer.Option(
            None,
            "--schema",
            metavar="SCHEMA",
            help="Reply in JSON matching this JSON Schema (a file, inline JSON, or fields: 'name, age int, tags list'); a reply that does not match is exit 5.",
        ),
    ),
    (
        "json_mode",
        bool,
        typer.Option(False, "--json-mode", help="Reply with a JSON object (any); anything else is exit 5."),
    ),
    (
        "show_reasoning",
        bool,
        typer.Option(
            False,
            "--show-reasoning",
            help="Keep a thinking model's reasoning: whole and dimmed on a terminal, on stderr in a pipe.",
        ),
    ),
    (
        "thinking",
        Optional[bool],
        typer.Option(
            None,
            "--thinking/--no-thinking",
            help="A thinking model's enable_thinking (Qwen3, SmolLM3): its local chat template, or sent to an OpenAI-compatible server.  [default: the template's]",
        ),
    ),
    (
        "reasoning_effort",
        Optional[str],
        typer.Option(
            None,
            "--reasoning-effort",
            metavar="LEVEL",
            help="gpt-oss's reasoning effort: low, medium or high (a local chat template, or sent to an OpenAI-compatible server).",
        ),
    ),
    (
        "timeout",
        Optional[str],
        typer.Option(None, "--timeout", metavar="SECONDS", help="Endpoint connect/read timeout.  [default: 120]"),
    ),
    (
        "log",
        Optional[bool],
        typer.Option(
            None,
            "--log/--no-log",
            help="Log this command's exchanges in the conversation log (falconchat logs), or not.  [default: on; batch: off]",
        ),
    ),
    (
        "file",
        Optional[list[str]],
        typer.Option(
            None,
            "--file",
            "-f",
            metavar="SOURCE",
            help="Put a file, folder, glob ('src/**/*.py'), - (stdin) or http(s):// URL before the prompt, "
            "as a block naming it (repeatable, in order).",
        ),
    ),
    (
        "attach",
        Optional[list[str]],
        typer.Option(
            None,
            "--attach",
            "-a",
            metavar="IMAGE",
            help="An image (PNG, JPEG, WebP, GIF) for a model that can see (repeatable).",
        ),
    ),
    (
        "system_file",
        Optional[list[str]],
        typer.Option(
            None, "--sf", "--system-file", metavar="SOURCE", help="Like -f, into the system message (repeatable)."
        ),
    ),
    (
        "max_file_size",
        Optional[str],
        typer.Option(
            None, "--max-file-size", metavar="SIZE", help="Largest -f source (a folder counts whole).  [default: 1M]"
        ),
    ),
    ("verbose", bool, typer.Option(False, "--verbose", "-v", help="Statistics on stderr after each reply.")),
    ("debug", bool, typer.Option(False, "--debug", help="Show tracebacks.")),
    (
        "env_file",
        Optional[str],
        typer.Option(None, "--env-file", metavar="PATH", help="Read this .env file instead of ./.env and the user's."),
    ),
    ("config", Optional[str], typer.Option(None, "--config", metavar="PATH", help="Config TOML file.")),
    (
        "role",
        Optional[str],
        typer.Option(
            None,
            "--role",
            "-r",
            metavar="NAME",
            help="A [roles.NAME] from the config: its system message and settings.",
        ),
    ),
]


SHARED_NAMES = [name for name, _, _ in SHARED_OPTIONS]
TRI_STATE = {"thinking", "log"}  # --no-thinking is a value (False), not the flag's absence (None)


@dataclass
class Invocation:
    """Typer's `ctx.obj`: the environment the command runs in, and the shared flags given
    before the subcommand (`falconchat -m x ask …`)."""

    env: Environment
    shared: dict[str, Any] = field(default_factory=dict)


def invocation(ctx: typer.Context) -> Invocation:
    return ctx.find_root().obj


def with_shared_options(func=None, *, hidden: tuple[str, ...] = ()):
    """Give a command the shared flags; it receives them as one dict, `shared`. Those in
    `hidden` are left out of its --help (it refuses them: they mean nothing there).
    `--endpoint` comes as one URL (`endpoint`) and every one given (`endpoints`): replicas of
    one model (batch spreads its requests over them; ask and the chat fail over)."""
    if func is None:
        return functools.partial(with_shared_options, hidden=hidden)
    own = [p for p in inspect.signature(func).parameters.values() if p.name != "shared"]
    extra = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=_hidden(option) if name in hidden else option,
            annotation=kind,
        )
        for name, kind, option in SHARED_OPTIONS
    ]

    @functools.wraps(func)
    def command(*args, **kwargs):
        shared = {name: kwargs.pop(name) for name in SHARED_NAMES}
        urls = list(shared["endpoint"] or ())
        if len(set(url.rstrip("/") for url in urls)) < len(urls):
            raise UsageError("--endpoint: the same URL is given twice")
        shared["endpoint"], shared["endpoints"] = (urls[0] if urls else None), urls
        return func(*args, shared=shared, **kwargs)

    command.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]  # what Typer reads
    return command


def _hidden(option: Any) -> Any:
    option = copy.copy(option)  # the shared one stays shown for the other commands
    option.hidden = True
    return option


def merged_flags(ctx: typer.Context, shared: dict[str, Any]) -> dict[str, Any]:
    """A subcommand's flags over those given before it (`falconchat -m x ask …`)."""
    parent = dict(invocation(ctx).shared)
    for name, value in shared.items():
        if (value is False and name in TRI_STATE) or value not in (None, False, [], ()):
            parent[name] = value
    return {
        name: value if name in TRI_STATE else (True if value is True else value or None)
        for name, value in parent.items()
    }


def load(flags: dict[str, Any], env: Environment):
    from falconchat.config import load_settings  # noqa: PLC0415 (per-command dispatch)

    settings = load_settings(flags, environ=env.environ, cwd=env.cwd)
    env.debug = env.debug or bool(settings.debug)  # decided here, once: flag, environment, .env, TOML
    urls = flags.get("endpoints") or []
    if len(urls) > 1 and settings.model.endpoint == urls[0]:  # `--endpoint` repeated: replicas of one model
        settings = replace(settings, model=replace(settings.model, replicas=tuple(urls)))
    for line in settings.warnings:
        print(line, file=env.stderr)
    if flags.get("pull"):  # never without it: a script does not download gigabytes by surprise
        from falconchat.cli.pull import ensure_pulled  # noqa: PLC0415 (per-command dispatch)

        ensure_pulled(env, settings.model.model_path)
    if settings.model.backend == "local" and not flags.get("force"):
        fits_memory(settings.model.model_path)
    return settings


def fits_memory(model_path: str | None) -> None:
    """A local GGUF larger than the free memory is one line (exit 2) before it loads; --force loads it."""
    from falconchat.backends.gguf import check_fits_memory, memory_available  # noqa: PLC0415 (per-command dispatch)
    from falconchat.backends.hub import find_cached  # noqa: PLC0415 (per-command dispatch)
    from falconchat.backends.hub_names import is_hub_name, parse_hub_name  # noqa: PLC0415 (per-command dispatch)

    if model_path is None:
        return  # the bundled model: 100 MB
    path = find_cached(parse_hub_name(model_path)) if is_hub_name(model_path) else Path(model_path).expanduser()
    if path is not None and path.is_file():  # a missing file is the backend's error, said as it opens
        check_fits_memory(path, memory_available())


def structured(settings, flags: dict[str, Any], env: Environment):
    """`--schema` / `--json-mode` onto the sampling settings, as the constraint every backend passes on."""

    from falconchat.structured import json_mode, schema_constraint  # noqa: PLC0415 (per-command dispatch)

    if flags.get("schema") and flags.get("json_mode"):
        raise UsageError("give --schema or --json-mode, not both")
    if flags.get("schema"):
        constraint = schema_constraint(flags["schema"], env.cwd)
    elif flags.get("json_mode"):
        constraint = json_mode()
    else:
        return settings
    return replace(settings, sampling=settings.sampling.with_changes(constraint=constraint))


def resolved(settings):
    """Settings whose model is an endpoint of known API: `--endpoint URL` alone is probed here, once."""

    from falconchat.backends.probe import resolve  # noqa: PLC0415 (per-command dispatch)

    if settings.model.replicas:  # each replica is probed when the failover backend opens it
        return settings
    return replace(settings, model=resolve(settings.model))
