"""Unit tests for sessions.py: the session file format (round trip, refusal of anything
that is not a falconchat session, no secrets written) and Markdown export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from falconchat import sessions
from falconchat.conversation import Conversation
from falconchat.errors import FalconchatError, InputError
from falconchat.types import SamplingParams, Turn


def a_session() -> sessions.Session:
    conversation = Conversation(
        system="You are terse. ünïcødé ✓",
        turns=[
            Turn("What is the capital of France?", "Paris.", "complete"),
            Turn("Count to ten", "one, two, thr", "cut"),
            Turn("Line one\nline two\n\n  indented", "**bold** `code`\n- item", "error"),
        ],
    )
    params = SamplingParams(
        temperature=0.3, max_new_tokens=77, top_p=0.9, top_k=7, repetition_penalty=1.1, seed=1234, stop=("###", "\nQ:")
    )
    return sessions.Session(conversation, "smollm2", params)


def good_document() -> dict:
    return {
        "format": "falconchat-session",
        "version": 1,
        "saved_at": "2024-01-01T00:00:00Z",
        "model": "m",
        "system": "",
        "params": {"temperature": 0.5},
        "turns": [{"user": "u", "assistant": "a", "status": "complete"}],
    }


def write_json(path: Path, document) -> Path:
    path.write_text(json.dumps(document))
    return path


# ---- round trip --------------------------------------------------------------------------


def test_save_then_load_round_trips_everything(tmp_path):
    path = tmp_path / "s.json"
    original = a_session()
    sessions.save(path, original)
    loaded = sessions.load(path)
    assert loaded.conversation == original.conversation
    assert loaded.params == original.params
    assert loaded.model == "smollm2"


def test_the_file_is_marked_versioned_json(tmp_path):
    path = tmp_path / "s.json"
    sessions.save(path, a_session())
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["format"] == "falconchat-session"
    assert document["version"] == 1
    assert set(document) == {"format", "version", "saved_at", "model", "system", "params", "turns"}
    assert document["turns"][1] == {"user": "Count to ten", "assistant": "one, two, thr", "status": "cut"}
    assert "ünïcødé ✓" in path.read_text(encoding="utf-8")  # readable, not \\u-escaped


def test_an_empty_conversation_round_trips(tmp_path):
    path = tmp_path / "empty.json"
    sessions.save(path, sessions.Session(Conversation(), "smollm2", SamplingParams()))
    loaded = sessions.load(path)
    assert loaded.conversation == Conversation()
    assert loaded.params == SamplingParams()


def test_missing_params_take_the_defaults(tmp_path):
    document = good_document()
    del document["params"]
    assert sessions.load(write_json(tmp_path / "s.json", document)).params == SamplingParams()


def test_saved_files_are_private_and_written_whole(tmp_path):
    path = tmp_path / "s.json"
    sessions.save(path, a_session())
    assert path.stat().st_mode & 0o777 == 0o600
    sessions.save(path, a_session())  # replacing keeps it private and leaves no temporary file behind
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_replacing_a_world_readable_file_makes_it_private(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{}")
    os.chmod(path, 0o644)
    sessions.save(path, a_session())
    assert path.stat().st_mode & 0o777 == 0o600


def test_private_dir_is_0700_even_when_it_existed(tmp_path):
    directory = tmp_path / "sessions"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    sessions.private_dir(directory)
    assert directory.stat().st_mode & 0o777 == 0o700
    nested = tmp_path / "a" / "b"
    sessions.private_dir(nested)
    assert nested.stat().st_mode & 0o777 == 0o700


# ---- no secrets --------------------------------------------------------------------------


def test_no_api_key_is_written(tmp_path, monkeypatch):
    secret = "hf_unit_test_secret_0123456789"
    for var in ("HF_API_KEY", "FALCONCHAT_API_KEY", "FALCONCHAT_SERVE_API_KEY"):
        monkeypatch.setenv(var, secret)
    path = tmp_path / "s.json"
    sessions.save(path, a_session())
    text = path.read_text()
    assert secret not in text
    assert "key" not in text.lower()
    export = tmp_path / "s.md"
    sessions.export_markdown(export, a_session().conversation, "smollm2")
    assert secret not in export.read_text()


# ---- refusal of anything else ------------------------------------------------------------


def refuse(path: Path) -> str:
    before = path.read_bytes() if path.is_file() else None
    with pytest.raises(FalconchatError) as caught:
        sessions.load(path)
    assert caught.value.exit_code == 2
    assert "\n" not in caught.value.message
    if before is not None:
        assert path.read_bytes() == before  # a refused file is left as it was
    return caught.value.message


def test_not_json_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("garbage {")
    message = refuse(path)
    assert "not a falconchat session file" in message and "bad.json" in message


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00\x01", b"null", b"[]", b"42", b'"text"'])
def test_empty_binary_and_non_object_files_are_refused(tmp_path, content):
    path = tmp_path / "odd.json"
    path.write_bytes(content)
    assert "not a falconchat session file" in refuse(path)


def test_a_missing_file_is_refused(tmp_path):
    assert "no session file" in refuse(tmp_path / "nothing.json")


def test_a_directory_is_refused(tmp_path):
    (tmp_path / "dir.json").mkdir()
    refuse(tmp_path / "dir.json")


@pytest.mark.parametrize(
    "change",
    [
        {"format": None},
        {"format": "other-tool"},
        {"format": "FALCONCHAT-SESSION"},
    ],
    ids=["no-mark", "foreign-mark", "mark-case"],
)
def test_a_wrong_format_mark_is_refused(tmp_path, change):
    document = {**good_document(), **change}
    if change["format"] is None:
        del document["format"]
    assert "not a falconchat session file" in refuse(write_json(tmp_path / "s.json", document))


@pytest.mark.parametrize("version", [None, 0, 2, "1", 1.5, True])
def test_a_wrong_version_is_refused(tmp_path, version):
    document = {**good_document(), "version": version}
    if version is None:
        del document["version"]
    refuse(write_json(tmp_path / "s.json", document))


def test_a_foreign_chat_export_is_refused(tmp_path):
    document = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    assert "not a falconchat session file" in refuse(write_json(tmp_path / "chatgpt.json", document))


@pytest.mark.parametrize(
    "turns",
    [
        "not a list",
        [["user", "assistant"]],
        [{"assistant": "a", "status": "complete"}],
        [{"user": "u", "status": "complete"}],
        [{"user": 1, "assistant": "a", "status": "complete"}],
        [{"user": "u", "assistant": None, "status": "complete"}],
        [{"user": "u", "assistant": "a", "status": "finished"}],
        [{"user": "u", "assistant": "a"}],
        [{"user": "u", "assistant": "a", "status": "complete"}, "second"],
    ],
    ids=["str", "pair", "no-user", "no-assistant", "user-int", "assistant-null", "bad-status", "no-status", "mixed"],
)
def test_malformed_turns_are_refused(tmp_path, turns):
    refuse(write_json(tmp_path / "s.json", {**good_document(), "turns": turns}))


@pytest.mark.parametrize("field, value", [("system", None), ("system", 3), ("model", None), ("model", ["m"])])
def test_wrong_types_are_refused(tmp_path, field, value):
    refuse(write_json(tmp_path / "s.json", {**good_document(), field: value}))


@pytest.mark.parametrize("field", ["system", "model", "turns"])
def test_missing_fields_are_refused(tmp_path, field):
    document = good_document()
    del document[field]
    refuse(write_json(tmp_path / "s.json", document))


@pytest.mark.parametrize(
    "params",
    [
        "hot",
        [0.5],
        {"temperature": "hot"},
        {"temperature": -1},
        {"temperature": True},
        {"max_new_tokens": 0},
        {"max_new_tokens": 2.5},
        {"top_p": 7},
        {"top_k": -3},
        {"repetition_penalty": 0},
        {"seed": -1},
        {"stop": [""]},
        {"stop": [1]},
    ],
    ids=lambda p: json.dumps(p),
)
def test_bad_params_values_are_refused(tmp_path, params):
    refuse(write_json(tmp_path / "s.json", {**good_document(), "params": params}))


def test_a_deeply_nested_file_is_refused(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    assert "deep.json" in refuse(path)


def test_a_file_with_lone_surrogates_is_refused_or_made_safe(tmp_path):
    """JSON may spell lone surrogates (\\ud800); such text cannot be printed, sent or saved again."""
    document = good_document()
    document["turns"][0]["user"] = "\ud800 broken"
    path = tmp_path / "s.json"
    path.write_text(json.dumps(document))  # ensure_ascii: the file itself is valid UTF-8
    try:
        loaded = sessions.load(path)
    except InputError:
        return
    text = loaded.conversation.turns[0].user
    text.encode("utf-8")  # what was loaded can be written and printed
    sessions.save(tmp_path / "again.json", loaded)


def test_a_file_that_is_too_large_is_refused_without_reading_it(tmp_path, monkeypatch):
    path = write_json(tmp_path / "big.json", good_document())
    monkeypatch.setattr(sessions, "MAX_SESSION_BYTES", 16)
    assert "too large" in refuse(path)


def test_unknown_extra_fields_are_ignored(tmp_path):
    document = {**good_document(), "title": "extra", "params": {"temperature": 0.5, "colour": "blue"}}
    document["turns"][0]["tokens"] = 3
    loaded = sessions.load(write_json(tmp_path / "s.json", document))
    assert loaded.conversation.turns == [Turn("u", "a", "complete")]
    assert loaded.params.temperature == 0.5


# ---- names and paths ---------------------------------------------------------------------


def test_session_names_and_paths(tmp_path):
    assert sessions.session_path(tmp_path, "trip-2024_v1.2") == tmp_path / "trip-2024_v1.2.json"
    assert sessions.session_path(tmp_path, "other/file.json") == Path("other/file.json")
    assert sessions.session_path(tmp_path, "plain.json") == Path("plain.json")
    for bad in ("", " ", "two words", "-starts-with-dash", ".hidden", "x" * 65, "semi;colon", "tab\t"):
        with pytest.raises(InputError):
            sessions.session_path(tmp_path, bad)


def test_session_names_and_last_session(tmp_path):
    directory = tmp_path / "sessions"
    assert sessions.session_names(directory) == []
    assert sessions.last_session(directory) is None
    sessions.private_dir(directory)
    for name, mtime in (("b", 2_000_000), ("a", 3_000_000), ("c", 1_000_000)):
        sessions.save(directory / f"{name}.json", a_session())
        os.utime(directory / f"{name}.json", (mtime, mtime))
    (directory / "notes.txt").write_text("not a session")
    assert sessions.session_names(directory) == ["a", "b", "c"]
    assert sessions.last_session(directory) == "a"


# ---- export --------------------------------------------------------------------------------


def test_export_markdown(tmp_path):
    path = tmp_path / "chat.md"
    sessions.export_markdown(path, a_session().conversation, "smollm2")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Conversation with smollm2\n")
    assert "**System:** You are terse. ünïcødé ✓" in text
    assert "## You\n\nWhat is the capital of France?\n\n## smollm2\n\nParis.\n" in text
    assert "## smollm2 *(cut short)*" in text
    assert "## smollm2 *(incomplete: an error ended it)*" in text
    assert "Line one\nline two\n\n  indented" in text
    assert path.stat().st_mode & 0o777 == 0o600
    assert text.index("France") < text.index("Count to ten") < text.index("Line one")


def test_export_of_an_empty_conversation(tmp_path):
    path = tmp_path / "empty.md"
    sessions.export_markdown(path, Conversation(), "smollm2")
    assert path.read_text().strip() == "# Conversation with smollm2"


# ---- each reply remembers the model that wrote it (issue 15, item 17) --------------------------


def test_each_turns_model_round_trips_and_labels_the_export(tmp_path):
    conv = Conversation(system="", turns=[Turn("hi", "hello", model="falcon-7b"), Turn("and?", "more", model="qwen")])
    path = tmp_path / "s.json"
    sessions.save(path, sessions.Session(conv, "qwen", SamplingParams()))
    loaded = sessions.load(path)
    assert [t.model for t in loaded.conversation.turns] == ["falcon-7b", "qwen"]
    out = tmp_path / "s.md"
    sessions.export_markdown(out, loaded.conversation, "qwen")
    assert "## falcon-7b" in out.read_text() and "## qwen" in out.read_text()


def test_a_session_saved_without_turn_models_still_loads_and_exports_with_the_current_one(tmp_path):
    path = tmp_path / "old.json"
    sessions.save(path, sessions.Session(Conversation(system="", turns=[Turn("hi", "hello")]), "m", SamplingParams()))
    document = json.loads(path.read_text())
    assert "model" not in document["turns"][0]  # as files written before turns kept it
    loaded = sessions.load(path)
    assert loaded.conversation.turns[0].model is None
    out = tmp_path / "old.md"
    sessions.export_markdown(out, loaded.conversation, "current")
    assert "## current" in out.read_text()


def test_recording_a_reply_keeps_its_model_and_a_continuation_is_labelled_by_the_last_writer():
    from falconchat.types import Done, TextDelta

    def stream(*events):
        yield from events

    conv = Conversation(system="", turns=[])
    list(conv.record("hi", stream(TextDelta("a"), Done("length")), model="first"))
    assert conv.turns[-1].model == "first"
    list(conv.record_continuation(stream(TextDelta("b"), Done("stop")), model="second"))
    assert conv.turns[-1].model == "second" and conv.turns[-1].assistant == "ab"
