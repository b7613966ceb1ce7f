"""Reading -f/--file sources (sources.py), in process: files, folders (sorted, hidden entries,
.gitignore and binary files skipped and said), globs, standard input, and every refusal as one
InputError line that never blocks: /dev/zero, a FIFO, a binary file, a symlink loop, a source
over --max-file-size. Permission denied is tested in processes that file permissions apply to,
also as root (tests/test_ask_files.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from falconchat.environment import Environment
from falconchat.errors import InputError
from falconchat.sources import Block, read_sources, with_blocks


class Piped(io.TextIOWrapper):
    def isatty(self) -> bool:
        return False


def env_in(cwd: Path, stdin: bytes = b"") -> Environment:
    return Environment(Piped(io.BytesIO(stdin)), io.StringIO(), io.StringIO(), {}, cwd)


def names(loaded) -> list[str]:
    return [block.name for block in loaded.blocks]


def test_a_file_is_a_block_that_names_it_before_the_words(tmp_path):
    (tmp_path / "notes.txt").write_text("first line\nsecond line\n")
    loaded = read_sources(["notes.txt"], env_in(tmp_path))
    assert loaded.blocks == [Block("notes.txt", "first line\nsecond line\n", 23)]
    message = with_blocks("what is in it?", loaded.blocks)
    assert message == (
        "----- BEGIN notes.txt -----\nfirst line\nsecond line\n----- END notes.txt -----\n\nwhat is in it?"
    )


def test_a_folder_is_its_text_files_sorted_skipping_hidden_ignored_and_binary(tmp_path):
    root = tmp_path / "proj"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("secret")
    (root / "build").mkdir()
    (root / "build" / "out.txt").write_text("built")
    (root / ".gitignore").write_text("build/\n*.log\n!keep.log\n")
    (root / "src" / ".gitignore").write_text("generated.py\n")
    (root / "b.txt").write_text("b")
    (root / "a.txt").write_text("a")
    (root / "debug.log").write_text("noise")
    (root / "keep.log").write_text("kept")
    (root / ".env").write_text("TOKEN=x")
    (root / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    (root / "src" / "generated.py").write_text("y = 2\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    os.symlink(root, root / "src" / "loop")  # a symlinked folder is not followed: no loop
    loaded = read_sources(["proj"], env_in(tmp_path))
    assert names(loaded) == ["proj/a.txt", "proj/b.txt", "proj/keep.log", "proj/src/pkg/mod.py"]
    [note] = loaded.notes
    for said in ("4 files read", "hidden", ".git/", ".env", "ignored by .gitignore", "build/", "debug.log",
                 "generated.py", "binary (logo.png)", "symlinked folders"):  # fmt: skip
        assert said in note, note


def test_a_glob_reads_what_it_matches_in_order(tmp_path):
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "z.py").write_text("z")
    (tmp_path / "src" / "a" / "m.py").write_text("m")
    (tmp_path / "src" / "a" / "m.txt").write_text("not matched")
    loaded = read_sources(["src/**/*.py"], env_in(tmp_path))
    assert names(loaded) == ["src/a/m.py", "src/z.py"]
    with pytest.raises(InputError, match=r"no file matches nothing/\*\.py"):
        read_sources(["nothing/*.py"], env_in(tmp_path))


def test_stdin_is_a_source_read_once(tmp_path):
    loaded = read_sources(["-"], env_in(tmp_path, b"diff --git a b\n"))
    assert loaded.blocks == [Block("stdin", "diff --git a b\n", 15)]
    with pytest.raises(InputError, match="read once"):
        read_sources(["-", "-"], env_in(tmp_path, b"x"))


def test_invalid_utf8_is_replaced_and_said_and_escapes_are_removed(tmp_path):
    (tmp_path / "odd.txt").write_bytes(b"caf\xe9 \x1b[31mred\x1b[0m\n")
    loaded = read_sources(["odd.txt"], env_in(tmp_path))
    assert loaded.blocks[0].text == "caf\ufffd red\n"
    assert loaded.notes == ["odd.txt: not valid UTF-8; the invalid bytes were replaced with \ufffd"]


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: p.write_bytes(b"\x7fELF\0\0\0binary"), "binary file"),
        (lambda p: os.mkfifo(p), "a FIFO, not a regular file"),
        (lambda p: os.symlink("/dev/zero", p), "a character device, not a regular file"),
        (lambda p: os.symlink(p, p), "a symlink loop"),
        (lambda p: p.write_text("x" * 5000), "it is 4.88 KB, over --max-file-size 1000 bytes"),
    ],
    ids=["missing", "binary", "fifo", "dev-zero", "symlink-loop", "too-large"],
)
def test_a_source_that_cannot_be_used_is_one_line_and_never_blocks(tmp_path, make, said):
    make(tmp_path / "it")
    with pytest.raises(InputError) as raised:
        read_sources(["it"], env_in(tmp_path), limit=1000)
    assert raised.value.message.startswith("cannot read it: ") and said in raised.value.message
    assert "\n" not in raised.value.message


def test_a_folder_over_the_size_limit_or_with_nothing_readable_is_refused(tmp_path):
    (tmp_path / "big").mkdir()
    for i in range(3):
        (tmp_path / "big" / f"{i}.txt").write_text("x" * 400)
    with pytest.raises(InputError, match=r"big: more than 1000 bytes of text \(--max-file-size"):
        read_sources(["big"], env_in(tmp_path), limit=1000)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "a.out").write_bytes(b"\0\0")
    with pytest.raises(InputError, match=r"bin: no readable text files \(1 binary \(a.out\)\)"):
        read_sources(["bin"], env_in(tmp_path))


def test_a_saved_session_keeps_which_sources_a_turn_had(tmp_path):
    """/history after /load names the sources as before, instead of showing their text."""
    from falconchat import sessions
    from falconchat.conversation import Conversation
    from falconchat.types import SamplingParams, Turn

    blocks = read_sources(["notes.txt"], env_in(tmp_path)) if (tmp_path / "notes.txt").write_text("n\n") else None
    message = with_blocks("what?", blocks.blocks)
    turn = Turn(message, "this.", attached=("notes.txt (9 tokens)",), words_at=len(message) - len("what?"))
    path = tmp_path / "s.json"
    sessions.save(path, sessions.Session(Conversation(turns=[turn]), "m", SamplingParams()))
    [loaded] = sessions.load(path).conversation.turns
    assert loaded == turn and loaded.words == "what?"


def test_a_large_binary_in_a_folder_is_skipped_not_counted_against_the_limit(tmp_path):
    """A repository with a 2 MB PNG in it: `-f .` reads its text and skips the picture."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0" + b"\xff" * 2_000_000)
    (tmp_path / "repo" / "app.py").write_text("x = 1\n")
    loaded = read_sources(["repo"], env_in(tmp_path), limit=1000)
    assert names(loaded) == ["repo/app.py"]
    assert loaded.notes == ["repo: 1 file read; skipped 1 binary (logo.png)"]
    with pytest.raises(InputError, match=r"^cannot read repo/logo\.png: it is a binary file"):
        read_sources(["repo/logo.png"], env_in(tmp_path), limit=1000)


def test_history_shows_a_system_messages_sources_by_name():
    from falconchat.sources import named_only, system_with_blocks

    system = system_with_blocks("Be brief.", [Block("rules.md", "rule one\nrule two\n", 18)])
    assert named_only(system) == "Be brief.\n\n[source: rules.md]"


@pytest.mark.process
def test_pathspec_is_imported_only_for_a_folder_with_a_gitignore(tmp_path):
    """Nothing heavy for a file or a plain folder: pathspec comes in with the first .gitignore."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "a.txt").write_text("a")
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / ".gitignore").write_text("*.log\n")
    (tmp_path / "repo" / "b.txt").write_text("b")
    code = (
        "import sys, io, pathlib; from falconchat.environment import Environment; "
        "from falconchat.sources import read_sources; "
        "env = Environment(None, io.StringIO(), io.StringIO(), {}, pathlib.Path(sys.argv[1])); "
        "seen = lambda: print('pathspec' in sys.modules); seen(); "
        "read_sources(['plain/a.txt', 'plain'], env); seen(); read_sources(['repo'], env); seen()"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "True"]
