"""Keeping a conversation: session files (JSON) and Markdown export.

Files are written whole (a temporary file renamed into place) with mode 0600
in a 0700 directory. They hold the conversation, the model's name and the
sampling values — never an API key. A file that is not a falconchat session
is refused and nothing else changes.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from falconchat.config_values import SAMPLING_KEYS, parse
from falconchat.conversation import Conversation
from falconchat.errors import InputError
from falconchat.text import sanitize
from falconchat.types import SamplingParams, Turn

FORMAT = "falconchat-session"
VERSION = 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_SESSION_BYTES = 64 * 1024 * 1024
STATUSES = ("complete", "length", "cut", "error")


@dataclass
class Session:
    conversation: Conversation
    model: str
    params: SamplingParams


def session_path(directory: Path, name_or_path: str) -> Path:
    """A bare NAME lives in the sessions directory; a path must end in `.json`. Anything else
    (`a/b`, `../x`) is refused: taken as a path, it was written outside the sessions directory
    under a name that no listing shows."""
    if name_or_path.endswith(".json"):
        return Path(name_or_path).expanduser()
    if not NAME.match(name_or_path):
        raise InputError(
            f"bad session name {name_or_path!r}: use letters, digits, '.', '_' and '-', or a path ending in .json"
        )
    return directory / f"{name_or_path}.json"


def exchanges(count: int) -> str:
    return f"{count} exchange" + ("" if count == 1 else "s")


def session_names(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("*.json"))


def last_session(directory: Path) -> str | None:
    """The most recently written session's name."""
    files = list(directory.glob("*.json")) if directory.is_dir() else []
    return max(files, key=lambda p: p.stat().st_mtime).stem if files else None


def save(path: Path, session: Session) -> None:
    conv = session.conversation
    document = {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": session.model,
        "system": conv.system,
        # The constraint (--schema, --json-mode) is left out on purpose: it is given each time.
        "params": {**_without(asdict(session.params), "constraint"), "stop": list(session.params.stop)},
        "turns": [{k: v for k, v in asdict(t).items() if v is not None} for t in conv.turns],
    }
    write_private(path, _escape_controls(json.dumps(document, ensure_ascii=False, indent=1)) + "\n")


# JSON escapes C0 controls, but not C1 or the bidi overrides: `cat session.json` would replay
# them on a terminal. They occur only inside strings, where \uXXXX spells the same text.
_UNESCAPED_CONTROL = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape_controls(text: str) -> str:
    return _UNESCAPED_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def load(path: Path) -> Session:
    try:
        if path.stat().st_size > MAX_SESSION_BYTES:
            raise InputError(f"{path} is too large to be a session file")
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no session file {path}") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InputError(f"{path} is not a falconchat session file ({type(exc).__name__})") from None
    try:
        return _from_document(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path} is not a falconchat session file ({exc})") from None


def _from_document(doc) -> Session:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError("no falconchat format mark")
    if type(doc.get("version")) is not int or doc.get("version") != VERSION:
        raise ValueError(f"unsupported version {doc.get('version')!r}")
    system, model, turns = doc["system"], doc["model"], doc["turns"]
    _check_text(doc)
    if not isinstance(system, str) or not isinstance(model, str) or not isinstance(turns, list):
        raise TypeError("system, model and turns have the wrong types")
    loaded = []
    for turn in turns:
        if not (
            isinstance(turn, dict)
            and isinstance(turn.get("user"), str)
            and isinstance(turn.get("assistant"), str)
            and turn.get("status") in STATUSES
            and isinstance(turn.get("model", ""), str)
        ):
            raise ValueError("a turn is malformed")
        loaded.append(Turn(turn["user"], turn["assistant"], turn["status"], turn.get("model"), **_attached(turn)))
    return Session(Conversation(system=system, turns=loaded), model, _params(doc.get("params", {})))


def _attached(turn: dict) -> dict:
    """The names of a turn's attached sources and where its words start, when they are sound
    (else none: /history then shows the whole message)."""
    names, words_at = turn.get("attached"), turn.get("words_at")
    if (
        isinstance(names, list)
        and all(isinstance(name, str) for name in names)
        and type(words_at) is int
        and 0 < words_at <= len(turn["user"])
    ):
        return {"attached": tuple(names), "words_at": words_at}
    return {}


def _check_text(value) -> None:
    """Every string must be real text: JSON can spell lone surrogates (\\ud800) that cannot be printed or saved."""
    if isinstance(value, str):
        value.encode("utf-8")  # UnicodeEncodeError is a ValueError
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


def _without(values: dict, key: str) -> dict:
    return {k: v for k, v in values.items() if k != key}


def _params(raw) -> SamplingParams:
    if not isinstance(raw, dict):
        raise TypeError("params is not an object")
    known = {f.name for f in fields(SamplingParams)}
    values = {}
    for key in SAMPLING_KEYS:
        if key in known and raw.get(key) is not None:
            values[key] = parse(key, raw[key], "the session file")  # the same checks as every setting
    return SamplingParams(**values)


def export_markdown(path: Path, conversation: Conversation, model: str) -> None:
    """A document for people: the text as it was shown, without control sequences."""

    model = sanitize(model)
    lines = [f"# Conversation with {model}", ""]
    if conversation.system:
        lines += [f"**System:** {sanitize(conversation.system)}", ""]
    for turn in conversation.turns:
        note = {
            "length": " *(stopped at the length limit)*",
            "cut": " *(cut short)*",
            "error": " *(incomplete: an error ended it)*",
        }.get(turn.status, "")
        wrote = sanitize(turn.model) if turn.model else model  # older sessions: the current model
        lines += ["## You", "", sanitize(turn.user), "", f"## {wrote}{note}", "", sanitize(turn.assistant), ""]
    write_private(path, "\n".join(lines))


def private_dir(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def check_writable(path: Path, sessions_dir: Path) -> None:
    """Refuse, before anything is written, a session path that could never be saved: the
    error names the path the user gave, never the temporary file beside it."""
    parent = path.parent
    if parent == sessions_dir:
        return  # created, private, when the session is first saved
    if not parent.is_dir():
        raise InputError(f"cannot keep a session at {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot keep a session at {path}: {parent} is not writable")
    if path.exists() and not path.is_file():
        raise InputError(f"cannot keep a session at {path}: it is not a file")


def write_private(path: Path, text: str) -> None:
    """Write whole or not at all, readable by the owner only (the directory is the caller's)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
