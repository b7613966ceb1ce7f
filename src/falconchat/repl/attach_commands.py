"""The chat's context commands: /file and /image-free text sources (sources.py), /files,
/drop and /run COMMAND. What they attach goes with the next message (Repl.reply) and is then
dropped; a message that does not fit keeps them."""

from __future__ import annotations

import shlex
import subprocess

from falconchat.errors import InputError
from falconchat.images import read_images, tokens_of
from falconchat.repl.state import Chat, ReplState
from falconchat.sources import STDIN, Block, read_sources, text_of
from falconchat.text import human_size


def tokens(state: ReplState, block: Block) -> int:
    return tokens_of(state.backend.count_tokens, block.delimited())


def described(state: ReplState, block: Block) -> str:
    """A block as /files and /history name it: `notes.md (120 tokens)`."""
    return f"{block.name} ({tokens(state, block)} tokens)"


def attach_file(state: ReplState, repl: Chat, arg: str) -> None:
    try:
        specs = shlex.split(arg)
    except ValueError as exc:
        raise InputError(f"/file: {exc}") from None
    if not specs:
        repl.notice("usage: /file SOURCE… (a file, folder, glob or http(s):// URL); /files lists what is attached")
        return
    if STDIN in specs:
        raise InputError("/file -: standard input is the chat itself; /run COMMAND attaches a command's output")
    options = state.options
    loaded = read_sources(specs, repl.env, options.max_file_size, options.url_timeout)
    for note in loaded.notes:
        repl.notice(note)
    _attached(state, repl, loaded.blocks)


def attach_image(state: ReplState, repl: Chat, arg: str) -> None:
    try:
        specs = shlex.split(arg)
    except ValueError as exc:
        raise InputError(f"/image: {exc}") from None
    if not specs:
        repl.notice("usage: /image PATH… (PNG, JPEG, WebP or GIF), for a model that can see")
        return
    if not state.backend.sees_images:  # said now, not after the message is written
        raise InputError(f"{state.backend.describe()} cannot see images; nothing attached")
    _attached(state, repl, read_images(specs, repl.env, state.options.max_file_size))


def run_command(state: ReplState, repl: Chat, arg: str) -> None:
    """Run a command the user typed (never one the model wrote) in the chat's directory and
    attach its output, stdout and stderr together as they came, its exit status named."""
    if not arg:
        repl.notice("usage: /run COMMAND (its output, stdout and stderr, goes with your next message)")
        return
    limit = state.options.max_file_size
    env = repl.env
    process = subprocess.Popen(
        arg,
        shell=True,
        cwd=env.cwd,
        env=dict(env.environ),
        stdin=subprocess.DEVNULL,  # the terminal stays the chat's
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    try:
        data = process.stdout.read(limit + 1)
        if len(data) > limit:
            raise InputError(f"/run: the output is over --max-file-size {human_size(limit)}; nothing attached")
        status = process.wait()
    except KeyboardInterrupt:
        repl.notice("(stopped the command; nothing attached)")
        return
    finally:
        process.stdout.close()
        if process.poll() is None:
            process.kill()
            process.wait()
    notes: list[str] = []
    text = text_of(data, f"/run {arg}", notes)
    for note in notes:
        repl.notice(note)
    said = f"exit status {status}" if status >= 0 else f"killed by signal {-status}"
    _attached(state, repl, [Block(f"output of `{arg}` ({said})", text, len(data))])


def list_files(state: ReplState, repl: Chat, arg: str) -> None:
    if not state.attached:
        repl.notice("nothing attached; /file SOURCE or /run COMMAND attaches to your next message")
        return
    sizes = [tokens(state, block) for block in state.attached]
    for block, size in zip(state.attached, sizes, strict=True):
        repl.notice(f"  {block.name} — {size} tokens, {human_size(block.size)}")
    repl.notice(f"{len(sizes)} attached, {sum(sizes)} tokens, go with your next message (/drop clears them)")


def drop(state: ReplState, repl: Chat, arg: str) -> None:
    count = len(state.attached)
    state.attached.clear()
    repl.notice(f"dropped {count} attached source{'s' if count != 1 else ''}" if count else "nothing was attached")


def _attached(state: ReplState, repl: Chat, blocks: list[Block]) -> None:
    for block in blocks:
        state.attached.append(block)
        repl.notice(f"attached {described(state, block)}")
    total = sum(tokens(state, block) for block in state.attached)
    repl.notice(f"({len(state.attached)} attached, {total} tokens, go with your next message; /files, /drop)")
