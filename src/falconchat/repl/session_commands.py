"""The REPL's commands that write or read files: /save, /load, /export, and the line that says
what a reopened session holds (`--resume`, `--session NAME`, /load).

A file this chat did not read or write is never replaced silently: the command says it exists,
and the same command typed again (before anything else is said) replaces it. That works the
same at a terminal and in a piped script, with no question to answer."""

from __future__ import annotations

from pathlib import Path

from falconchat import sessions
from falconchat.errors import FalconchatError
from falconchat.repl.state import Chat, ReplState
from falconchat.text import sanitize

SHOWN_CHARS = 160  # how much of the last exchange a reopened session shows, per side


def save(state: ReplState, chat: Chat, arg: str) -> None:
    name = arg or state.options.session
    if not name:
        chat.notice("usage: /save [NAME] (NAME is needed when the chat has no --session)")
        return
    path = _path(state, name)
    if not state.conversation.turns:
        chat.notice("nothing to save yet: the conversation has no exchanges")
        return
    sessions.check_writable(path, state.options.sessions_dir or path.parent)
    if not _may_replace(state, chat, f"/save {arg}".rstrip(), path, f"session {name}"):
        return
    if path.parent == state.options.sessions_dir:
        sessions.private_dir(path.parent)
    sessions.save(path, sessions.Session(state.conversation, state.backend.name, state.params))
    state.saved_turns = len(state.conversation.turns)
    state.own_files.add(path.resolve())
    chat.notice(f"saved to {path}")


def load(state: ReplState, chat: Chat, arg: str) -> None:
    if not arg:
        chat.notice("usage: /load NAME")
        return
    path = _path(state, arg)
    session = sessions.load(path)  # refused files raise before anything changes
    state.conversation.system = session.conversation.system
    state.conversation.turns[:] = session.conversation.turns
    state.params = session.params
    state.saved_turns = len(session.conversation.turns)
    state.own_files.add(path.resolve())
    for line in reopened("loaded", arg, session, state.backend.name):
        chat.notice(line)


def export(state: ReplState, chat: Chat, arg: str) -> None:
    if not arg:
        chat.notice("usage: /export FILE.md")
        return
    if not state.conversation.turns:
        chat.notice("nothing to export yet: the conversation has no exchanges")
        return
    path = Path(arg).expanduser()
    if not _may_replace(state, chat, f"/export {arg}", path, str(path)):
        return
    sessions.export_markdown(path, state.conversation, state.backend.name)
    state.own_files.add(path.resolve())
    chat.notice(f"exported to {path}")


def reopened(verb: str, name: str, session: sessions.Session, model_now: str) -> list[str]:
    """What a session brought back: its size, the model it was recorded with (and the one that
    answers now, when another), and the last exchange, shortened to a line each."""
    turns = session.conversation.turns
    recorded = turns[-1].model if turns and turns[-1].model else session.model
    model = f"recorded with {recorded}" + ("" if recorded == model_now else f"; now talking to {model_now}")
    lines = [f"{verb} {name}: {sessions.exchanges(len(turns))} ({model})"]
    if turns:
        last = turns[-1]
        note = {"length": " (length limit: /continue goes on)", "cut": " (cut)", "error": " (incomplete)"}
        lines.append(f"  You: {_one_line(last.user)}")
        lines.append(f"  {last.model or session.model}{note.get(last.status, '')}: {_one_line(last.assistant)}")
    return [sanitize(line) for line in lines]


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CHARS else flat[: SHOWN_CHARS - 1] + "…"


def _path(state: ReplState, name: str) -> Path:
    directory = state.options.sessions_dir
    if directory is None:
        raise FalconchatError("sessions are off (no data directory)")
    return sessions.session_path(directory, name)


def _may_replace(state: ReplState, chat: Chat, command: str, path: Path, what: str) -> bool:
    """True when `path` may be written: new, this chat's own, or the command repeated to confirm."""
    if not path.exists() or path.resolve() in state.own_files or _is_bound(state, path):
        return True
    confirm = (command, path.resolve(), len(state.conversation.turns))
    if state.pending_replace == confirm:
        state.pending_replace = None
        return True
    state.pending_replace = confirm
    chat.notice(f"{what} exists ({path}); {command} again replaces it, or choose another name")
    return False


def _is_bound(state: ReplState, path: Path) -> bool:
    """The --session this chat keeps is its own file."""
    name, directory = state.options.session, state.options.sessions_dir
    return bool(name and directory and sessions.session_path(directory, name).resolve() == path.resolve())
