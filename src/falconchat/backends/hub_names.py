"""Hugging Face Hub model names (`hf:OWNER/REPO[:QUANT]`, `hf:OWNER/REPO/FILE.gguf`, `@REVISION`)
and which of a repository's GGUF files such a name means. Pure: no network, no files."""

from __future__ import annotations

import re
from dataclasses import dataclass

from falconchat.errors import ConfigError

PREFIX = "hf:"
DEFAULT_QUANT = "Q4_K_M"  # what `llama-cli -hf` and the Hub's GGUF manifest pick first
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(r"(?:^|[-_.])(I?Q\d(?:_[A-Z0-9]+)*|B?F16|F32)(?=[-_.]|$)", re.IGNORECASE)
# Among the 4-bit quants, the order llama.cpp's own docs recommend them in.
_FOUR_BIT_ORDER = ["Q4_K_M", "Q4_K_S", "Q4_0", "IQ4_NL", "IQ4_XS", "Q4_1", "Q4_K_L"]


@dataclass(frozen=True)
class HubName:
    repo: str  # OWNER/REPO
    quant: str | None = None  # as typed; matched case-insensitively
    file: str | None = None  # one file exactly
    revision: str | None = None  # a branch, tag or commit; None: main

    def __str__(self) -> str:
        tail = f"/{self.file}" if self.file else f":{self.quant}" if self.quant else ""
        at = f"@{self.revision}" if self.revision else ""
        return f"{PREFIX}{self.repo}{tail}{at}"

    @property
    def page(self) -> str:
        return f"https://huggingface.co/{self.repo}"


def is_hub_name(text: str | None) -> bool:
    return bool(text) and text.strip().lower().startswith(PREFIX)  # type: ignore[union-attr]


def parse_hub_name(text: str) -> HubName:
    """`hf:OWNER/REPO`, `hf:OWNER/REPO:QUANT`, `hf:OWNER/REPO/FILE.gguf`, each with an optional `@REVISION`."""
    body = text.strip()[len(PREFIX) :]
    usage = f"malformed Hub model name {text!r}: use hf:OWNER/REPO, hf:OWNER/REPO:QUANT or hf:OWNER/REPO/FILE.gguf"
    body, at, revision = body.partition("@")
    if at and not revision.strip():
        raise ConfigError(f"{usage} (nothing after @)")
    body, colon, quant = body.partition(":")
    parts = body.split("/")
    if colon and (not quant or len(parts) != 2 or not re.fullmatch(r"[A-Za-z0-9_]+", quant)):
        raise ConfigError(usage)
    if len(parts) == 3 and parts[2].lower().endswith(".gguf") and not colon:
        file = parts[2]
    elif len(parts) == 2:
        file = None
    else:
        raise ConfigError(usage)
    if not all(_PART.match(part) for part in parts[:2]) or (file and not _PART.match(file)):
        raise ConfigError(usage)
    return HubName(repo="/".join(parts[:2]), quant=quant or None, file=file, revision=revision.strip() or None)


def quant_of(filename: str) -> str | None:
    """The quantization a GGUF's file name says (`…-Q4_K_M.gguf`, `….Q8_0.gguf`), upper case."""
    stem = _SPLIT.sub(".gguf", filename.rsplit("/", 1)[-1])
    stem = stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem
    found = _QUANT.findall(stem)
    return found[-1].upper() if found else None


def split_parts(filename: str, files: list[str]) -> list[str]:
    """All the parts of a split GGUF (`…-00001-of-00003.gguf`) in order; a whole file alone."""
    match = _SPLIT.search(filename)
    if not match:
        return [filename]
    total = int(match.group(2))
    head = filename[: match.start()]
    return [f"{head}-{i:05d}-of-{total:05d}.gguf" for i in range(1, total + 1)]


def models_in(files: list[str]) -> list[str]:
    """The GGUF models among a repository's files: a split one by its first part; projectors left out."""
    found = []
    for name in files:
        base = name.rsplit("/", 1)[-1].lower()
        if not base.endswith(".gguf") or "mmproj" in base:
            continue
        match = _SPLIT.search(name)
        if match and int(match.group(1)) != 1:
            continue
        found.append(name)
    return sorted(found)


def choose(name: HubName, files: list[str]) -> tuple[str, str]:
    """(the file to load, why): an exact file, the quant asked for, or Q4_K_M else the closest 4-bit."""
    models = models_in(files)
    if name.file:
        if name.file not in files:
            raise ConfigError(f"{name.repo} has no file {name.file!r}; its GGUF files: {_listed(models)}")
        return name.file, "the file named"
    if not models:
        shown = ", ".join(sorted(files)[:12]) or "no files"
        raise ConfigError(f"{name.repo} holds no GGUF file (it has: {shown})")
    quants = {model: quant_of(model) for model in models}
    if name.quant:
        matching = [m for m in models if (quants[m] or "").lower() == name.quant.lower()]
        if not matching:
            raise ConfigError(f"{name.repo} has no {name.quant.upper()} file; its quants: {_quants(quants)}")
        if len(matching) > 1:
            raise ConfigError(
                f"{name.repo} has several {name.quant.upper()} files ({', '.join(matching)}): name one as {PREFIX}{name.repo}/FILE.gguf"
            )
        return matching[0], f"{quants[matching[0]]}, as asked"
    best = min(models, key=lambda m: (_distance(quants[m]), m))
    quant = quants[best] or "no quant in its name"
    why = "the default" if quant == DEFAULT_QUANT else f"no {DEFAULT_QUANT}: the closest to 4 bits"
    return best, f"{quant}, {why}"


def _distance(quant: str | None) -> tuple[int, int]:
    """How far a quant is from Q4_K_M: by bits, then by llama.cpp's order among the 4-bit ones."""
    if quant is None:
        return (99, 0)
    bits = int(re.search(r"\d+", quant).group())  # type: ignore[union-attr]
    order = _FOUR_BIT_ORDER.index(quant) if quant in _FOUR_BIT_ORDER else len(_FOUR_BIT_ORDER)
    # Above 4 bits is closer than the same distance below it (more faithful, a little larger).
    return (abs(bits - 4) * 2 - (1 if bits > 4 else 0), order)


def _quants(quants: dict[str, str | None]) -> str:
    return ", ".join(sorted({q for q in quants.values() if q})) or "none named"


def _listed(models: list[str]) -> str:
    return ", ".join(models) or "none"
