"""The REPL's slash commands. Each handler returns False to leave the chat."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from falconchat import sessions
from falconchat.backends.base import Backend
from falconchat.backends.hub_names import is_hub_name, parse_hub_name
from falconchat.backends.registry import FORMAT_SHOWN
from falconchat.config import BUNDLED_MODEL
from falconchat.config_models import ModelSpec
from falconchat.config_values import parse
from falconchat.errors import FalconchatError
from falconchat.repl import attach_commands, session_commands
from falconchat.repl.state import Chat, ReplState
from falconchat.sources import named_only
from falconchat.text import sanitize
from falconchat.types import Constraint

SETTABLE = ("temperature", "max_new_tokens", "top_p", "top_k", "repetition_penalty", "seed", "stop")
ALIASES = {"temp": "temperature", "max_tokens": "max_new_tokens"}
UNSET = ("none", "off", "random")  # `/set seed none`: no fixed seed
MAX_TOKENS_SETTING = "max_new_tokens (/set max_new_tokens N)"  # how hints name it in the chat, not as a flag
BARE_WORDS = {"exit": "/exit", "quit": "/exit"}  # typed without the slash, they still leave
CLIPBOARD_TOOLS = (["pbcopy"], ["wl-copy"], ["xclip", "-selection", "clipboard"], ["xsel", "--clipboard", "--input"])

KEYS = (
    'Keys: Enter sends · Alt+Enter (Esc Enter) adds a line · """ starts a multi-line block, """ ends it · '
    "Ctrl-X Ctrl-E edits in $EDITOR · Up/Ctrl-R search history · Tab completes · "
    "Ctrl-C stops a reply or clears the line · Ctrl-D leaves"
)


@dataclass(frozen=True)
class Command:
    """One slash command: all that /help, the dispatch and Tab completion know of it (COMMANDS below)."""

    name: str
    usage: str  # the argument, as /help shows it: "NAME", "[TEXT]", ""
    help: str
    handler: Callable[[Commands, str], object]  # returns False to leave the chat
    aliases: tuple[str, ...] = ()
    choices: Callable[[Commands], Iterable[str]] | None = None  # what Tab offers as the argument
    paths: bool = False  # Tab also completes a file path as the argument

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


class Commands:
    def __init__(self, state: ReplState, repl: Chat):
        self.state = state
        self.repl = repl
        self.by_name = {name: command for command in COMMANDS for name in command.names}

    def command_in(self, text: str) -> str | None:
        """The command a line is, or None for a message: `/NAME …` on one line, or a bare `exit`
        or `quit`, which leave (as in `llm chat`) rather than go to the model."""
        line = text.strip()
        if line.startswith("/") and "\n" not in line:
            return line
        return BARE_WORDS.get(line.lower())

    def run(self, text: str) -> bool:
        name, _, arg = text.partition(" ")
        command = self.by_name.get(name.lower())
        pending = self.state.pending_replace
        if pending is not None and pending[0] != f"{name.lower()} {arg.strip()}".rstrip():
            self.state.pending_replace = None  # a replace is confirmed only by the very next command
        if command is None:
            self.repl.notice(f"unknown command {name}; /help lists them")
            return True
        try:
            return command.handler(self, arg.strip()) is not False
        except FalconchatError as exc:
            self.repl.error(exc.message)
        except OSError as exc:
            self.repl.error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return True

    def completer(self):
        from falconchat.repl.input import SlashCompleter  # noqa: PLC0415 (it loads prompt_toolkit)

        def offer(command: Command) -> Callable[[], Iterable[str]]:
            return lambda: command.choices(self) if command.choices else ()

        return SlashCompleter(
            self.by_name,
            {name: offer(command) for name, command in self.by_name.items() if command.choices},
            path_commands=[name for name, command in self.by_name.items() if command.paths],
        )

    def session_names(self) -> list[str]:
        directory = self.state.options.sessions_dir
        return sessions.session_names(directory) if directory else []

    # ---- settings --------------------------------------------------------------------

    def help(self, arg: str) -> None:
        rows = [(f"{c.name} {c.usage}", c.help + "".join(f" (also {a})" for a in c.aliases)) for c in COMMANDS]
        width = max(len(left) for left, _ in rows)
        lines = [f"  {left.ljust(width)}  {text}" for left, text in rows]
        self.repl.err.print("Commands:\n" + "\n".join(lines) + "\n" + KEYS)

    def system(self, arg: str) -> None:
        if arg:
            self.state.conversation.system = arg
            self.repl.notice("system message set")
        else:
            self.repl.notice(f"system message: {self.state.conversation.system or '(none)'}")

    def set(self, arg: str, origin: str = "/set") -> None:
        name, _, value = arg.partition(" ")
        name = name.replace("-", "_").lower()
        name = ALIASES.get(name, name)
        if name not in SETTABLE or not value.strip():
            self.repl.notice("usage: /set PARAM VALUE, where PARAM is one of " + ", ".join(SETTABLE))
            return
        unset = name in ("seed", "stop") and value.strip().lower() in UNSET  # seed: a new draw each reply
        typed = (() if name == "stop" else None) if unset else parse(name, value.strip(), origin)
        self.state.params = self.state.params.with_changes(**{name: typed})
        self.repl.notice(f"{name} = {_shown(typed)}")

    def temp(self, arg: str) -> None:
        if arg:
            self.set("temperature " + arg, origin="/temp")
            return
        temperature = self.state.params.temperature
        self.repl.notice(f"temperature = {temperature:g}" + (" (greedy)" if temperature == 0 else ""))

    def show(self, arg: str) -> None:
        from rich.text import Text  # noqa: PLC0415 (heavy: rich)

        state, p = self.state, self.state.params
        # What the chat can change (and a --schema); serve's OpenAI-only knobs stay at their defaults.
        values = "\n".join(f"  {name} = {_shown(getattr(p, name))}" for name in SETTABLE)
        values += "\n  " + _shown_constraint(p.constraint)
        session = state.options.session or "(none)"
        history = "on" if state.options.data_dir else "off"
        log = state.options.log
        logged = "off" if log is None or not log.on else f"on, conversation {log.cid or '(new)'}"
        self.repl.err.print(
            Text(
                sanitize(
                    f"model: {state.backend.describe()}\nformat: {shown_format(state.backend)}\n"
                    f"system: {named_only(state.conversation.system) or '(none)'}\n{values}\n"
                    f"session: {session} · log: {logged} · input history: {history} · "
                    f"stats: {'on' if state.options.verbose else 'off'}"
                )
            )  # Text: a system message or schema with [brackets] is not Rich markup
        )

    def model(self, arg: str) -> None:
        options = self.state.options
        if not arg:
            self.repl.notice(f"model: {self.state.backend.describe()}; known: {', '.join(sorted(options.models))}")
            return
        spec = options.models.get(arg) or hub_model(arg, options.models)
        if spec is None or options.open_backend is None:
            self.repl.notice(f"unknown model {arg!r}; known: {', '.join(sorted(options.models))}, or hf:OWNER/REPO")
            return
        from falconchat.repl.input import typing_hidden  # noqa: PLC0415 (it loads prompt_toolkit)

        with typing_hidden(self.repl.env.stdin):  # keys typed while an endpoint is probed wait for the prompt
            backend = options.open_backend(spec)
            try:
                backend.warm_up()  # fail here, keeping the current model, rather than at the next message
            except FalconchatError:
                backend.close()
                raise
        self.state.backend.close()
        self.state.backend = backend
        self.repl.notice(
            f"now talking to {backend.describe()} (format {shown_format(backend)}); the conversation goes with it"
        )

    def role(self, arg: str) -> None:
        roles = self.state.options.roles
        if arg not in roles:
            if arg:
                self.repl.notice(f"unknown role {arg!r}" + ("; the roles:" if roles else ""))
            self.roles("")
            return
        role = roles[arg]
        if role.system is not None:
            self.state.conversation.system = role.system
        if role.sampling:
            self.state.params = self.state.params.with_changes(**role.sampling)
        self.repl.notice(f"role {arg}: system message and settings applied")

    def roles(self, arg: str) -> None:
        roles = self.state.options.roles
        if not roles:
            self.repl.notice('no roles: add [roles.NAME] with system = "…" to the config file')
            return
        for name, role in sorted(roles.items()):
            self.repl.notice(f"{name}: {role.system or '(no system message)'}")

    def stats(self, arg: str) -> None:
        if arg and arg not in ("on", "off"):
            self.repl.notice(f"usage: /stats on|off (stats stay {'on' if self.state.options.verbose else 'off'})")
            return
        if arg:
            self.state.options.verbose = arg == "on"
        self.repl.notice(f"stats {'on' if self.state.options.verbose else 'off'}")

    # ---- the conversation ------------------------------------------------------------

    def retry(self, arg: str) -> None:
        conversation = self.state.conversation
        if not conversation.turns:
            self.repl.notice("nothing to retry yet")
            return
        params = self.state.params
        if params.temperature == 0:
            self.repl.notice("(greedy decoding, temperature 0, gives the same reply again; /temp 0.7 varies it)")
        elif params.seed is not None:
            # A fixed seed draws the same reply again: the retry takes the next seed, and says so.
            self.state.params = params.with_changes(seed=(params.seed + 1) % 2**32)
            self.repl.notice(f"(seed {params.seed} would give the same reply: seed is now {self.state.params.seed})")
        old = conversation.undo()
        assert old is not None  # there was a turn to undo
        self.repl.reply(old.user, attach=False)  # its sources are in it already; those attached since wait
        last = conversation.last
        if last is None or last.user != old.user:  # it never started: keep the old reply
            conversation.turns.append(old)
        else:
            last.attached, last.words_at = old.attached, old.words_at

    def continue_(self, arg: str) -> None:
        last = self.state.conversation.last
        if last is None:
            self.repl.notice("nothing to continue yet")
        elif last.status == "complete":
            self.repl.notice("the last reply is complete; /retry asks again")
        elif self.state.params.constraint is not None:
            # The grammar holds from the reply's first character: going on would start a second object.
            self.repl.notice(
                "a reply under --schema or --json-mode can't be continued (its shape is checked from the start): "
                f"/set max_new_tokens N (now {self.state.params.max_new_tokens}), then /retry"
            )
        else:
            self.repl.continue_reply()

    def undo(self, arg: str) -> None:
        turn = self.state.conversation.undo()
        self.repl.notice("dropped the last exchange" if turn else "nothing to undo")

    def history(self, arg: str) -> None:
        from rich.text import Text  # noqa: PLC0415 (heavy: rich)

        conversation = self.state.conversation
        console = self.repl.err
        if conversation.system:
            console.print(Text("System: ", style="bold") + Text(sanitize(named_only(conversation.system))))
        for number, turn in enumerate(conversation.turns, 1):  # the numbers /fork N takes
            note = {"length": " (length limit)", "cut": " (cut)", "error": " (incomplete)"}.get(turn.status, "")
            console.print(
                Text(f"{number}. ", style="dim") + Text("You: ", style="bold cyan") + Text(sanitize(turn.words))
            )
            if turn.attached:  # the sources' names and sizes, not their text
                console.print(Text(sanitize("  attached: " + ", ".join(turn.attached)), style="dim"))
            console.print(
                Text(sanitize(f"{turn.model or self.state.backend.name}{note}: "), style="bold green")
                + Text(sanitize(turn.assistant))
            )
        if not conversation.turns:
            self.repl.notice("(no exchanges yet)")

    def reasoning(self, arg: str) -> None:
        from rich.text import Text  # noqa: PLC0415 (heavy: rich)

        if not self.state.last_reasoning.strip():
            self.repl.notice("the last reply came with no reasoning")
            return
        self.repl.err.print(Text(sanitize(self.state.last_reasoning.strip()), style="dim"))

    def copy(self, arg: str) -> None:
        last = self.state.conversation.last
        if last is None or not last.assistant:
            self.repl.notice("no reply to copy yet")
            return
        environ = dict(self.repl.env.environ)
        for tool in CLIPBOARD_TOOLS:
            if shutil.which(tool[0], path=environ.get("PATH")):
                try:
                    subprocess.run(
                        tool,
                        env=environ,  # the chat's variables (DISPLAY, WAYLAND_DISPLAY) say which clipboard
                        input=last.assistant.encode(),
                        check=True,
                        timeout=5,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    self.repl.notice(f"copied the last reply ({len(last.assistant)} characters) with {tool[0]}")
                    return
                except (OSError, subprocess.SubprocessError):
                    continue
        self.repl.notice("no clipboard here; the last reply, plain, to select:")
        self.repl.out.write(sanitize(last.assistant) + "\n")
        self.repl.out.flush()

    def edit(self, arg: str) -> None:
        from rich.text import Text  # noqa: PLC0415 (heavy: rich)

        env = self.repl.env
        with tempfile.NamedTemporaryFile("w+", suffix=".md", delete=False, encoding="utf-8") as fh:
            fh.write(arg)
            path = fh.name
        try:
            from falconchat.repl.input import typing_shown  # noqa: PLC0415 (it loads prompt_toolkit)

            with typing_shown(env.stdin):  # the chat holds keys between prompts; the editor reads lines
                status = subprocess.call([*shlex.split(env.editor), path], env=dict(env.environ))
            if status != 0:
                self.repl.notice("the editor failed; nothing sent")
                return
            with open(path, encoding="utf-8", errors="replace") as fh:
                text = fh.read().strip()
        finally:
            os.unlink(path)
        if text:
            self.repl.err.print(Text("You: ", style="bold cyan") + Text(sanitize(text)))  # what is sent, shown
            self.repl.reply(text)
        else:
            self.repl.notice("empty message; nothing sent")

    def fork(self, arg: str) -> None:
        """A new conversation from this one's first N exchanges (all by default); this one stays
        in the log as it was."""
        turns = self.state.conversation.turns
        if arg and not (arg.isdigit() and int(arg) <= len(turns)):
            self.repl.notice(f"usage: /fork [N], N from 0 to {len(turns)} (/history numbers the exchanges)")
            return
        keep = int(arg) if arg else len(turns)
        del turns[keep:]
        log = self.state.options.log
        original = log.cid if log is not None else None
        cid = log.fork(self.state.conversation) if log is not None else None
        shared = f"the first {keep} exchange{'' if keep == 1 else 's'}"
        if cid and original:
            self.repl.notice(
                f"forked: conversation {cid} goes on from {shared} of {original} "
                f"(falconchat --cid {original} opens that one again)"
            )
        else:
            self.repl.notice(f"forked: a new conversation goes on from {shared}")

    def clear(self, arg: str) -> None:
        self.state.conversation.clear()
        self.repl.notice("conversation cleared")


COMMANDS: tuple[Command, ...] = (
    Command("/help", "", "this list", Commands.help),
    Command("/system", "[TEXT]", "set the system message (no TEXT: show it)", Commands.system),
    Command("/temp", "[VALUE]", "set the temperature (0 = greedy; no VALUE: show it)", Commands.temp),
    Command("/set", "PARAM VALUE", "set " + ", ".join(SETTABLE), Commands.set, choices=lambda c: SETTABLE),
    Command("/show", "", "the current model, its prompt format, settings and session", Commands.show),
    Command(
        "/model",
        "NAME",
        "switch model; the conversation goes with it",
        Commands.model,
        choices=lambda c: sorted(c.state.options.models),
    ),
    Command(
        "/role",
        "NAME",
        "use a role's system message and settings",
        Commands.role,
        choices=lambda c: sorted(c.state.options.roles),
    ),
    Command("/roles", "", "list the roles of the config file", Commands.roles),
    Command("/retry", "", "replace the last reply with a new one", Commands.retry),
    Command("/continue", "", "go on with a reply that was cut or hit the length limit", Commands.continue_),
    Command("/undo", "", "drop the last exchange", Commands.undo),
    Command("/history", "", "show the conversation, its exchanges numbered", Commands.history),
    Command("/fork", "[N]", "go on in a new conversation from the first N exchanges (default: all)", Commands.fork),
    Command("/reasoning", "", "show the last reply's reasoning whole", Commands.reasoning),
    Command("/copy", "", "copy the last reply (or print it plain to select)", Commands.copy),
    Command("/edit", "[TEXT]", "write the message in $EDITOR, then send it", Commands.edit),
    Command(
        "/save",
        "[NAME]",
        "save the conversation as a session (NAME, or a path ending in .json)",
        lambda c, a: session_commands.save(c.state, c.repl, a),
        choices=Commands.session_names,
        paths=True,
    ),
    Command(
        "/load",
        "NAME",
        "load a saved session",
        lambda c, a: session_commands.load(c.state, c.repl, a),
        choices=Commands.session_names,
        paths=True,
    ),
    Command(
        "/export",
        "FILE.md",
        "write the conversation as Markdown",
        lambda c, a: session_commands.export(c.state, c.repl, a),
        paths=True,
    ),
    Command(
        "/file",
        "SOURCE…",
        "attach files, folders, globs or URLs to your next message",
        lambda c, a: attach_commands.attach_file(c.state, c.repl, a),
        paths=True,
    ),
    Command(
        "/image",
        "PATH…",
        "attach images (PNG, JPEG, WebP, GIF) to your next message, for a model that can see",
        lambda c, a: attach_commands.attach_image(c.state, c.repl, a),
        paths=True,
    ),
    Command(
        "/files",
        "",
        "list what is attached, with each one's size in tokens",
        lambda c, a: attach_commands.list_files(c.state, c.repl, a),
    ),
    Command("/drop", "", "drop what is attached", lambda c, a: attach_commands.drop(c.state, c.repl, a)),
    Command(
        "/run",
        "COMMAND",
        "run a shell command and attach its output (stdout, stderr, exit status) to your next message",
        lambda c, a: attach_commands.run_command(c.state, c.repl, a),
    ),
    Command(
        "/stats", "on|off", "token counts and speed after each reply", Commands.stats, choices=lambda c: ("on", "off")
    ),
    Command("/clear", "", "forget the conversation", Commands.clear),
    Command("/exit", "", "leave (Ctrl-D, or exit or quit alone, too)", lambda c, a: False, aliases=("/bye",)),
)


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
