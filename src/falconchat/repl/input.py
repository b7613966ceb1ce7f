"""What the REPL reads with: prompt-toolkit's session, keys, persistent history, completion.

Enter sends; Alt+Enter (Esc, Enter) adds a line; a message that starts with
\"\"\" goes on until a line ends with \"\"\"; a bracketed paste arrives whole, as
one message. Ctrl-X Ctrl-E edits the message in $EDITOR.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from prompt_toolkit.completion import Completer, Completion, PathCompleter
from prompt_toolkit.filters import is_searching
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings

FENCE = '"""'
HISTORY_MAX_ENTRIES = 2000
HISTORY_MAX_BYTES = 1024 * 1024


class PrivateFileHistory(FileHistory):
    """Input history across sessions: 0600 file in a 0700 directory, bounded in size;
    a line that starts with a space is not written (as in shells)."""

    def __init__(self, path: Path):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        os.chmod(path, 0o600)
        super().__init__(str(path))
        if path.stat().st_size > HISTORY_MAX_BYTES:
            self._compact(path)

    def store_string(self, string: str) -> None:
        if not string.startswith(" "):
            super().store_string(string)

    def load_history_strings(self) -> Iterable[str]:
        for count, line in enumerate(super().load_history_strings()):
            if count >= HISTORY_MAX_ENTRIES:
                return
            yield line

    def _compact(self, path: Path) -> None:
        """Keep the newest entries: rewrite the file in FileHistory's own format."""
        newest = list(self.load_history_strings())[: HISTORY_MAX_ENTRIES // 2]
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for entry in reversed(newest):
                fh.write(b"\n# \n" + "".join(f"+{line}\n" for line in entry.split("\n")).encode("utf-8"))
        os.replace(temporary, path)


def make_history(data_dir: Path | None) -> History:
    return InMemoryHistory() if data_dir is None else PrivateFileHistory(data_dir / "history")


def message_text(raw: str) -> str:
    """A \"\"\" block without its fences; bytes that were not UTF-8 (which prompt-toolkit
    passes on as lone surrogates) become U+FFFD, so the text can be shown and saved."""
    if any("\ud800" <= ch <= "\udfff" for ch in raw):
        raw = raw.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    text = raw.strip()
    if text.startswith(FENCE) and text.endswith(FENCE) and len(text) >= 2 * len(FENCE):
        return text[len(FENCE) : -len(FENCE)].strip("\n")
    return raw


def key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("enter", filter=~is_searching)  # in Ctrl-R search, Enter picks the match
    def _send_or_continue_block(event) -> None:
        buffer = event.current_buffer
        text = buffer.text.strip()
        open_block = text.startswith(FENCE) and (len(text) < 2 * len(FENCE) or not text.endswith(FENCE))
        if open_block and buffer.document.is_cursor_at_the_end:
            buffer.insert_text("\n")
        else:
            buffer.validate_and_handle()

    @bindings.add("escape", "enter", filter=~is_searching)
    def _new_line(event) -> None:
        event.current_buffer.insert_text("\n")

    return bindings


class SlashCompleter(Completer):
    """Tab completes commands, then their arguments: model, role and parameter names,
    session names and file paths."""

    def __init__(
        self, commands: Iterable[str], arguments: dict[str, Callable[[], Iterable[str]]], path_commands: Iterable[str]
    ):
        self.commands = sorted(commands)
        self.arguments = arguments
        self.path_commands = set(path_commands)
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document, complete_event):
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        command, space, argument = text.partition(" ")
        if not space:
            for name in self.commands:
                if name.startswith(command):
                    yield Completion(name, start_position=-len(command))
            return
        for choice in self.arguments.get(command, lambda: ())():
            if choice.startswith(argument):
                yield Completion(choice, start_position=-len(argument))
        if command in self.path_commands and argument:
            from prompt_toolkit.document import Document  # noqa: PLC0415 (heavy: prompt_toolkit)

            for found in self.paths.get_completions(Document(argument), complete_event):
                path = argument[: len(argument) + found.start_position] + found.text
                if os.path.isdir(os.path.expanduser(path)):  # a folder goes on, as a shell completes it
                    found = Completion(found.text + "/", found.start_position, display=found.display)
                yield found


@contextmanager
def typing_hidden(stdin: IO[str] | None, *, erase_echo: IO[str] | None = None) -> Iterator[None]:
    """Keys typed while the chat is busy (starting, probing, streaming a reply, running a
    command) wait unseen for the next prompt: the terminal neither echoes them nor edits
    them as a line (ICANON off), so every key reaches the prompt as typed — a Ctrl-D too,
    which the line discipline would otherwise turn into an end-of-line that the prompt
    reads as a NUL — and a terminal's answer to a query (a cursor position after Ctrl-L)
    is never echoed as `^[[1;1R`. Ctrl-C still interrupts (ISIG stays on).

    `erase_echo` (the terminal's stream): keys typed before this began were echoed by the
    terminal (the chat was still starting); that echo is erased from the line it is on."""

    def hold(termios, attrs: list) -> None:
        attrs[3] &= ~(termios.ECHO | termios.ICANON)  # lflag
        attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0  # (VMIN shares VEOF's slot on some systems)

    with _terminal_mode(stdin, hold) as (fd, before):
        if fd is not None and erase_echo is not None and before and _echoed_input(fd, before):
            _erase_line(erase_echo)
        yield


@contextmanager
def typing_shown(stdin: IO[str] | None) -> Iterator[None]:
    """The terminal as a program run from the chat ($EDITOR) expects it, inside `typing_hidden`."""

    def cook(termios, attrs: list) -> None:
        attrs[3] |= termios.ECHO | termios.ICANON
        attrs[6][termios.VEOF] = 4  # Ctrl-D (its slot is VMIN's on some systems)

    with _terminal_mode(stdin, cook):
        yield


@contextmanager
def _terminal_mode(stdin: IO[str] | None, change: Callable) -> Iterator[tuple[int | None, list | None]]:
    """The terminal's modes changed by `change(termios, attrs)` for the block, then restored;
    nothing on a pipe or a system without termios. Yields the descriptor and the modes before."""
    try:
        import termios  # noqa: PLC0415 (POSIX only)
    except ImportError:  # not a POSIX system
        yield None, None
        return
    try:
        if stdin is None:
            raise ValueError("no standard input")
        fd = stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (AttributeError, ValueError, OSError, termios.error):  # not a terminal (a pipe)
        yield None, None
        return
    changed = [*saved[:6], list(saved[6])]
    change(termios, changed)
    try:
        termios.tcsetattr(fd, termios.TCSANOW, changed)
    except termios.error:
        yield None, None
        return
    try:
        yield fd, saved
    finally:
        try:
            termios.tcsetattr(fd, termios.TCSANOW, saved)
        except termios.error:
            pass  # the terminal is gone


def _echoed_input(fd: int, before: list) -> bool:
    """Keys typed and not yet read, which the terminal echoed (its modes `before` did)."""
    import fcntl  # noqa: PLC0415 (POSIX only)
    import struct  # noqa: PLC0415 (POSIX only)
    import termios  # noqa: PLC0415 (POSIX only)

    if not before[3] & termios.ECHO:
        return False
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0] > 0
    except OSError:
        return False


def _erase_line(out: IO[str]) -> None:
    try:
        if out.isatty():
            out.write("\r\x1b[2K")
            out.flush()
    except (AttributeError, ValueError, OSError):
        pass
