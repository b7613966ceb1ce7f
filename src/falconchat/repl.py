"""The interactive chat: a prompt-toolkit session, slash commands, live replies."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO

from falconchat import __version__
from falconchat.backends.base import Backend
from falconchat.config import parse
from falconchat.conversation import Conversation
from falconchat.errors import FalconchatError
from falconchat.exchange import answer, stats_line
from falconchat.render import make_console, reply_writer, sanitize
from falconchat.types import SamplingParams

PROMPT = ">>> "
SETTABLE = ("temperature", "max_new_tokens", "top_p", "top_k", "repetition_penalty", "seed")

HELP = """\
Commands:
  /system TEXT        set the system message (no TEXT: show it)
  /temp VALUE         set the temperature (0 = greedy)
  /set PARAM VALUE    set temperature, max_new_tokens, top_p, top_k, repetition_penalty or seed
  /clear              forget the conversation
  /help               this list
  /exit, /bye         leave (Ctrl-D works too)
Keys: Ctrl-C stops a reply (what was shown is kept) or clears the line; Ctrl-D leaves."""


class Repl:
    def __init__(self, backend: Backend, conversation: Conversation, params: SamplingParams,
                 *, plain: bool, verbose: bool, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr):
        self.backend = backend
        self.conversation = conversation
        self.params = params
        self.plain = plain
        self.verbose = verbose
        self.out = out
        self.err = make_console(err, soft_wrap=True)
        self.commands: dict[str, Callable[[str], bool]] = {
            "/help": self._help,
            "/system": self._system,
            "/temp": lambda arg: self._set("temperature " + arg),
            "/set": self._set,
            "/clear": self._clear,
            "/exit": lambda arg: False,
            "/bye": lambda arg: False,
        }

    def notice(self, text: str) -> None:
        self.err.print(sanitize(text), style="dim")

    def header(self) -> str:
        p = self.params
        temp = "greedy" if p.temperature == 0 else f"temperature {p.temperature:g}"
        return (f"falconchat {__version__} · {self.backend.describe()} · {temp} · "
                f"max {p.max_new_tokens} new tokens · /help for commands, Ctrl-D to quit")

    def run(self) -> int:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory

        self.notice(self.header())
        session = PromptSession(history=InMemoryHistory())
        while True:
            try:
                line = session.prompt(PROMPT)
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                return 0
            text = line.strip()
            if not text:
                continue
            if text.startswith("/"):
                if not self.command(text):
                    return 0
                continue
            self.reply(text)

    def reply(self, text: str) -> None:
        writer = reply_writer(self.out, plain=self.plain)
        try:
            done = answer(self.conversation, self.backend, text, self.params, writer, self.notice)
        except KeyboardInterrupt:
            self.notice("(reply stopped; what was shown is kept)")
            return
        except FalconchatError as exc:
            self.err.print("error: " + sanitize(exc.message), style="red")
            return
        if done.finish_reason == "length":
            self.notice(f"(stopped at max_new_tokens = {self.params.max_new_tokens})")
        if self.verbose:
            self.notice(stats_line(done))

    def command(self, text: str) -> bool:
        """Run a slash command; False means leave."""
        name, _, arg = text.partition(" ")
        handler = self.commands.get(name.lower())
        if handler is None:
            self.notice(f"unknown command {name}; /help lists them")
            return True
        return handler(arg.strip())

    # ---- commands ----------------------------------------------------------------------

    def _help(self, arg: str) -> bool:
        self.err.print(HELP)
        return True

    def _system(self, arg: str) -> bool:
        if arg:
            self.conversation.system = arg
            self.notice("system message set")
        else:
            self.notice(f"system message: {self.conversation.system or '(none)'}")
        return True

    def _set(self, arg: str) -> bool:
        name, _, value = arg.partition(" ")
        name = name.replace("-", "_").lower()
        if name == "temp":
            name = "temperature"
        if name not in SETTABLE or not value.strip():
            self.notice("usage: /set PARAM VALUE, where PARAM is one of " + ", ".join(SETTABLE))
            return True
        try:
            typed = parse(name, value.strip(), "/set")
        except FalconchatError as exc:
            self.notice(exc.message)
            return True
        self.params = self.params.with_changes(**{name: typed})
        self.notice(f"{name} = {typed}")
        return True

    def _clear(self, arg: str) -> bool:
        self.conversation.clear()
        self.notice("conversation cleared")
        return True
