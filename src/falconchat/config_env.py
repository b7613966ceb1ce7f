"""Environment variables and `.env` files: read them, and warn about what would otherwise be
silently ignored (a misspelt `FALCONCHAT_*` name, a line python-dotenv cannot parse)."""

from __future__ import annotations

import difflib
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from falconchat.config_values import SETTINGS
from falconchat.errors import ConfigError
from falconchat.text import sanitize

PREFIX = "FALCONCHAT_"
# Read by load_settings itself, not through SETTINGS.
EXTRA_NAMES = ("FALCONCHAT_ENV_FILE", "FALCONCHAT_CONFIG")


def known_names() -> list[str]:
    return [var for env_names, _, _ in SETTINGS.values() for var in env_names] + list(EXTRA_NAMES)


def unknown_name_warnings(names: Iterable[str], where: str, also_known: Iterable[str] = ()) -> list[str]:
    """One line per `FALCONCHAT_*` name that is no setting, with the closest known name.
    `also_known`: names the config file uses (a model's `api_key_env`)."""
    known = known_names()
    allowed = set(known) | set(also_known)
    lines = []
    for name in sorted(n for n in names if n.upper().startswith(PREFIX) and n not in allowed):
        close = closest(name.upper(), known)
        hint = f"; did you mean {close}?" if close else ""
        lines.append(f"warning: {sanitize(name)} ({where}) is not a falconchat setting, ignored{hint}")
    return lines


def closest(name: str, known: list[str]) -> str | None:
    """A known name the typed one abbreviates (TEMP: TEMPERATURE), else difflib's closest."""
    prefixed = sorted((k for k in known if k.startswith(name)), key=len)
    if prefixed:
        return prefixed[0]
    # Compared without the shared prefix, which would make every name look close.
    tails = {k.removeprefix(PREFIX): k for k in known}
    close = difflib.get_close_matches(name.removeprefix(PREFIX), list(tails), n=1, cutoff=0.6)
    return tails[close[0]] if close else None


def read_one(path: Path) -> tuple[dict[str, str], list[str]]:
    """One .env file's values, and a warning naming the file and line for each line that
    cannot be parsed (python-dotenv would skip it with a log line that names neither)."""
    from dotenv import dotenv_values  # noqa: PLC0415 (heavy: dotenv)
    from dotenv.parser import parse_stream  # noqa: PLC0415 (heavy: dotenv)

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read env file {path}: {exc}") from None
    warnings = []
    good = []
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            first = sanitize(binding.original.string.strip().splitlines()[0] if binding.original.string.strip() else "")
            shown = first if len(first) <= 40 else first[:40] + "…"
            warnings.append(f"warning: {path}, line {binding.original.line}: cannot parse {shown!r}, ignored")
        else:
            good.append(binding.original.string)
    values = dotenv_values(stream=io.StringIO("".join(good)))
    merged = {k: v for k, v in values.items() if v is not None}
    return merged, warnings


class DotEnv(NamedTuple):
    values: dict[str, str]
    warnings: list[str]  # lines that could not be parsed
    files: list[tuple[Path, list[str]]]  # each file read, and the names it set

    def name_warnings(self, also_known: Iterable[str]) -> list[str]:
        return [line for path, names in self.files for line in unknown_name_warnings(names, f"in {path}", also_known)]


def read_dotenv(env_file: str | None, cwd: Path, config_dir: Path) -> DotEnv:
    """`--env-file`, else the current directory's `.env` over the user config dir's.
    Never a parent directory's: only these exact paths are read."""
    if env_file:
        paths = [cwd / env_file]  # relative: from the command's directory
        if not paths[0].is_file():
            raise ConfigError(f"env file not found: {env_file}")
    else:
        paths = [p for p in (cwd / ".env", config_dir / ".env") if p.is_file()]
    merged: dict[str, str] = {}
    warnings: list[str] = []
    files: list[tuple[Path, list[str]]] = []
    for path in reversed(paths):  # earlier paths win
        values, found = read_one(path)
        merged.update(values)
        warnings = found + warnings
        files.insert(0, (path, list(values)))
    return DotEnv(merged, warnings, files)


def model_key_names(toml: Mapping[str, Any]) -> list[str]:
    models = toml.get("models")
    if not isinstance(models, dict):
        return []
    return [str(m["api_key_env"]) for m in models.values() if isinstance(m, dict) and "api_key_env" in m]
