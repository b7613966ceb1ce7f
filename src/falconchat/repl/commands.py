"""The REPL's slash commands. Each handler returns False to leave the chat."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from falconchat import sessions
from falconchat.errors import FalconchatError
from falconchat.repl import attach_commands, session_commands, settings_commands
from falconchat.repl.settings_commands import SETTABLE
from falconchat.repl.state import Chat, ReplState
from falconchat.sources import named_only
from falconchat.text import sanitize

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

    # ---- help (the settings: settings_commands.py) -------------------------------------

    def help(self, arg: str) -> None:
        rows = [(f"{c.name} {c.usage}", c.help + "".join(f" (also {a})" for a in c.aliases)) for c in COMMANDS]
        width = max(len(left) for left, _ in rows)
        lines = [f"  {left.ljust(width)}  {text}" for left, text in rows]
        self.repl.err.print("Commands:\n" + "\n".join(lines) + "\n" + KEYS)

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
    Command(
        "/system",
        "[TEXT]",
        "set the system message (no TEXT: show it)",
        lambda c, a: settings_commands.system(c.state, c.repl, a),
    ),
    Command(
        "/temp",
        "[VALUE]",
        "set the temperature (0 = greedy; no VALUE: show it)",
        lambda c, a: settings_commands.temp(c.state, c.repl, a),
    ),
    Command(
        "/set",
        "PARAM VALUE",
        "set " + ", ".join(SETTABLE),
        lambda c, a: settings_commands.set_param(c.state, c.repl, a),
        choices=lambda c: SETTABLE,
    ),
    Command(
        "/show",
        "",
        "the current model, its prompt format, settings and session",
        lambda c, a: settings_commands.show(c.state, c.repl, a),
    ),
    Command(
        "/model",
        "NAME",
        "switch model; the conversation goes with it",
        lambda c, a: settings_commands.model(c.state, c.repl, a),
        choices=lambda c: sorted(c.state.options.models),
    ),
    Command(
        "/role",
        "NAME",
        "use a role's system message and settings",
        lambda c, a: settings_commands.role(c.state, c.repl, a),
        choices=lambda c: sorted(c.state.options.roles),
    ),
    Command(
        "/roles", "", "list the roles of the config file", lambda c, a: settings_commands.roles(c.state, c.repl, a)
    ),
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
        "/stats",
        "on|off",
        "token counts and speed after each reply",
        lambda c, a: settings_commands.stats(c.state, c.repl, a),
        choices=lambda c: ("on", "off"),
    ),
    Command("/clear", "", "forget the conversation", Commands.clear),
    Command("/exit", "", "leave (Ctrl-D, or exit or quit alone, too)", lambda c, a: False, aliases=("/bye",)),
)
