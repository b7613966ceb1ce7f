"""The REPL's commands that read or change the chat's settings: /system, /set, /temp, /show,
/model, /role, /roles, /stats, and how a setting, a --schema and a prompt format are shown."""

from __future__ import annotations

import json
from dataclasses import replace

from falconchat.backends.base import Backend
from falconchat.backends.hub_names import is_hub_name, parse_hub_name
from falconchat.backends.registry import FORMAT_SHOWN
from falconchat.config import BUNDLED_MODEL
from falconchat.config_models import ModelSpec
from falconchat.config_values import parse
from falconchat.errors import FalconchatError
from falconchat.repl.state import Chat, ReplState
from falconchat.sources import named_only
from falconchat.text import sanitize
from falconchat.types import Constraint

SETTABLE = ("temperature", "max_new_tokens", "top_p", "top_k", "repetition_penalty", "seed", "stop")
ALIASES = {"temp": "temperature", "max_tokens": "max_new_tokens"}
UNSET = ("none", "off", "random")  # `/set seed none`: no fixed seed
MAX_TOKENS_SETTING = "max_new_tokens (/set max_new_tokens N)"  # how hints name it in the chat, not as a flag


def system(state: ReplState, chat: Chat, arg: str) -> None:
    if arg:
        state.conversation.system = arg
        chat.notice("system message set")
    else:
        chat.notice(f"system message: {state.conversation.system or '(none)'}")


def set_param(state: ReplState, chat: Chat, arg: str, origin: str = "/set") -> None:
    name, _, value = arg.partition(" ")
    name = name.replace("-", "_").lower()
    name = ALIASES.get(name, name)
    if name not in SETTABLE or not value.strip():
        chat.notice("usage: /set PARAM VALUE, where PARAM is one of " + ", ".join(SETTABLE))
        return
    unset = name in ("seed", "stop") and value.strip().lower() in UNSET  # seed: a new draw each reply
    typed = (() if name == "stop" else None) if unset else parse(name, value.strip(), origin)
    state.params = state.params.with_changes(**{name: typed})
    chat.notice(f"{name} = {_shown(typed)}")


def temp(state: ReplState, chat: Chat, arg: str) -> None:
    if arg:
        set_param(state, chat, "temperature " + arg, origin="/temp")
        return
    temperature = state.params.temperature
    chat.notice(f"temperature = {temperature:g}" + (" (greedy)" if temperature == 0 else ""))


def show(state: ReplState, chat: Chat, arg: str) -> None:
    from rich.text import Text  # noqa: PLC0415 (heavy: rich)

    p = state.params
    # What the chat can change (and a --schema); serve's OpenAI-only knobs stay at their defaults.
    values = "\n".join(f"  {name} = {_shown(getattr(p, name))}" for name in SETTABLE)
    values += "\n  " + _shown_constraint(p.constraint)
    session = state.options.session or "(none)"
    history = "on" if state.options.data_dir else "off"
    log = state.options.log
    logged = "off" if log is None or not log.on else f"on, conversation {log.cid or '(new)'}"
    chat.err.print(
        Text(
            sanitize(
                f"model: {state.backend.describe()}\nformat: {shown_format(state.backend)}\n"
                f"system: {named_only(state.conversation.system) or '(none)'}\n{values}\n"
                f"session: {session} · log: {logged} · input history: {history} · "
                f"stats: {'on' if state.options.verbose else 'off'}"
            )
        )  # Text: a system message or schema with [brackets] is not Rich markup
    )


def model(state: ReplState, chat: Chat, arg: str) -> None:
    options = state.options
    if not arg:
        chat.notice(f"model: {state.backend.describe()}; known: {', '.join(sorted(options.models))}")
        return
    spec = options.models.get(arg) or hub_model(arg, options.models)
    if spec is None or options.open_backend is None:
        chat.notice(f"unknown model {arg!r}; known: {', '.join(sorted(options.models))}, or hf:OWNER/REPO")
        return
    from falconchat.repl.input import typing_hidden  # noqa: PLC0415 (it loads prompt_toolkit)

    with typing_hidden(chat.env.stdin):  # keys typed while an endpoint is probed wait for the prompt
        backend = options.open_backend(spec)
        try:
            backend.warm_up()  # fail here, keeping the current model, rather than at the next message
        except FalconchatError:
            backend.close()
            raise
    state.backend.close()
    state.backend = backend
    chat.notice(f"now talking to {backend.describe()} (format {shown_format(backend)}); the conversation goes with it")


def role(state: ReplState, chat: Chat, arg: str) -> None:
    known = state.options.roles
    if arg not in known:
        if arg:
            chat.notice(f"unknown role {arg!r}" + ("; the roles:" if known else ""))
        roles(state, chat, "")
        return
    role = known[arg]
    if role.system is not None:
        state.conversation.system = role.system
    if role.sampling:
        state.params = state.params.with_changes(**role.sampling)
    chat.notice(f"role {arg}: system message and settings applied")


def roles(state: ReplState, chat: Chat, arg: str) -> None:
    known = state.options.roles
    if not known:
        chat.notice('no roles: add [roles.NAME] with system = "…" to the config file')
        return
    for name, role in sorted(known.items()):
        chat.notice(f"{name}: {role.system or '(no system message)'}")


def stats(state: ReplState, chat: Chat, arg: str) -> None:
    if arg and arg not in ("on", "off"):
        chat.notice(f"usage: /stats on|off (stats stay {'on' if state.options.verbose else 'off'})")
        return
    if arg:
        state.options.verbose = arg == "on"
    chat.notice(f"stats {'on' if state.options.verbose else 'off'}")


def _shown(value: object) -> str:
    """A setting as a user types it: `none` rather than `None`, text without quotes."""
    if value is None:
        return "none"
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def _shown_constraint(constraint: Constraint | None) -> str:
    """--schema as the JSON Schema it is, --json-mode, a regex or a grammar: what a user reads and can copy."""
    if constraint is None:
        return "schema = none"
    if constraint.kind == "json_schema":
        return "schema = " + json.dumps(constraint.value, ensure_ascii=False)
    if constraint.kind == "json":
        return "schema = any JSON object (--json-mode)"
    if constraint.kind == "regex":
        return f"regex = {constraint.value}"
    return f"grammar = {len(str(constraint.value).splitlines())} lines of GBNF"


def shown_format(backend: Backend) -> str:
    """The prompt format in use, as the banner, /show and /model say it: "native (the model's chat template)"."""
    return FORMAT_SHOWN.get(backend.prompt_format, backend.prompt_format)


def hub_model(arg: str, models) -> ModelSpec | None:
    """`/model hf:OWNER/REPO…`: a local model from the Hub's cache, with the bundled model's settings
    (context, threads, format); one not pulled yet fails to open, naming the pull command."""
    if not is_hub_name(arg) or BUNDLED_MODEL not in models:
        return None
    parse_hub_name(arg)  # a malformed name is an error now
    return replace(models[BUNDLED_MODEL], name=arg, model_path=arg)
