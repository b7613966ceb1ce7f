"""Issue 22 item 6: the REPL's commands are one table (repl/commands.py COMMANDS): what /help
lists, what the chat answers and what Tab completes are the same commands."""

from __future__ import annotations

import re

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from falconchat.conversation import Conversation
from falconchat.repl.commands import COMMANDS, Commands
from falconchat.repl.state import ReplOptions, ReplState
from falconchat.types import SamplingParams


def every_name() -> set[str]:
    return {name for command in COMMANDS for name in command.names}


def test_the_table_names_each_command_once():
    names = [name for command in COMMANDS for name in command.names]
    assert len(names) == len(set(names)), names
    assert all(re.fullmatch(r"/[a-z]+", name) for name in names), names


class Quiet:
    """The chat as the commands see it, keeping what they say."""

    def __init__(self):
        self.said: list[str] = []

    def notice(self, text: str) -> None:
        self.said.append(text)

    error = notice


def completions(commands: Commands, text: str) -> set[str]:
    completer = commands.completer()
    return {c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))}


def test_tab_completes_exactly_the_commands_the_chat_answers(tmp_path):
    options = ReplOptions(sessions_dir=tmp_path, models={"smollm2": None, "other": None})  # type: ignore[dict-item]
    chat = Quiet()
    commands = Commands(ReplState(None, Conversation(), SamplingParams(), options), chat)  # type: ignore[arg-type]
    assert completions(commands, "/") == every_name()
    assert completions(commands, "/mo") == {"/model"}
    assert completions(commands, "/model ") == {"smollm2", "other"}
    assert completions(commands, "/stats o") == {"on", "off"}
    (tmp_path / "fruits.json").write_text("{}")
    assert "fruits" in completions(commands, "/load ")
    commands.run("/nosuch")
    assert chat.said == ["unknown command /nosuch; /help lists them"]


@pytest.mark.process
def test_help_lists_every_command_and_alias_the_chat_answers(chats):
    chat = chats()
    shown = chat.say("/help")
    listed = set(re.findall(r"(?<![\w/])/[a-z]+\b", shown))
    assert every_name() <= listed, every_name() - listed  # /roles and /bye were answered but not listed
    for command in COMMANDS:
        row = next(line for line in shown.splitlines() if line.strip().startswith(command.name + " "))
        assert command.help in row
        for alias in command.aliases:
            assert alias in row
    for name in sorted(every_name() - {"/exit", "/bye", "/edit", "/copy"}):  # each one listed is answered
        assert "unknown command" not in chat.say(name)
