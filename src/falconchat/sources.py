"""Context the user brings into a prompt (`-f/--file`, `--sf`, `/file`): text files, folders,
globs, standard input (`-`) and URLs, each read into named, delimited blocks.

Safe by default: only regular files are opened (never /dev/zero or a FIFO, and opening
never blocks), each source is bounded by `limit` bytes, a binary file named directly is
refused and one inside a folder skipped, invalid UTF-8 is replaced and said, a folder's
symlinked folders are not followed (no loops) and what its `.gitignore` files ignore is
skipped. The text is sanitised: it reaches the model, and may reach a terminal
(`/history`, an export) later. Every failure is one `InputError` line (exit 2).
"""

from __future__ import annotations

import errno
import glob
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from falconchat.config_values import DEFAULT_MAX_FILE_SIZE
from falconchat.environment import Environment
from falconchat.errors import InputError
from falconchat.text import human_size, sanitize
from falconchat.web_source import URL_TIMEOUT_S, fetch

BINARY_SNIFF = 8000  # bytes looked at for a NUL, as git does
GLOB_CHARS = frozenset("*?[")
STDIN = "-"


@dataclass(frozen=True)
class Block:
    """One piece of context: its name (a path as the user wrote it, a URL, `stdin`, a
    command), its text, and the bytes read."""

    name: str
    text: str  # an image's: its data URL
    size: int
    image: bool = False  # -a/--attach, /image: a Markdown image with a data URL (images.py)

    def delimited(self) -> str:
        """The block as the model reads it: fenced by lines that name it; an image as a
        Markdown image (TGI's syntax; the openai backend makes it an image_url part)."""
        if self.image:
            alt = " ".join(self.name.replace("[", "(").replace("]", ")").split())
            return f"![{alt}]({self.text})"
        body = self.text if self.text.endswith("\n") or not self.text else self.text + "\n"
        return f"----- BEGIN {self.name} -----\n{body}----- END {self.name} -----"


@dataclass
class Loaded:
    """What a list of sources gave: the blocks in order, and notes for the user (what was
    skipped, what was replaced) — one line each, already sanitised."""

    blocks: list[Block] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def with_blocks(words: str, blocks: Sequence[Block]) -> str:
    """The blocks, then the user's words: what the model receives as one message."""
    return "\n\n".join([*(block.delimited() for block in blocks), *([words] if words.strip() else [])])


_BLOCK = re.compile(r"----- BEGIN (?P<name>[^\n]+?) -----\n.*?----- END (?P=name) -----", re.S)


def named_only(text: str) -> str:
    """Text with each source block replaced by its name, `[source: notes.md]`: how a message or
    system message that holds sources is shown (`/history`), without dumping their text."""
    return _BLOCK.sub(lambda match: f"[source: {match.group('name')}]", text)


def words_after(message: str, blocks: Sequence[Block]) -> str | None:
    """The user's words in a message that `with_blocks` made of `blocks` and them; None if it
    was not made so."""
    prefix = "\n\n".join(block.delimited() for block in blocks)
    if not blocks:
        return None
    if message == prefix:
        return ""
    return message[len(prefix) + 2 :] if message.startswith(prefix + "\n\n") else None


def system_with_blocks(system: str, blocks: Sequence[Block]) -> str:
    """The system message, then the --sf blocks."""
    return "\n\n".join([*([system] if system.strip() else []), *(block.delimited() for block in blocks)])


def text_of(data: bytes, name: str, notes: list[str]) -> str:
    """Bytes read from a source (a file, a command's output) as sanitised text; invalid
    UTF-8 is replaced, and a note in `notes` says so."""
    loaded = Loaded()
    text = _decoded(data, name, loaded)
    notes.extend(loaded.notes)
    return text


def read_sources(
    specs: Iterable[str], env: Environment, limit: int = DEFAULT_MAX_FILE_SIZE, url_timeout: float | None = None
) -> Loaded:
    """Read each source in order (see the module's docstring); the first that fails raises.
    `url_timeout`: the longest a URL's whole fetch may take (default: web_source's)."""
    loaded = Loaded()
    stdin_read = False
    for spec in specs:
        if spec == STDIN:
            if stdin_read:
                raise InputError("-f -: standard input can be read once")
            stdin_read = True
            loaded.blocks.append(_read_stdin(env, limit, loaded))
        elif spec.startswith(("http://", "https://")):
            page = fetch(spec, limit, url_timeout or URL_TIMEOUT_S)
            loaded.blocks.append(Block(page.url, page.text, page.size))
            loaded.notes.extend(page.notes)
        else:
            _read_path(spec, env, limit, loaded)
    loaded.notes = [sanitize(note) for note in loaded.notes]
    return loaded


# ---- standard input ------------------------------------------------------------------------


def _read_stdin(env: Environment, limit: int, loaded: Loaded) -> Block:
    stdin = env.stdin
    if stdin is None:
        raise InputError("-f -: there is no standard input")
    if stdin.isatty():  # reading would wait for typing: say what `-` is for instead
        raise InputError("-f -: standard input is a terminal; pipe text in (git diff | falconchat ask -f - …)")
    data = stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"-f -: standard input is larger than {human_size(limit)} (--max-file-size)")
    return Block("stdin", _decoded(data, "stdin", loaded), len(data))


# ---- paths: a file, a folder, a glob ---------------------------------------------------------


def _read_path(spec: str, env: Environment, limit: int, loaded: Loaded) -> None:
    path = env.cwd / Path(spec).expanduser()
    try:
        info = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT and GLOB_CHARS & set(spec):
            _read_glob(spec, env, limit, loaded)
            return
        raise InputError(f"cannot read {spec}: {_reason(exc)}") from None
    if stat.S_ISDIR(info.st_mode):
        _read_folder(spec, path, limit, loaded)
        return
    text, size = _read_file(spec, path, limit, loaded)
    loaded.blocks.append(Block(spec, text, size))


def _read_glob(pattern: str, env: Environment, limit: int, loaded: Loaded) -> None:
    matches = sorted(glob.glob(os.path.expanduser(pattern), root_dir=env.cwd, recursive=True))
    files = [m for m in matches if os.path.isfile(env.cwd / m)]
    if not files:
        raise InputError(f"no file matches {pattern}")
    budget, skipped = limit, _Skipped()
    for name in files:
        try:
            text, size = _read_file(name, env.cwd / name, budget, loaded, in_folder=True)
        except _Unfit as unfit:
            skipped.add(unfit.why, name)
            continue
        except _TooLarge:
            raise InputError(
                f"{pattern}: more than {human_size(limit)} of text (--max-file-size, per source); name fewer files"
            ) from None
        budget -= size
        loaded.blocks.append(Block(name, text, size))
    found = len(files) - sum(len(names) for names in skipped.by_why.values())
    if not found:
        raise InputError(f"{pattern}: no readable text files ({skipped.summary()})")
    _report(pattern, skipped, loaded, found=found)


def _read_folder(spec: str, root: Path, limit: int, loaded: Loaded) -> None:
    """Its text files, recursively, in sorted order; hidden entries, what `.gitignore` files
    in it ignore and binary files skipped (and said); symlinked folders not followed."""
    try:  # a folder named directly that cannot be listed is refused as a file would be
        os.scandir(root).close()
    except OSError as exc:
        raise InputError(f"cannot read {spec}: {_reason(exc)}") from None
    budget, skipped, before = limit, _Skipped(), len(loaded.blocks)
    shown = spec.rstrip("/") or "/"
    for relative, path in _folder_entries(root, skipped):
        name = f"{shown}/{relative}" if shown != "." else relative
        try:
            text, size = _read_file(name, path, budget, loaded, in_folder=True)
        except _Unfit as unfit:
            skipped.add(unfit.why, relative)
            continue
        except _TooLarge:
            raise InputError(
                f"{spec}: more than {human_size(limit)} of text (--max-file-size, per source); "
                "name fewer files or a glob"
            ) from None
        budget -= size
        loaded.blocks.append(Block(name, text, size))
    if len(loaded.blocks) == before:
        detail = skipped.summary()
        raise InputError(f"{spec}: no readable text files" + (f" ({detail})" if detail else ""))
    _report(spec, skipped, loaded, found=len(loaded.blocks) - before)


class _Ignores:
    """The rules of the `.gitignore` files met so far on the way down a folder."""

    def __init__(self) -> None:
        self.rules: list[tuple[str, object]] = []  # (the folder it is in, relative; its GitIgnoreSpec)

    def enter(self, here: str, folder: str, skipped: _Skipped) -> None:
        self.rules[:] = [(b, r) for b, r in self.rules if not b or here == b or here.startswith(b + "/")]
        gitignore = Path(folder) / ".gitignore"
        if not gitignore.is_file():
            return
        import pathspec  # noqa: PLC0415 (only a folder with a .gitignore needs it)

        try:
            lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            skipped.add("unreadable", f"{here}/.gitignore".lstrip("/"))
            return
        self.rules.append((here, pathspec.GitIgnoreSpec.from_lines(lines)))

    def ignore(self, relative: str, is_dir: bool) -> bool:
        for base, rules in reversed(self.rules):  # the deepest .gitignore that has a say decides
            if base and not relative.startswith(base + "/"):
                continue
            inner = relative[len(base) + 1 :] if base else relative
            result = rules.check_file(inner + ("/" if is_dir else ""))  # type: ignore[attr-defined]
            if result.include is not None:
                return result.include
        return False


def _folder_entries(root: Path, skipped: _Skipped) -> Iterable[tuple[str, Path]]:
    ignores = _Ignores()

    def walk_error(exc: OSError) -> None:  # a subfolder that cannot be listed: named as the others
        skipped.add("unreadable", os.path.relpath(exc.filename or "?", root) + "/")

    def why_not(folder: str, name: str, relative: str, is_dir: bool) -> str | None:
        if name.startswith("."):
            return "hidden"
        if is_dir and os.path.islink(os.path.join(folder, name)):
            return "symlinked folders"
        if ignores.ignore(relative, is_dir):
            return "ignored by .gitignore"
        return None

    for folder, dirs, files in os.walk(root, onerror=walk_error, followlinks=False):
        here = Path(folder).relative_to(root).as_posix()
        here = "" if here == "." else here
        ignores.enter(here, folder, skipped)
        keep_dirs = []
        for name in sorted(dirs):
            relative = f"{here}/{name}" if here else name
            why = why_not(folder, name, relative, True)
            if why:
                skipped.add(why, relative + "/")
            else:
                keep_dirs.append(name)
        dirs[:] = keep_dirs  # os.walk goes into these alone, in sorted order
        for name in sorted(files):
            relative = f"{here}/{name}" if here else name
            why = why_not(folder, name, relative, False)
            if why:
                skipped.add(why, relative)
            else:
                yield relative, Path(folder) / name


# ---- one file --------------------------------------------------------------------------------


class _Unfit(Exception):
    """A file a folder or glob skips (binary, not a regular file, unreadable), with why."""

    def __init__(self, why: str):
        self.why = why


class _TooLarge(Exception):
    pass


_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _read_file(name: str, path: Path, limit: int, loaded: Loaded, in_folder: bool = False) -> tuple[str, int]:
    """A regular text file's text (see `read_bytes`); a binary one is refused (skipped in a folder)."""
    data = read_bytes(name, path, limit, in_folder, text=True)
    return _decoded(data, name, loaded), len(data)


def read_bytes(name: str, path: Path, limit: int, in_folder: bool = False, text: bool = False) -> bytes:
    """A regular file's bytes, up to `limit`. Opened without blocking (a FIFO swapped in after
    a stat cannot hang us), checked on the open descriptor, read up to `limit` + 1 bytes.
    `text`: a binary file (a NUL in its first bytes) is refused, whatever its size, before the
    rest is read (a folder's 50 MB video is skipped as binary, not counted against the limit)."""

    def refuse(why: str, short: str) -> Exception:
        return _Unfit(short) if in_folder else InputError(f"cannot read {name}: {why}")

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise refuse(_reason(exc), "unreadable") from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = next((what for test, what in _KINDS if test(info.st_mode)), "not a regular file")
            raise refuse(f"it is {kind}, not a regular file", "not regular files")
        try:
            head = fh.read(BINARY_SNIFF) if text else b""
        except OSError as exc:
            raise refuse(_reason(exc), "unreadable") from None
        if b"\0" in head:
            raise refuse("it is a binary file (images go with -a/--attach)", "binary")
        if info.st_size > limit:
            if in_folder:
                raise _TooLarge
            raise InputError(
                f"cannot read {name}: it is {human_size(info.st_size)}, over --max-file-size {human_size(limit)}"
            )
        try:
            data = head + fh.read(limit + 1 - len(head))
        except OSError as exc:
            raise refuse(_reason(exc), "unreadable") from None
    if len(data) > limit:  # it grew while we read
        if in_folder:
            raise _TooLarge
        raise InputError(f"cannot read {name}: it is over --max-file-size {human_size(limit)}")
    return data


def _decoded(data: bytes, name: str, loaded: Loaded) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        loaded.notes.append(f"{name}: not valid UTF-8; the invalid bytes were replaced with �")
    return sanitize(text.removeprefix("\ufeff"))


def _reason(exc: OSError) -> str:
    return {
        errno.ENOENT: "no such file or folder",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ELOOP: "a symlink loop",
        errno.ENXIO: "it is not a regular file",
        errno.ENAMETOOLONG: "the name is too long",
    }.get(exc.errno or 0, exc.strerror or str(exc))


# ---- what was skipped --------------------------------------------------------------------------


class _Skipped:
    def __init__(self) -> None:
        self.by_why: dict[str, list[str]] = {}

    def add(self, why: str, name: str) -> None:
        self.by_why.setdefault(why, []).append(name)

    def summary(self) -> str:
        parts = []
        for why, names in self.by_why.items():
            names = sorted(names)  # a folder's entries are met parent's files first, then subfolders
            shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
            parts.append(f"{len(names)} {why} ({shown})")
        return "; ".join(parts)


def _report(spec: str, skipped: _Skipped, loaded: Loaded, found: int) -> None:
    detail = skipped.summary()
    if detail:
        loaded.notes.append(f"{spec}: {found} file{'s' if found != 1 else ''} read; skipped {detail}")
