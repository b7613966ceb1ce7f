"""Images (`-a/--attach`, `/image`): a real PNG goes as an OpenAI image_url part (base64 data
URL) through the openai SDK to a scripted OpenAI endpoint, and as a Markdown image in TGI's
prompt; a backend that cannot see (the bundled model) refuses in one line, nothing sent."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import pytest

from falconchat.environment import Environment
from falconchat.errors import InputError
from falconchat.images import IMAGE_TOKENS, content_parts, read_images, tokens_of
from falconchat.sources import with_blocks
from openai_endpoint import OpenAIEndpoint
from processes import falconchat, isolated_env, one_error_line


def png(width: int = 2, height: int = 2) -> bytes:
    """A real PNG (red pixels), as an image library would write it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def env_in(cwd: Path) -> Environment:
    return Environment(None, io.StringIO(), io.StringIO(), {}, cwd)


def test_an_image_is_a_data_url_block_and_an_openai_part(tmp_path):
    (tmp_path / "red.png").write_bytes(png())
    [block] = read_images(["red.png"], env_in(tmp_path), 1024 * 1024)
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    assert block.image and block.text == url
    message = with_blocks("what colour?", [block])
    assert message == f"![red.png]({url})\n\nwhat colour?"
    assert content_parts(message) == [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "text", "text": "what colour?"},
    ]
    assert content_parts("no image here") == "no image here"
    assert tokens_of(len, message) == len("\n\nwhat colour?") + IMAGE_TOKENS  # not its base64


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: p.write_text("just text"), "cannot attach it: not a PNG, JPEG, WebP or GIF image"),
        (lambda p: p.symlink_to("/dev/zero"), "cannot read it: it is a character device, not a regular file"),
        (lambda p: p.write_bytes(png() + b"\0" * 2000), "cannot read it: it is 2.02 KB, over --max-file-size 2 KB"),
    ],
)
def test_what_is_not_an_image_is_refused_in_one_line(tmp_path, make, said):
    make(tmp_path / "it")
    with pytest.raises(InputError) as raised:
        read_images(["it"], env_in(tmp_path), 2048)
    assert raised.value.message == said


@pytest.mark.process
def test_an_image_reaches_an_openai_endpoint_as_an_image_url_part(tmp_path):
    (tmp_path / "red.png").write_bytes(png())
    endpoint = OpenAIEndpoint()
    try:
        endpoint.reply(["Red."])
        done = falconchat("ask", "--no-log", "--endpoint", endpoint.url, "-a", "red.png", "what colour?",
                          cwd=tmp_path, env=isolated_env(tmp_path))  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode() == "Red.\n"
        [body] = endpoint.posts()
        assert body["messages"][-1] == {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64," + base64.b64encode(png()).decode()},
                },
                {"type": "text", "text": "what colour?"},
            ],
        }
    finally:
        endpoint.close()


@pytest.mark.process
def test_an_image_reaches_tgi_as_a_markdown_image(tgi_endpoint, tmp_path):
    (tmp_path / "red.png").write_bytes(png())
    tgi_endpoint.stream([" Red."], "eos_token")
    done = falconchat("ask", "--no-log", "--endpoint", tgi_endpoint.url, "-a", "red.png", "what colour?",
                      cwd=tmp_path, env=isolated_env(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    assert tgi_endpoint.requests[0].body["inputs"] == f"User: ![red.png]({url})\n\nwhat colour?\nAssistant:"


@pytest.mark.process
def test_a_model_that_cannot_see_refuses_before_sending(tmp_path):
    (tmp_path / "red.png").write_bytes(png())
    done = falconchat("ask", "--no-log", "-a", "red.png", "what colour?", cwd=tmp_path, env=isolated_env(tmp_path))
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert "cannot see images, and the message has one" in line


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"GIF89a\x01\x00\x01\x00", "image/gif"),
        (b"GIF87a\x01\x00\x01\x00", "image/gif"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),
        (b"%PDF-1.7", None),
    ],
)
def test_the_four_image_types_are_known_by_their_bytes(tmp_path, head, kind):
    from falconchat.images import image_type

    assert image_type(head) == kind
    (tmp_path / "x.img").write_bytes(head)
    if kind:
        [block] = read_images(["x.img"], env_in(tmp_path), 1000)
        assert block.text.startswith(f"data:{kind};base64,")
