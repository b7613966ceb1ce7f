"""Tab after /file (and the other commands that take paths) completes files and folders as a
shell does: a folder with its `/`, so that the next Tab goes inside it."""

from __future__ import annotations

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from falconchat.repl.input import SlashCompleter


def completions(text: str) -> list[str]:
    completer = SlashCompleter(["/file", "/help"], {}, ["/file"])
    document = Document(text)
    return sorted(
        text[: len(text) + c.start_position] + c.text
        for c in completer.get_completions(document, CompleteEvent(completion_requested=True))
    )


def test_a_folder_completes_with_its_slash_and_a_file_without(tmp_path, monkeypatch):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "app.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "sub" / "deep.md").write_text("# deep\n")
    monkeypatch.chdir(tmp_path)
    assert completions("/file pk") == ["/file pkg/"]
    assert completions("/file pkg/") == ["/file pkg/app.py", "/file pkg/sub/"]
    assert completions("/file pkg/sub/") == ["/file pkg/sub/deep.md"]
    assert completions("/he") == ["/help"]
