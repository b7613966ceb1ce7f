"""Models from the Hugging Face Hub, through the Hub's own client and its cache (HF_HOME,
HF_HUB_CACHE, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE are read by `huggingface_hub` itself,
so a model pulled by any Hugging Face tool is found here, and one pulled here is theirs too).

Running a model never touches the network: `cached_model` looks in the cache alone. Only `pull`
(`falconchat models pull`, or `--pull`) asks the Hub."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from falconchat.backends.gguf import is_gguf
from falconchat.backends.hub_names import HubName, choose, is_hub_name, parse_hub_name, split_parts
from falconchat.errors import AuthRejected, ConfigError, EndpointError, Overloaded, Unreachable

__all__ = [
    "HubName",
    "NotPulled",
    "Plan",
    "cached_model",
    "find_cached",
    "is_hub_name",
    "parse_hub_name",
    "plan",
    "pull",
]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
RETRIES = 3  # a 429 or 5xx from the Hub: tried again after 1 s, then 2 s


class NotPulled(ConfigError):
    """A Hub model that is not in the cache, where nothing may download it."""

    kind = "not_pulled"


@dataclass(frozen=True)
class HubFile:
    name: str
    size: int | None
    sha256: str | None  # what the Hub says the file's content hashes to (its LFS oid)


@dataclass(frozen=True)
class Plan:
    """What `pull` will fetch: the chosen model's file (all its parts) and why it was chosen."""

    name: HubName
    files: tuple[HubFile, ...]
    why: str
    token: str | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def file(self) -> str:
        return self.files[0].name


# Progress: (file, bytes done, bytes in all), called from a watcher thread while a file downloads.
Progress = Callable[[str, int, int | None], None]


def cache_dir() -> Path:
    from huggingface_hub import constants  # noqa: PLC0415 (heavy: huggingface_hub)

    return Path(constants.HF_HUB_CACHE)


def _repo_dir(repo: str) -> Path:
    return cache_dir() / ("models--" + repo.replace("/", "--"))


def find_cached(name: HubName) -> Path | None:
    """The model's file in the cache (the first part of a split one), or None; no network."""
    from huggingface_hub import try_to_load_from_cache  # noqa: PLC0415 (heavy: huggingface_hub)

    revision = name.revision or "main"
    repo_dir = _repo_dir(name.repo)
    commit = revision if _COMMIT.match(revision) else _read_ref(repo_dir, revision)
    snapshot = repo_dir / "snapshots" / commit if commit else None
    if snapshot is None or not snapshot.is_dir():
        return None
    files = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
    try:
        chosen, _ = choose(name, files)
    except ConfigError:
        return None
    for part in split_parts(chosen, files):
        found = try_to_load_from_cache(name.repo, part, cache_dir=str(cache_dir()), revision=commit)
        if not isinstance(found, str):
            return None
    return snapshot / chosen


def _read_ref(repo_dir: Path, revision: str) -> str | None:
    try:
        return (repo_dir / "refs" / revision).read_text().strip() or None
    except OSError:
        return None


def cached_model(text: str) -> Path:
    """What a local backend loads for `hf:…`: the cached file, or NotPulled naming the command."""
    name = parse_hub_name(text)
    found = find_cached(name)
    if found is None:
        raise NotPulled(
            f"{name} is not downloaded: run `falconchat models pull {name}` (ask, batch and chat take --pull)"
        )
    return found


def plan(name: HubName, token: str | None = None) -> Plan:
    """Ask the Hub for the repository's files and choose the one to pull. `token`: None, the
    Hub client's own (HF_TOKEN, or the login `hf auth login` stored)."""
    from huggingface_hub import HfApi  # noqa: PLC0415 (heavy: huggingface_hub)

    with hub_errors(name):
        info = _retrying(lambda: HfApi(token=token).model_info(name.repo, revision=name.revision, files_metadata=True))
    siblings = {s.rfilename: s for s in info.siblings or []}
    chosen, why = choose(name, list(siblings))
    parts = split_parts(chosen, list(siblings))
    missing = [p for p in parts if p not in siblings]
    if missing:
        raise ConfigError(f"{name.repo}: the split model {chosen} lacks {', '.join(missing)}")
    files = []
    for part in parts:
        sibling = siblings[part]
        lfs = sibling.lfs
        files.append(
            HubFile(
                name=part,
                size=(lfs.size if lfs else sibling.size),
                sha256=(lfs.sha256 if lfs and _SHA256.match(lfs.sha256 or "") else None),
            )
        )
    return Plan(name=name, files=tuple(files), why=why, token=token)


def pull(plan: Plan, progress: Progress | None = None) -> Path:
    """Download the plan's files into the cache (resuming a `.incomplete` one), check each
    against the sha256 the Hub gave, and return the model's path. A file in the cache is whole
    and verified, or absent: the Hub client writes to `.incomplete` and renames when done."""
    from huggingface_hub import hf_hub_download  # noqa: PLC0415 (heavy: huggingface_hub)
    from huggingface_hub.utils import disable_progress_bars  # noqa: PLC0415 (heavy: huggingface_hub)

    disable_progress_bars()  # ours is drawn by the caller
    check_free_space(plan)
    name = plan.name
    first: Path | None = None
    for file in plan.files:
        with hub_errors(name), _watching(name.repo, file, progress):
            path = Path(
                _retrying(
                    functools.partial(
                        hf_hub_download, name.repo, file.name, revision=name.revision or "main", token=plan.token
                    )
                )
            )
        _verify(path, file)
        if first is None and not is_gguf(path):  # a split model's later parts have no header of their own
            _remove(path)
            raise ConfigError(f"{name.repo}/{file.name} is not a GGUF file; removed it from the cache")
        first = first or path
    assert first is not None  # a plan has at least one file
    return first


def check_free_space(plan: Plan) -> None:
    """Refuse before starting when the disk cannot hold what is left to download."""
    blobs = _repo_dir(plan.name.repo) / "blobs"
    needed = 0
    for file in plan.files:
        if file.sha256 and (blobs / file.sha256).is_file():
            continue  # already whole
        partial = blobs / f"{file.sha256}.incomplete" if file.sha256 else None
        have = partial.stat().st_size if partial and partial.is_file() else 0
        needed += max((file.size or 0) - have, 0)
    where = cache_dir()
    existing = next(p for p in [where, *where.parents] if p.exists())
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise ConfigError(f"{plan.file} needs {_mb(needed)} and {where} has {_mb(free)} free")


def _verify(path: Path, file: HubFile) -> None:
    if not file.sha256:
        return
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != file.sha256:
        _remove(path)
        raise EndpointError(f"{file.name} did not match the sha256 the Hub gave; removed it: pull again")


def _remove(path: Path) -> None:
    blob = path.resolve()
    path.unlink(missing_ok=True)  # the snapshot's link, then the blob: nothing corrupt stays
    blob.unlink(missing_ok=True)


@contextlib.contextmanager
def _watching(repo: str, file: HubFile, progress: Progress | None) -> Iterator[None]:
    """Report the size of the growing `.incomplete` blob while the Hub client downloads."""
    if progress is None:
        yield
        return
    blobs = _repo_dir(repo) / "blobs"
    done = threading.Event()

    def size_now() -> int:
        candidates = [blobs / f"{file.sha256}.incomplete"] if file.sha256 else list(blobs.glob("*.incomplete"))
        return max((p.stat().st_size for p in candidates if p.is_file()), default=0)

    def watch() -> None:
        while not done.wait(0.2):
            with contextlib.suppress(OSError):
                progress(file.name, size_now(), file.size)

    watcher = threading.Thread(target=watch, name="hub-progress", daemon=True)
    watcher.start()
    try:
        yield
        progress(file.name, file.size or 0, file.size)
    finally:
        done.set()
        watcher.join()


def _retrying(call: Callable[[], object]):  # -> the call's result
    """A 429 or 5xx from the Hub is tried again (1 s, then 2 s) before it becomes an error."""
    from huggingface_hub.errors import HfHubHTTPError  # noqa: PLC0415 (heavy: huggingface_hub)

    for attempt in range(RETRIES):
        try:
            return call()
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if attempt == RETRIES - 1 or not (status == 429 or status >= 500):
                raise
        time.sleep(2**attempt)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def hub_errors(name: HubName) -> Iterator[None]:
    """The Hub client's exceptions as one-line errors; no server text or token is repeated."""
    import requests  # noqa: PLC0415 (heavy: requests)
    from huggingface_hub import constants  # noqa: PLC0415 (heavy: huggingface_hub)
    from huggingface_hub.errors import (  # noqa: PLC0415 (heavy: huggingface_hub)
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    token_hint = "set HF_TOKEN to a token from https://huggingface.co/settings/tokens"
    try:
        yield
    except GatedRepoError:
        raise AuthRejected(f"{name.repo} is gated: accept its licence at {name.page}, then {token_hint}") from None
    except RepositoryNotFoundError as exc:
        status = exc.response.status_code if exc.response is not None else 404
        code = exc.response.headers.get("X-Error-Code") if exc.response is not None else None
        if status in (401, 403) and code != "RepoNotFound":  # the Hub says 401 for a missing repository too
            raise AuthRejected(f"the Hub refused {name.repo} ({status}): see {name.page}; {token_hint}") from None
        raise ConfigError(f"no repository {name.repo} on the Hub (a private one needs HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise ConfigError(f"{name.repo} has no revision {name.revision!r}") from None
    except LocalEntryNotFoundError:  # the Hub went away between the file list and the file
        raise Unreachable(f"lost the connection to the Hub at {constants.ENDPOINT}: pull again") from None
    except EntryNotFoundError:
        raise ConfigError(f"{name.repo} has no such file at {name.revision or 'main'}") from None
    except OfflineModeIsEnabled:
        raise Unreachable(f"HF_HUB_OFFLINE is set: cannot pull {name}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise AuthRejected(f"the Hub refused {name.repo} ({status}): see {name.page}; {token_hint}") from None
        if status == 429:
            raise Overloaded(f"the Hub is rate-limiting requests (429) after {RETRIES} tries: try later") from None
        raise EndpointError(f"the Hub answered {status} for {name} after {RETRIES} tries") from None
    except requests.RequestException:  # refused, timed out, or cut half way (ChunkedEncodingError)
        raise Unreachable(
            f"the Hub at {constants.ENDPOINT} could not be reached or cut the connection: pull again to resume"
        ) from None
    except OSError as exc:  # the cache: read-only, full; a transfer that came up short
        reason = exc.strerror or "the transfer came up short (pull again to resume)"
        raise ConfigError(f"cannot write {name} into {cache_dir()}: {reason}") from None


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"
