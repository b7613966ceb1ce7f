"""Issue 9, roles: named system prompts with optional sampling defaults from
`[roles.NAME]` in the config file — `--role NAME`, `/role NAME`, `/roles`."""

from __future__ import annotations

import pytest
from repl_helpers import isolated_env, write_config

from processes import falconchat, one_error_line

pytestmark = pytest.mark.process  # starts the real falconchat, a terminal or a server

ROLES = """
[roles.pirate]
system = "You are a pirate."
temperature = 0.25
top_k = 5

[roles.poet]
system = "You answer in rhyme."
"""


def test_role_flag_sets_the_system_message_and_its_settings(chats, tmp_path):
    write_config(tmp_path, ROLES)
    chat = chats("--role", "pirate", quick=False)
    shown = chat.say("/show")
    assert "system: You are a pirate." in shown
    assert "temperature = 0.25" in shown
    assert "top_k = 5" in shown
    assert "You are a pirate." in chat.say("/system")


def test_flags_beat_the_roles_settings(chats, tmp_path):
    write_config(tmp_path, ROLES)
    chat = chats("--role", "pirate", "--top-k", "9")  # and -t 0
    shown = chat.say("/show")
    assert "system: You are a pirate." in shown
    assert "temperature = 0.0" in shown
    assert "top_k = 9" in shown


def test_role_from_the_environment(chats, tmp_path):
    write_config(tmp_path, ROLES)
    chat = chats(env={"FALCONCHAT_ROLE": "poet"})
    assert "system: You answer in rhyme." in chat.say("/show")


def test_roles_lists_them_and_role_applies_one_mid_chat(chats, tmp_path):
    write_config(tmp_path, ROLES)
    chat = chats(quick=False)
    listed = chat.say("/roles")
    assert "pirate: You are a pirate." in listed
    assert "poet: You answer in rhyme." in listed
    shown = chat.say("/show")
    assert "system: (none)" in shown and "temperature = 0.7" in shown
    assert "role pirate" in chat.say("/role pirate")
    shown = chat.say("/show")
    assert "system: You are a pirate." in shown
    assert "temperature = 0.25" in shown
    assert "top_k = 5" in shown
    chat.say("/role poet")  # a role without settings keeps the current ones
    shown = chat.say("/show")
    assert "system: You answer in rhyme." in shown
    assert "temperature = 0.25" in shown


def test_a_role_applies_to_the_next_reply_and_keeps_the_conversation(chats, tmp_path):
    write_config(tmp_path, ROLES)
    chat = chats()
    chat.say("What is the capital of France?")
    chat.say("/role pirate")
    chat.say("/temp 0")
    assert chat.reply_to("What is the capital of Italy?")
    assert [user for user, _ in chat.history()] == ["What is the capital of France?", "What is the capital of Italy?"]


def test_role_with_an_unknown_name_lists_the_known_ones_and_changes_nothing(chats, tmp_path):
    write_config(tmp_path, ROLES)
    chat = chats()
    shown = chat.say("/role captain")
    assert "pirate" in shown and "poet" in shown
    assert "system: (none)" in chat.say("/show")


def test_roles_without_any_configured(chats):
    chat = chats()
    assert "no roles" in chat.say("/roles")


def test_an_unknown_role_flag_is_a_usage_error(tmp_path):
    write_config(tmp_path, ROLES)
    for args in (("chat", "--role", "captain"), ("--role", "captain", "chat")):
        result = falconchat(*args, cwd=tmp_path, env=isolated_env(tmp_path))
        assert result.returncode == 2, result.stderr
        line = one_error_line(result.stderr)
        assert "unknown role 'captain'" in line
        assert "pirate" in line


def test_a_role_with_an_unknown_field_is_a_config_error(tmp_path):
    write_config(tmp_path, '[roles.bad]\nsystem = "x"\ncolour = "blue"\n')
    result = falconchat("chat", "--role", "bad", cwd=tmp_path, env=isolated_env(tmp_path))
    assert result.returncode == 2
    assert "colour" in one_error_line(result.stderr)
