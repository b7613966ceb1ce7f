"""Models as input: a GGUF's chat template is untrusted code, and a GGUF file may be corrupt.

A template that reaches for Python internals is refused by jinja2's sandbox (and
runs nothing); a corrupt or truncated file is one clear error line, exit 2, in
`ask`, the REPL and `serve`.
"""

from __future__ import annotations

import struct

import pytest
from kit import Terminal, no_leaks, one_error_line, run

from falconchat.backends.gguf import bundled_model_path
from gguf_edit import with_metadata_string

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

INJECTIONS = {
    "os.popen through globals": "{{ cycler.__init__.__globals__.os.popen('touch PWNED').read() }}",
    "subclasses walk": "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
    "mutating the messages": "{% set _ = messages.append({'role': 'user', 'content': 'x'}) %}{{ messages }}",
    "format string attribute access": "{{ '{0.__class__.__init__.__globals__}'.format(cycler) }}",
    "a billion-step loop": "{% for i in range(10**9) %}x{% endfor %}",
}


@pytest.fixture(scope="module")
def hostile_models(tmp_path_factory):
    """One GGUF per injected template, and a config naming each as a `format = "native"` model."""
    root = tmp_path_factory.mktemp("models")
    lines = []
    for i, template in enumerate(INJECTIONS.values()):
        path = root / f"evil{i}.gguf"
        with_metadata_string(bundled_model_path(), path, "tokenizer.chat_template", template)
        lines += [f"[models.evil{i}]", 'backend = "local"', f'model_path = "{path}"', 'format = "native"', ""]
    (root / "config.toml").write_text("\n".join(lines))
    return root


@pytest.mark.parametrize("i, name", list(enumerate(INJECTIONS)), ids=list(INJECTIONS))
def test_a_template_injection_is_refused(home, hostile_models, i, name):
    result = run(
        home, "ask", "--config", str(hostile_models / "config.toml"), "-m", f"evil{i}", "--max-new-tokens", "4", "hi"
    )
    assert result.code == 2, (result.code, result.err)
    one_error_line(result.err, "chat template")
    assert result.out == ""
    assert not (home / "PWNED").exists()


def test_the_edited_model_itself_loads(home, tmp_path):
    """The editor keeps the model intact: a harmless template edited in answers normally."""
    path = tmp_path / "fine.gguf"
    template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n"
    with_metadata_string(bundled_model_path(), path, "tokenizer.chat_template", template)
    (tmp_path / "config.toml").write_text(
        f'[models.fine]\nbackend = "local"\nmodel_path = "{path}"\nformat = "native"\n'
    )
    result = run(
        home,
        "ask",
        "--config",
        str(tmp_path / "config.toml"),
        "-m",
        "fine",
        "-t",
        "0",
        "--max-new-tokens",
        "12",
        "What is the capital of France?",
    )
    assert result.code == 0, result.err
    assert result.out.strip()


# ---- corrupt files ----------------------------------------------------------------------------


def truncated(path, size: int):
    with bundled_model_path().open("rb") as fh:
        path.write_bytes(fh.read(size))


CORRUPT = {
    "truncated to 1 MB": lambda p: truncated(p, 1 << 20),
    "truncated to 60 MB": lambda p: truncated(p, 60 << 20),
    "header only": lambda p: truncated(p, 24),
    "random bytes after the magic": lambda p: p.write_bytes(b"GGUF" + bytes(range(256)) * 64),
    "absurd counts": lambda p: p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**62, 2**62) + b"\0" * 64),
    "absurd string length": lambda p: p.write_bytes(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**60) + b"abc"),
    "unknown version": lambda p: p.write_bytes(b"GGUF" + struct.pack("<IQQ", 99, 0, 0)),
    "empty": lambda p: p.write_bytes(b""),
    "not a GGUF": lambda p: p.write_text("<html>a download page</html>"),
}


@pytest.mark.parametrize("make", list(CORRUPT.values()), ids=list(CORRUPT))
def test_a_corrupt_model_file_is_one_clear_error(home, make):
    path = home / "model.gguf"
    make(path)
    result = run(home, "ask", "--model-path", str(path), "hi")
    assert result.code == 2, (result.code, result.err)
    one_error_line(result.err, str(path))


def test_a_corrupt_model_in_the_repl_and_serve(home):
    path = home / "model.gguf"
    truncated(path, 1 << 20)
    term = Terminal(home, "--model-path", str(path))
    assert term.finish() == 2
    no_leaks(term.screen)
    assert "falconchat: error: " in term.screen and "Traceback" not in term.screen
    served = run(home, "serve", "--port", "0", "--model-path", str(path))
    assert served.code == 2
    one_error_line(served.err, str(path))
