"""A scripted Hugging Face Hub over real HTTP, for `huggingface_hub`'s own download code (set
HF_ENDPOINT to `hub.url`). It answers what that client asks, as the Hub does:

- `GET /api/models/{owner}/{repo}[/revision/{rev}]` (`?blobs=True`: sizes and LFS oids) ->
  the model's `id`, `sha` and `siblings`;
- `HEAD|GET /{owner}/{repo}/resolve/{rev}/{file}` -> for an LFS file, 302 to the CDN with
  `X-Repo-Commit`, `X-Linked-Etag` (the sha256), `X-Linked-Size` and the pointer's `ETag`; for a
  small file, 200 with `ETag` and `X-Repo-Commit`;
- the CDN (`/cdn/{sha256}` on `localhost`, another host than the API's `127.0.0.1`, as the real
  CDN is: the client drops the token there) serves the bytes and honours `Range: bytes=N-` (206);
- errors as the Hub sends them: 401 + `X-Error-Code: RepoNotFound` for an unknown repository,
  401 + `GatedRepo` for a gated one's files, 404 + `RevisionNotFound` / `EntryNotFound`.

It counts every request (`hub.requests`), can fail the first N API calls with 500, cut the
first N transfers after some bytes, and send slowly."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    files: dict[str, bytes]  # path -> content
    gated_token: str | None = None  # a gated repository: its files need `Authorization: Bearer <this>`
    lfs: set[str] = field(default_factory=set)  # which files are LFS (every .gguf)
    tags: dict[str, str] = field(default_factory=dict)  # a tag -> a commit


@dataclass
class Script:
    api_failures: int = 0  # the first N API calls answer `api_status` (500: the Hub failing; 429: rate-limited)
    api_status: int = 500
    cut_transfers: int = 0  # the first N CDN transfers close after `cut_at` bytes
    cut_at: int = 0
    chunk_delay_s: float = 0.0  # between 64 KiB chunks: a slow transfer
    corrupt: bool = False  # the CDN sends bytes other than the sha256 the Hub announced (same size)


class ScriptedHub:
    def __init__(self, repos: dict[str, Repo], script: Script | None = None):
        self.repos = repos
        self.script = script or Script()
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def blob(self, content: bytes) -> str:
        return hashlib.sha256(content).hexdigest()

    def _handler(self):
        return type("Handler", (_Handler,), {"hub": self})


class _Handler(BaseHTTPRequestHandler):
    hub: ScriptedHub  # set by ScriptedHub for its own server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        with self.hub.lock:
            self.hub.requests.append((self.command, self.path, dict(self.headers)))
        path = unquote(urlsplit(self.path).path)
        if path.startswith("/api/models/"):
            self._api(path[len("/api/models/") :])
        elif path.startswith("/cdn/"):
            self._cdn(path[len("/cdn/") :], head)
        elif "/resolve/" in path:
            self._resolve(path.lstrip("/"), head)
        else:
            self._send(404, b'{"error":"not found"}', {"Content-Type": "application/json"}, head)

    def _api(self, rest: str) -> None:
        with self.hub.lock:
            failing = self.hub.script.api_failures > 0
            self.hub.script.api_failures -= 1 if failing else 0
        if failing:
            status = self.hub.script.api_status
            headers = {"Content-Type": "application/json"} | ({"Retry-After": "1"} if status == 429 else {})
            return self._send(status, b'{"error":"Internal Error"}', headers)
        repo_id, _, revision = rest.partition("/revision/")
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found")
        commit = self._commit(repo, revision or "main")
        if commit is None:
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        siblings = []
        for name, content in sorted(repo.files.items()):
            entry: dict = {"rfilename": name}
            if "blobs=True" in self.path or "blobs=true" in self.path:
                entry["size"] = len(content)
                entry["blobId"] = hashlib.sha1(content).hexdigest()
                if name in repo.lfs:
                    entry["lfs"] = {"sha256": self.hub.blob(content), "size": len(content), "pointerSize": 134}
            siblings.append(entry)
        body = {
            "_id": "0" * 24,
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit,
            "private": False,
            "gated": "auto" if repo.gated_token else False,
            "disabled": False,
            "tags": ["gguf"],
            "siblings": siblings,
        }
        self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _commit(self, repo: Repo, revision: str) -> str | None:
        if revision in ("main", COMMIT):
            return COMMIT
        return repo.tags.get(revision)

    def _resolve(self, rest: str, head: bool) -> None:
        owner, name, _, revision, *parts = rest.split("/")
        repo = self.hub.repos.get(f"{owner}/{name}")
        if repo is None:
            return self._error(401, "RepoNotFound", "Repository not found", head)
        commit = self._commit(repo, revision)
        if commit is None:
            return self._error(404, "RevisionNotFound", "Invalid rev id", head)
        file = "/".join(parts)
        if repo.gated_token and self.headers.get("Authorization") != f"Bearer {repo.gated_token}":
            status = 403 if self.headers.get("Authorization") else 401
            return self._error(status, "GatedRepo", "Access to this model is restricted", head)
        content = repo.files.get(file)
        if content is None:
            return self._error(404, "EntryNotFound", "Entry not found", head, commit)
        headers = {"X-Repo-Commit": commit}
        if file in repo.lfs:
            sha = self.hub.blob(content)
            host = f"localhost:{self.hub.port}"  # the CDN: another host, as the real one
            headers |= {
                "ETag": f'"{hashlib.sha1(sha.encode()).hexdigest()}"',
                "X-Linked-Etag": f'"{sha}"',
                "X-Linked-Size": str(len(content)),
                "Location": f"http://{host}/cdn/{sha}?response-content-disposition=attachment",
            }
            return self._send(302, b"", headers, head)
        headers["ETag"] = f'"{hashlib.sha1(content).hexdigest()}"'
        self._send(200, content, headers, head)

    def _cdn(self, sha: str, head: bool) -> None:
        content = next(
            (c for repo in self.hub.repos.values() for c in repo.files.values() if self.hub.blob(c) == sha), None
        )
        if content is None:
            return self._send(404, b"NoSuchKey", {}, head)
        start = 0
        status = 200
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", "ETag": f'"{sha}"'}
        asked = self.headers.get("Range")
        if asked and asked.startswith("bytes=") and asked.endswith("-"):
            start = int(asked[len("bytes=") : -1])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        body = content[start:]
        if self.hub.script.corrupt:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        with self.hub.lock:
            cutting = not head and self.hub.script.cut_transfers > 0
            self.hub.script.cut_transfers -= 1 if cutting else 0
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if head:
            return
        sent = 0

        for offset in range(0, len(body), 65536):
            chunk = body[offset : offset + 65536]
            if cutting and sent + len(chunk) > self.hub.script.cut_at:
                self.wfile.write(chunk[: max(self.hub.script.cut_at - sent, 0)])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the connection drops half way
                return
            self.wfile.write(chunk)
            sent += len(chunk)
            if self.hub.script.chunk_delay_s:
                time.sleep(self.hub.script.chunk_delay_s)

    def _error(self, status: int, code: str, message: str, head: bool = False, commit: str | None = None):
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers, head)

    def _send(self, status: int, body: bytes, headers: dict[str, str], head: bool = False) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)
