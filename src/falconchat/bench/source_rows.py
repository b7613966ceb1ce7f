"""The `-f` row: `ask -f` of a 200 KB source tree against the same text piped on stdin, time to
the first byte of the reply, both against one local endpoint that answers at once in TGI's
wire format (so the figures are what falconchat adds: reading, checking and counting the
sources, not a model's prefill, which is the same for both)."""

from __future__ import annotations

import json
import shlex
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from falconchat.bench import probes
from falconchat.bench.stats import Row, median, p95

TREE_BYTES = 200 * 1024
QUESTION = "What does this package do?"


def rows(bench) -> list[Row]:
    tree = _source_tree(bench.home / "tree")
    joined = bench.home / "tree.txt"
    joined.write_bytes(b"".join(path.read_bytes() for path in sorted(tree.rglob("*.py"))))
    server = _endpoint()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    ask = [*bench.falconchat, "ask", "--no-log", "--endpoint", url, "--max-file-size", "1M"]
    try:
        bench.say("ask -f a 200 KB tree, and the same text piped, in turns")
        with_files, piped = [], []
        piped_command = ["bash", "-c", f"cat {shlex.quote(str(joined))} | " + shlex.join([*ask, QUESTION])]
        for _ in range(bench.work.reps + (1 if bench.work.warm_up else 0)):
            piped.append(probes.first_byte_s(piped_command, bench.env, "falconchat"))
            with_files.append(probes.first_byte_s([*ask, "-f", str(tree), QUESTION], bench.env))
        if bench.work.warm_up:
            with_files, piped = with_files[1:], piped[1:]
    finally:
        server.shutdown()
        server.server_close()
    return [
        Row(
            "ask -f 200 KB tree: first byte",
            median(with_files),
            "s",
            "the same text piped",
            median(piped),
            "≤ 1.1×",
            p95(with_files),
        )
    ]


def _source_tree(root: Path) -> Path:
    """About 200 KB of Python in 50 files over 5 folders (made here: nothing is shipped)."""
    body = "".join(f"def step_{i}(value):\n    return value * {i} + {i % 7}  # step {i}\n\n" for i in range(60))
    per_file = TREE_BYTES // 50
    for index in range(50):
        path = root / f"pkg{index % 5}" / f"module_{index:02d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = f'"""Module {index}."""\n\n' + body
        path.write_text((text * (per_file // len(text) + 1))[:per_file])
    return root


def _endpoint() -> ThreadingHTTPServer:
    """GET /info (a context large enough for the tree) and a generate stream of one token."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"model_id": "bench/tgi", "max_total_tokens": 1_000_000}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            token = {"id": 1, "text": " Ok", "logprob": -0.1, "special": False}
            details = {"finish_reason": "eos_token", "generated_tokens": 1, "seed": None}
            event = b"data:" + json.dumps({"token": token, "generated_text": " Ok", "details": details}).encode()
            data = event + b"\n\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
