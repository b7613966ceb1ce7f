"""What the REPL's commands read and change, in one object: the backend, the conversation,
the settings and the session's options. `Repl` (loop.py) and `Commands` (commands.py)
both hold it, so neither needs the other's module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from falconchat.backends.base import Backend
from falconchat.config import Role
from falconchat.config_models import ModelSpec
from falconchat.config_values import DEFAULT_MAX_FILE_SIZE
from falconchat.conversation import Conversation
from falconchat.conversation_log import ConversationLog
from falconchat.environment import Environment
from falconchat.sources import Block
from falconchat.types import SamplingParams
from falconchat.web_source import URL_TIMEOUT_S


@dataclass
class ReplOptions:
    plain: bool = False
    verbose: bool = False
    show_reasoning: bool = False  # keep a thinking model's reasoning whole instead of one line
    data_dir: Path | None = None  # None: nothing is written (no history)
    sessions_dir: Path | None = None
    session: str | None = None  # a named session, kept current after every exchange
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    roles: Mapping[str, Role] = field(default_factory=dict)
    open_backend: Callable[[ModelSpec], Backend] | None = None
    opening: list[str] = field(default_factory=list)  # said after the banner (a resumed session's summary)
    log: ConversationLog | None = None  # the conversation log (None: nothing logged)
    max_file_size: int = DEFAULT_MAX_FILE_SIZE  # each /file source, and /run's output
    url_timeout: float = URL_TIMEOUT_S  # a /file URL's whole fetch
    attached: tuple[Block, ...] = ()  # `chat -f SOURCE`: they go with the first message
    show_history: bool = False  # at the start: the conversation continued (-c, --cid), as /history shows it


@dataclass
class ReplState:
    backend: Backend
    conversation: Conversation
    params: SamplingParams
    options: ReplOptions
    saved_turns: int = 0  # exchanges already on disk
    own_files: set[Path] = field(default_factory=set)  # files this chat read or wrote: replaced without asking
    pending_replace: tuple[str, Path, int] | None = None  # a refused /save or /export, confirmed by repeating it
    last_reasoning: str = ""  # the last reply's reasoning, for /reasoning
    attached: list[Block] = field(default_factory=list)  # /file, /run: they go with the next message


class Chat(Protocol):
    """What the slash commands ask of the running chat."""

    env: Environment  # its streams and variables (EDITOR for /edit, the clipboard's DISPLAY)
    out: IO[str]

    @property
    def err(self): ...

    def notice(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...

    def reply(self, text: str, *, attach: bool = True) -> None: ...

    def continue_reply(self) -> None: ...
