"""The `-f` row: `ask -f` of a 200 KB source tree against the same text piped on stdin, time to
the first byte of the reply, both against one local endpoint that answers at once in TGI's
wire format (so the figures are what falconchat adds: reading, checking and counting the
sources, not a model's prefill, which is the same for both).

Fair by construction: the piped text is exactly the message `-f` makes (the tree's blocks, then
the question), written into a real pipe as the process reads it, so both send the same prompt
(checked: the endpoint keeps every prompt it was sent); the two are alternated, each pair in
turn order swapped, and the ratio is the median of the pairs' ratios."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from falconchat.bench import probes
from falconchat.bench.stats import Row, median, p95
from falconchat.environment import Environment
from falconchat.sources import read_sources, with_blocks

TREE_BYTES = 200 * 1024
QUESTION = "What does this package do?"
MAX_FILE_SIZE = 1024 * 1024  # ask's --max-file-size 1M


def rows(bench) -> list[Row]:
    tree = _source_tree(bench.home / "tree")
    blocks = read_sources([str(tree)], Environment(None, io.StringIO(), io.StringIO(), {}, bench.home), MAX_FILE_SIZE)
    message = with_blocks(QUESTION, blocks.blocks).encode()  # what -f sends: the same, piped
    server, prompts = _endpoint()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    ask = [*bench.falconchat, "ask", "--no-log", "--endpoint", url, "--max-file-size", "1M"]

    def with_files() -> float:
        return probes.first_byte_s([*ask, "-f", str(tree), QUESTION], bench.env)

    def piped() -> float:
        return probes.first_byte_s(ask, bench.env, stdin=message)

    try:
        bench.say(f"ask -f a 200 KB tree, and the same text piped, alternated ({bench.work.source_pairs} pairs)")
        if bench.work.warm_up:
            with_files()
            piped()
        pairs = []
        for index in range(bench.work.source_pairs):
            if index % 2:
                first = with_files()
                pairs.append((first, piped()))
            else:
                first = piped()
                pairs.append((with_files(), first))
    finally:
        server.shutdown()
        server.server_close()
    if len(set(prompts)) != 1:
        raise RuntimeError(f"ask -f and the piped text sent {len(set(prompts))} different prompts, not one")
    files_s, piped_s = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    return [
        Row(
            "ask -f 200 KB tree: first byte",
            median(files_s),
            "s",
            "the same text piped",
            median(piped_s),
            "≤ 1.1×",
            p95(files_s),
            pair_ratio=median([a / b for a, b in pairs]),
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


def _endpoint() -> tuple[ThreadingHTTPServer, list[str]]:
    """GET /info (a context large enough for the tree) and a generate stream of one token; the
    list gets each prompt (`inputs`) it was sent."""
    prompts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"model_id": "bench/tgi", "max_total_tokens": 1_000_000}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            prompts.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))["inputs"])
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
    return server, prompts
