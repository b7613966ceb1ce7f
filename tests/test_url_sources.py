"""`-f URL`: a page fetched from a local HTTP server started here (real sockets, urllib on our
side): HTML becomes readable text, a redirect chain names the final URL, and a 404, a
redirect loop, a huge body and a server that never answers are each one line (exit 2) within
the timeout, never a hang."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from falconchat.errors import InputError
from falconchat.web_source import fetch
from processes import falconchat, isolated_env, one_error_line

PAGE = b"""<!doctype html><html><head><title>Release notes</title>
<style>body { color: red }</style><script>document.write("tracking")</script></head>
<body><h1>Version 2</h1><p>Faster <b>start-up</b> and <code>-f</code> sources.</p>
<ul><li>files</li><li>folders</li></ul><pre>falconchat ask -f notes.md "hi"
</pre></body></html>"""
PAGE_TEXT = (
    "Title: Release notes\n\n# Version 2\n\nFaster start-up and `-f` sources.\n\n- files\n- folders\n\n"
    '```\nfalconchat ask -f notes.md "hi"\n```'
)


class Site(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.visits.append(self.path)  # type: ignore[attr-defined]
        if self.path == "/page":
            self.answer(200, PAGE, "text/html; charset=utf-8")
        elif self.path.startswith("/hop/"):
            hops = int(self.path.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", "/page" if hops == 0 else f"/hop/{hops - 1}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/loop":
            self.send_response(301)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/huge":  # 50 MB, no Content-Length: the cap must stop the reading
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            try:
                for _ in range(50 * 16):
                    self.wfile.write(b"x" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/slow":
            time.sleep(20)
        elif self.path == "/image":
            self.answer(200, b"\x89PNG\r\n\x1a\n", "image/png")
        else:
            self.answer(404, b"not here", "text/plain")

    def answer(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def site_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Site)
    server.daemon_threads = True
    server.visits = []  # type: ignore[attr-defined]  # every path asked for, in order
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(site_server):
    return f"http://127.0.0.1:{site_server.server_address[1]}"


def test_html_becomes_readable_text(site):
    page = fetch(f"{site}/page", 1024 * 1024)
    assert page.text == PAGE_TEXT
    assert page.url == f"{site}/page" and page.notes == []


def test_a_redirect_chain_names_the_final_url(site):
    page = fetch(f"{site}/hop/3", 1024 * 1024)
    assert page.url == f"{site}/page" and page.text == PAGE_TEXT
    assert page.notes == [f"{site}/hop/3 was redirected to {site}/page"]


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("/missing", "cannot fetch {site}/missing: HTTP 404 Not Found"),
        ("/loop", "cannot fetch {site}/loop: more than 5 redirects"),
        ("/hop/9", "cannot fetch {site}/hop/9: more than 5 redirects"),
        ("/huge", "cannot use {site}/huge: it is over --max-file-size 1 MB"),
        ("/slow", "cannot fetch {site}/slow: no answer within 1 s"),
        ("/image", "cannot use {site}/image: it is image/png, not text"),
    ],
)
def test_a_url_that_cannot_be_used_is_one_line_within_the_timeout(site, path, said):
    started = time.monotonic()
    with pytest.raises(InputError) as raised:
        fetch(site + path, 1024 * 1024, timeout=1)
    assert raised.value.message == said.format(site=site)
    assert time.monotonic() - started < 15  # the slow page holds its answer for 20 s


def test_a_closed_port_is_one_line(closed_port_url):
    with pytest.raises(InputError, match=r"^cannot fetch http://127\.0\.0\.1:\d+/x: .*refused"):
        fetch(closed_port_url + "/x", 1000, timeout=2)


@pytest.mark.process
def test_ask_f_url_puts_the_page_before_the_prompt(site, tgi_endpoint, tmp_path):
    tgi_endpoint.stream([" Two."], "eos_token")
    done = falconchat("ask", "--no-log", "--endpoint", tgi_endpoint.url, "-f", f"{site}/hop/1", "which version?",
                      cwd=tmp_path, env=isolated_env(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert f"{site}/hop/1 was redirected to {site}/page" in done.stderr.decode()
    [request] = tgi_endpoint.requests
    assert request.body["inputs"] == (
        f"User: ----- BEGIN {site}/page -----\n{PAGE_TEXT}\n----- END {site}/page -----\n\nwhich version?\nAssistant:"
    )


@pytest.mark.process
def test_ask_f_slow_url_ends_within_the_timeout_with_one_line(site, tgi_endpoint, tmp_path):
    done = falconchat("ask", "--no-log", "--endpoint", tgi_endpoint.url, "--timeout", "1", "-f", f"{site}/slow",
                      "x", cwd=tmp_path, env=isolated_env(tmp_path), timeout=15)  # fmt: skip
    assert done.returncode == 2
    assert one_error_line(done.stderr) == f"falconchat: error: cannot fetch {site}/slow: no answer within 1 s"
    assert tgi_endpoint.requests == []


@pytest.mark.process
def test_a_url_the_model_writes_is_never_fetched(site, site_server, tgi_endpoint, tmp_path):
    """Only a URL the user names is fetched: the model's reply names two (bare and as a Markdown
    link), in `ask` (logged) and in a piped chat whose next message follows it; the site sees none."""
    written = [" See", f" {site}/page", " and", f" [the notes]({site}/hop/1)."]
    tgi_endpoint.stream(written, "eos_token")
    done = falconchat("ask", "--endpoint", tgi_endpoint.url, "where are the notes?",
                      cwd=tmp_path, env=isolated_env(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert f"{site}/page" in done.stdout.decode()
    tgi_endpoint.stream(written, "eos_token").stream([" Done."], "eos_token")
    done = falconchat("chat", "--endpoint", tgi_endpoint.url, input=b"where are the notes?\nopen that link\n",
                      cwd=tmp_path, env=isolated_env(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert f"{site}/hop/1" in tgi_endpoint.requests[-1].body["inputs"]  # the link went back as text
    assert len(tgi_endpoint.requests) == 3
    assert site_server.visits == []
