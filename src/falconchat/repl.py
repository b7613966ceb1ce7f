"""The interactive chat: a prompt-toolkit session around the conversation, live replies,
slash commands (repl_commands.py) and sessions kept on disk when asked."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from falconchat import __version__
from falconchat.backends.base import Backend
from falconchat.conversation import Conversation
from falconchat.errors import FalconchatError
from falconchat.exchange import answer, continue_answer, stats_line
from falconchat.prompt import falcon_prompt
from falconchat.render import make_console, reply_writer, sanitize
from falconchat.types import SamplingParams

PROMPT = ">>> "


class Hangup(BaseException):
    """SIGTERM or SIGHUP: leave now, keeping the session."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@dataclass
class ReplOptions:
    plain: bool = False
    verbose: bool = False
    data_dir: Path | None = None  # None: nothing is written (no history)
    sessions_dir: Path | None = None
    session: str | None = None  # a named session, kept current after every exchange
    models: Mapping[str, object] = field(default_factory=dict)
    roles: Mapping[str, object] = field(default_factory=dict)
    open_backend: Callable[[object], Backend] | None = None


class Repl:
    def __init__(self, backend: Backend, conversation: Conversation, params: SamplingParams,
                 options: ReplOptions, *, out: IO[str] = sys.stdout, err: IO[str] = sys.stderr):
        self.backend = backend
        self.conversation = conversation
        self.params = params
        self.options = options
        self.out = out
        self.err = make_console(err, soft_wrap=True)
        self.context_used = 0
        self.last_finish: str | None = None
        self.saved_turns = len(conversation.turns)  # what is on disk already
        from falconchat.repl_commands import Commands

        self.commands = Commands(self)

    # ---- output ----------------------------------------------------------------------

    def notice(self, text: str) -> None:
        self.err.print(sanitize(text), style="dim")

    def error(self, text: str) -> None:
        self.err.print("error: " + sanitize(text), style="red")

    def header(self) -> str:
        p = self.params
        temp = "greedy" if p.temperature == 0 else f"temperature {p.temperature:g}"
        session = f" · session {self.options.session}" if self.options.session else ""
        return (f"falconchat {__version__} · {self.backend.describe()} · {temp} · "
                f"max {p.max_new_tokens} new tokens{session} · /help for commands, Ctrl-D to quit")

    def toolbar(self) -> str:
        p = self.params
        temp = "greedy" if p.temperature == 0 else f"temp {p.temperature:g}"
        return sanitize(f" {self.backend.name} · {temp} · context {self.context_used}/{self.backend.context_length} tokens")

    # ---- the loop --------------------------------------------------------------------

    def run(self) -> int:
        self.notice(self.header())
        session = self._prompt_session()
        previous = {sig: signal.signal(sig, self._hangup) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return self._loop(session)
        except Hangup as hangup:
            return 128 + hangup.signum
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.keep_session()
            self._hint_unsaved()

    def _loop(self, session) -> int:
        from falconchat.repl_input import message_text

        self._measure_context()
        while True:
            try:
                raw = session.prompt(PROMPT)
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                return 0
            text = message_text(raw).strip("\n")
            if not text.strip():
                continue
            if text.startswith("/") and "\n" not in text.strip():
                if not self.commands.run(text.strip()):
                    return 0
            else:
                self.reply(text)
            self._measure_context()

    def _prompt_session(self):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory

        from falconchat.repl_input import key_bindings, make_history

        return PromptSession(
            history=make_history(self.options.data_dir),
            multiline=True,
            key_bindings=key_bindings(),
            prompt_continuation="... ",
            completer=self.commands.completer(),
            complete_while_typing=False,
            auto_suggest=AutoSuggestFromHistory(),
            enable_open_in_editor=True,
            bottom_toolbar=self.toolbar,
        )

    def _hangup(self, signum, frame) -> None:
        raise Hangup(signum)

    # ---- replies ---------------------------------------------------------------------

    def reply(self, text: str) -> None:
        self._stream(lambda writer: answer(self.conversation, self.backend, text, self.params, writer, self.notice))

    def continue_reply(self) -> None:
        self._stream(lambda writer: continue_answer(self.conversation, self.backend, self.params, writer, self.notice))

    def _stream(self, run: Callable) -> None:
        writer = reply_writer(self.out, plain=self.options.plain)
        try:
            done = run(writer)
        except KeyboardInterrupt:
            self.notice("(reply stopped; what was shown is kept — /continue goes on)")
            return
        except FalconchatError as exc:
            self.error(exc.message)
            return
        finally:
            self.keep_session()
        self.last_finish = done.finish_reason
        if done.finish_reason == "length":
            self.notice(f"(stopped at max_new_tokens = {self.params.max_new_tokens}; /continue goes on)")
        if self.options.verbose:
            self.notice(stats_line(done))

    def _measure_context(self) -> None:
        """Tokens the conversation would take in the next prompt (for the toolbar)."""
        try:
            text = falcon_prompt(self.conversation.system, self.conversation.turns, "")
            self.context_used = self.backend.count_tokens(text)
        except FalconchatError:
            pass

    # ---- sessions --------------------------------------------------------------------

    def keep_session(self) -> None:
        """Write the named session, if there is one; a failure is a notice, never a crash."""
        if not self.options.session or self.options.sessions_dir is None:
            return
        from falconchat import sessions

        try:
            sessions.private_dir(self.options.sessions_dir)
            path = sessions.session_path(self.options.sessions_dir, self.options.session)
            sessions.save(path, sessions.Session(self.conversation, self.backend.name, self.params))
            self.saved_turns = len(self.conversation.turns)
        except (OSError, ValueError, FalconchatError) as exc:
            try:
                self.error(f"could not save session {self.options.session}: {exc}")
            except OSError:  # the terminal is gone (SIGHUP): nothing more to say
                pass

    def _hint_unsaved(self) -> None:
        if not self.options.session and len(self.conversation.turns) > 1 and self.saved_turns < len(self.conversation.turns):
            try:
                self.notice("this conversation was not saved: /save NAME keeps one, `falconchat chat --session NAME` keeps it as you go")
            except (OSError, ValueError):
                pass
