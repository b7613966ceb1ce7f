"""Images for models that see (`-a/--attach IMAGE`, `/image PATH`): PNG, JPEG, WebP and GIF
files read safely (sources.read_bytes) into blocks whose text is a base64 data URL. In a
message an image is a Markdown image, `![name](data:image/png;base64,…)`: the syntax TGI's
vision models read in a prompt; the openai backend turns each into an `image_url` content
part. A backend that cannot see refuses a message with one before anything is sent."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from falconchat.environment import Environment
from falconchat.errors import InputError
from falconchat.sources import Block, read_bytes

# An image's share of the context, as counted before sending: OpenAI's price of one
# 1024x1024 image in high detail (85 + 4 x 170). Servers count their own; this is an estimate.
IMAGE_TOKENS = 765
MARKDOWN_IMAGE = re.compile(r"!\[[^\]\n]*\]\((data:image/(?:png|jpeg|webp|gif);base64,[A-Za-z0-9+/]+=*)\)")


def image_type(data: bytes) -> str | None:
    """The media type its first bytes say, or None: not one of the four."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def read_images(specs: Sequence[str], env: Environment, limit: int) -> list[Block]:
    blocks = []
    for spec in specs:
        data = read_bytes(spec, env.cwd / Path(spec).expanduser(), limit)
        kind = image_type(data)
        if kind is None:
            raise InputError(f"cannot attach {spec}: not a PNG, JPEG, WebP or GIF image")
        url = f"data:{kind};base64,{base64.b64encode(data).decode('ascii')}"
        blocks.append(Block(spec, url, len(data), image=True))
    return blocks


def has_images(text: str) -> bool:
    return MARKDOWN_IMAGE.search(text) is not None


def without_images(text: str) -> tuple[str, int]:
    """The text with each image left out, and how many there were (to count tokens)."""
    stripped, count = MARKDOWN_IMAGE.subn("", text)
    return stripped, count


def tokens_of(count_tokens: Callable[[str], int], text: str) -> int:
    """`count_tokens` of the text, each image counted as IMAGE_TOKENS rather than its base64."""
    stripped, images = without_images(text)
    return (count_tokens(stripped) if stripped or not images else 0) + images * IMAGE_TOKENS


def content_parts(text: str) -> str | list[dict]:
    """A message's content for an OpenAI chat request: the text itself when it has no image,
    else text and `image_url` parts in their order."""
    if not has_images(text):
        return text
    parts: list[dict] = []
    at = 0
    for match in MARKDOWN_IMAGE.finditer(text):
        if text[at : match.start()].strip():
            parts.append({"type": "text", "text": text[at : match.start()].strip("\n")})
        parts.append({"type": "image_url", "image_url": {"url": match.group(1)}})
        at = match.end()
    if text[at:].strip():
        parts.append({"type": "text", "text": text[at:].strip("\n")})
    return parts
