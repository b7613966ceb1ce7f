"""The GGUF models in the Hub's cache: listing them (`falconchat models`) and removing one
(`models rm`). No network: `huggingface_hub.scan_cache_dir` and the files themselves."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from falconchat.backends.hub import cache_dir, find_cached
from falconchat.backends.hub_names import HubName, models_in, quant_of, split_parts


@dataclass(frozen=True)
class CachedModel:
    name: str  # hf:OWNER/REPO/FILE.gguf: names exactly this file
    repo: str
    file: str
    path: Path  # the snapshot's link (the first part of a split model)
    parts: tuple[Path, ...]
    quant: str | None

    @property
    def size(self) -> int:
        return sum(part.stat().st_size for part in self.parts if part.exists())


def cached_models() -> list[CachedModel]:
    """Every whole GGUF model in the cache, once per file (the newest revision that holds it)."""
    from huggingface_hub import scan_cache_dir  # noqa: PLC0415 (heavy: huggingface_hub)
    from huggingface_hub.errors import CacheNotFound  # noqa: PLC0415 (heavy: huggingface_hub)

    try:
        info = scan_cache_dir(cache_dir())
    except CacheNotFound:
        return []
    found: dict[tuple[str, str], CachedModel] = {}
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            files = {f.file_path.relative_to(revision.snapshot_path).as_posix(): f.file_path for f in revision.files}
            for file in models_in(list(files)):
                parts = split_parts(file, list(files))
                if (repo.repo_id, file) in found or not all(p in files for p in parts):
                    continue
                found[(repo.repo_id, file)] = CachedModel(
                    name=f"hf:{repo.repo_id}/{file}",
                    repo=repo.repo_id,
                    file=file,
                    path=files[file],
                    parts=tuple(files[p] for p in parts),
                    quant=quant_of(file),
                )
    return list(found.values())


def locate(name: HubName) -> CachedModel | None:
    """The cached model a name means (as `-m` would load it), or None."""
    path = find_cached(name)
    if path is None:
        return None
    return next((m for m in cached_models() if m.repo == name.repo and m.path == path), None) or _by_path(name, path)


def _by_path(name: HubName, path: Path) -> CachedModel:
    snapshot = _snapshot_of(path)
    files = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    file = path.relative_to(snapshot).as_posix()
    parts = tuple(snapshot / p for p in split_parts(file, files))
    return CachedModel(f"hf:{name.repo}/{file}", name.repo, file, path, parts, quant_of(file))


def _snapshot_of(path: Path) -> Path:
    return next(p for p in path.parents if p.parent.name == "snapshots")


def remove(model: CachedModel) -> int:
    """Delete the model's files (their blobs and every snapshot link to them); the repository's
    folder goes too when nothing is left in it. Returns the bytes freed."""
    repo_dir = _snapshot_of(model.path).parent.parent  # …/models--O--R/snapshots/<commit>/FILE
    blobs = {part.resolve() for part in model.parts}
    freed = sum(blob.stat().st_size for blob in blobs if blob.exists())
    for link in (repo_dir / "snapshots").rglob("*"):
        if link.is_symlink() and link.resolve() in blobs:
            link.unlink()
    for blob in blobs:
        blob.unlink(missing_ok=True)
    if not any(p.is_file() for p in (repo_dir / "snapshots").rglob("*")):
        shutil.rmtree(repo_dir, ignore_errors=True)
    return freed
