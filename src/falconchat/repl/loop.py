"""The interactive chat: a prompt-toolkit session around the conversation, live replies
(replies.py), slash commands (commands.py) and sessions kept on disk when asked."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import nullcontext
from typing import IO, TextIO, cast

from falconchat import __version__, sessions
from falconchat.backends.base import Backend
from falconchat.conversation import Conversation
from falconchat.environment import Environment
from falconchat.errors import FalconchatError
from falconchat.exchange import prompt_size
from falconchat.render import make_console
from falconchat.repl import replies
from falconchat.repl.commands import Commands
from falconchat.repl.gauge import Gauge
from falconchat.repl.settings_commands import shown_format
from falconchat.repl.state import ReplOptions, ReplState
from falconchat.repl.waiting import FirstOutput, WaitingLine, waiting_line
from falconchat.sources import with_blocks
from falconchat.text import sanitize
from falconchat.types import SamplingParams

PROMPT = ">>> "
START_WAIT_S = 1.0  # how long the first measurement may delay the prompt, to report a dead endpoint
HANGUP_GRACE_S = 5.0  # after SIGHUP/SIGTERM, the longest the chat takes to leave by itself


class Hangup(BaseException):
    """SIGTERM or SIGHUP: leave now, keeping the session."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class PipedMessages:
    """The chat's input when it comes from a pipe (a script): a message per line, commands too,
    read where prompt-toolkit would ask; the end of the input ends the chat as Ctrl-D does."""

    app = None  # no terminal application to draw a prompt or a toolbar on

    def __init__(self, lines: IO[str]):
        self._lines = lines

    def prompt(self, _message: str, default: str = "") -> str:
        line = self._lines.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")


class Repl:
    def __init__(
        self,
        backend: Backend,
        conversation: Conversation,
        params: SamplingParams,
        options: ReplOptions,
        env: Environment,
    ):
        self.state = ReplState(backend, conversation, params, options, saved_turns=len(conversation.turns))
        self.env = env  # the streams, variables (TERM, EDITOR, NO_COLOR…) and directory the chat sees
        self.out: IO[str] = env.stdout
        # Input from a pipe, not a terminal (a script): its lines are the messages.
        self._piped = env.stdin if env.stdin_is_piped else None
        self.err = make_console(env.stderr, env, soft_wrap=True)
        self.commands = Commands(self.state, self)
        self.gauge = Gauge(self._context_length, self._context_used, self._redraw)
        self._app = None  # prompt-toolkit's application, while a prompt is open
        self._at_prompt = False
        self.watch: FirstOutput | None = None  # while a reply is awaited: its waiting line
        self.draft = ""  # a message to open the next prompt with (one whose sources did not fit)
        self.state.attached.extend(options.attached)  # `chat -f SOURCE`

    # ---- output ----------------------------------------------------------------------

    def notice(self, text: str) -> None:
        with self._waiting_hidden():
            self.err.print(sanitize(text), style="dim")

    def error(self, text: str) -> None:
        with self._waiting_hidden():
            self.err.print("error: " + sanitize(text), style="red")

    def _waiting_hidden(self):
        return nullcontext() if self.watch is None else self.watch.hidden()

    def waiting_line(self) -> WaitingLine | None:
        """`waiting for the model 3s · Ctrl-C stops · MODEL` on the terminal (none in a pipe, or --plain)."""
        # Not with --plain: a screen reader would read every redraw.
        draws = self.env.draws_on(self.env.stderr) and not self.state.options.plain
        return waiting_line(self.env.stderr, self.state.backend.describe(), draws=draws)

    def header(self) -> str:
        p = self.state.params
        temp = "greedy" if p.temperature == 0 else f"temperature {p.temperature:g}"
        session = f" · session {self.state.options.session}" if self.state.options.session else ""
        log = self.state.options.log
        if log is not None and log.cid and self.state.conversation.turns:
            session += f" · conversation {log.cid}"
        return (
            f"falconchat {__version__} · {self.state.backend.describe()} · "
            f"format {shown_format(self.state.backend)} · {temp} · "
            f"max {p.max_new_tokens} new tokens{session} · /help for commands, Ctrl-D to quit"
        )

    def toolbar(self) -> str:
        """Drawn on prompt-toolkit's event loop: only what is known, no I/O (see gauge.py)."""
        p = self.state.params
        temp = "greedy" if p.temperature == 0 else f"temp {p.temperature:g}"
        used = "?" if self.gauge.used is None else self.gauge.used
        length = "?" if self.gauge.length is None else self.gauge.length
        problem = f" · {self.gauge.problem}" if self.gauge.problem else ""
        left_out = self.gauge.left_out
        dropped = f" ({left_out} {'turn' if left_out == 1 else 'turns'} left out)" if left_out else ""
        return sanitize(f" {self.state.backend.name} · {temp} · context {used}/{length} tokens{dropped}{problem}")

    # ---- the loop --------------------------------------------------------------------

    def run(self) -> int:
        self.notice(self.header())
        for line in self.state.options.opening:
            self.notice(line)
        if self.state.options.show_history:
            self.commands.history("")
        session = self._prompt_session() if self._piped is None else PipedMessages(self._piped)
        self._app = session.app
        previous = {sig: signal.signal(sig, self._hangup) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            return self._loop(session)
        except Hangup as hangup:
            return 128 + hangup.signum
        except BrokenPipeError:  # output piped to a reader that went away (`| head`): the caller's exit
            raise
        except (EOFError, OSError):  # the terminal went away
            return 128 + signal.SIGHUP
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.keep_session()
            self._hint_unsaved()

    def _loop(self, session) -> int:
        from falconchat.repl.input import message_text  # noqa: PLC0415 (it loads prompt_toolkit)

        backend = None
        while True:
            if backend is not self.state.backend:  # at start, and after /model
                backend = self.state.backend
                self.gauge.forget()
                self._measure_context()
                self._report_unreachable()
            else:
                self._measure_context()
            try:
                self._at_prompt = True
                draft, self.draft = self.draft, ""
                raw = session.prompt(PROMPT, default=draft)
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt clears the line
            except EOFError:
                return 0
            finally:
                self._at_prompt = False
            text = message_text(raw).strip("\n")
            if not text.strip():
                continue
            try:
                self._wait_for_gauge()  # the backend is not shared between threads
            except KeyboardInterrupt:
                self.notice(replies.NOTHING_KEPT)
                continue
            command = self.commands.command_in(text)
            if command is not None:
                if not self.commands.run(command):
                    return 0
            else:
                self.reply(text)

    def _wait_for_gauge(self) -> None:
        """A measurement still under way (an endpoint that is slow to answer) delays the message:
        the waiting line says so while it lasts."""
        if self.gauge.wait(0):
            return
        self.watch = FirstOutput(self.waiting_line())
        try:
            if self.watch.waiting is not None:
                self.watch.waiting.start()
            self.gauge.wait()
        finally:
            self.watch.ended()
            self.watch = None

    def _report_unreachable(self) -> None:
        """A backend that fails its first measurement (an endpoint that can't be reached)
        says so in one line before the prompt; a slow one fills the toolbar in later."""
        try:
            self.gauge.wait(START_WAIT_S)
        except KeyboardInterrupt:
            return
        if self.gauge.problem:
            self.error(self.gauge.problem)

    def _prompt_session(self):
        from prompt_toolkit import PromptSession  # noqa: PLC0415 (heavy: prompt_toolkit)
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory  # noqa: PLC0415 (heavy: prompt_toolkit)
        from prompt_toolkit.completion import ThreadedCompleter  # noqa: PLC0415 (heavy: prompt_toolkit)
        from prompt_toolkit.input import create_input  # noqa: PLC0415 (heavy: prompt_toolkit)
        from prompt_toolkit.output import create_output  # noqa: PLC0415 (heavy: prompt_toolkit)

        from falconchat.repl.input import key_bindings, make_history  # noqa: PLC0415 (it loads prompt_toolkit)

        # The Environment's streams. prompt-toolkit itself still reads TERM, NO_COLOR and (Ctrl-X
        # Ctrl-E) EDITOR from the process, which main() made the Environment from.
        # With only stdout piped (`falconchat | tee chat.log`), the prompt and its toolbar are
        # drawn on the terminal (stderr), as shells draw theirs; only the replies go down the pipe.
        screen = self.env.stderr if not _isatty(self.out) and _isatty(self.env.stderr) else self.env.stdout
        return PromptSession(
            input=create_input(self.env.stdin),
            output=create_output(cast(TextIO, screen)),
            history=make_history(self.state.options.data_dir),
            multiline=True,
            key_bindings=key_bindings(),
            prompt_continuation="... ",
            completer=ThreadedCompleter(self.commands.completer()),  # off the event loop
            complete_while_typing=False,
            auto_suggest=AutoSuggestFromHistory(),
            enable_open_in_editor=True,
            bottom_toolbar=self.toolbar,
        )

    def _hangup(self, signum, frame) -> None:
        """SIGHUP (the terminal closed) or SIGTERM. Raised from a signal handler while
        prompt-toolkit's event loop runs, an exception would be caught and reported by
        asyncio and the chat would go on with no terminal: end the prompt instead. A
        watchdog makes sure the process ends even if nothing else does."""
        _exit_later(self, signum)
        if self._at_prompt and self._app is not None and self._app.is_running:
            app = self._app

            def leave() -> None:
                if app.is_running and not app.future.done():
                    app.exit(exception=Hangup(signum))

            try:
                app.loop.call_soon_threadsafe(leave)  # wakes the loop, which may be waiting in select()
                return
            except Exception:  # no loop any more: raise instead
                pass
        raise Hangup(signum)

    # ---- replies (replies.py) --------------------------------------------------------

    def reply(self, text: str, *, attach: bool = True) -> None:
        replies.reply(self, text, attach=attach)

    def continue_reply(self) -> None:
        replies.continue_reply(self)

    # ---- the toolbar's figures (gauge.py) --------------------------------------------

    def _measure_context(self) -> None:
        """Measure, in the background, what the toolbar shows (see gauge.py)."""
        self.gauge.refresh()

    def _context_length(self) -> int:
        return self.state.backend.context_length

    def _context_used(self) -> tuple[int, int]:
        """Tokens the next prompt would take as it is sent, with what is attached to it (/file,
        /image, /run), and how many of the oldest turns it leaves out to fit."""
        message = with_blocks("", tuple(self.state.attached))
        return prompt_size(self.state.conversation, self.state.backend, message, self.state.params.max_new_tokens)

    def _redraw(self) -> None:
        if self._app is not None and self._app.is_running:
            self._app.invalidate()  # safe from another thread

    # ---- sessions --------------------------------------------------------------------

    def keep_session(self) -> None:
        """Write the named session, if there is one; a failure is a notice, never a crash."""
        if not self.state.options.session or self.state.options.sessions_dir is None:
            return

        try:
            path = sessions.session_path(self.state.options.sessions_dir, self.state.options.session)
            if not self.state.conversation.turns and not path.exists():
                return  # nothing said yet: no empty file, which --resume would then open
            sessions.private_dir(self.state.options.sessions_dir)
            sessions.save(path, sessions.Session(self.state.conversation, self.state.backend.name, self.state.params))
            self.state.saved_turns = len(self.state.conversation.turns)
        except (OSError, ValueError, FalconchatError) as exc:
            try:
                self.error(f"could not save session {self.state.options.session}: {exc}")
            except OSError:  # the terminal is gone (SIGHUP): nothing more to say
                pass

    def _hint_unsaved(self) -> None:
        if (
            not self.state.options.session
            and len(self.state.conversation.turns) > 1
            and self.state.saved_turns < len(self.state.conversation.turns)
        ):
            try:
                self.notice(
                    "this conversation was not saved: /save NAME keeps one, falconchat chat --session NAME keeps it as you go"
                )
            except (OSError, ValueError):
                pass


def _exit_later(repl: Repl, signum: int) -> None:
    """If the chat has not left HANGUP_GRACE_S after a hangup (stuck in a request, a
    terminal that no longer takes output), save the named session and end the process."""

    def leave() -> None:
        repl.keep_session()
        os._exit(128 + signum)

    timer = threading.Timer(HANGUP_GRACE_S, leave)
    timer.daemon = True
    timer.start()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
