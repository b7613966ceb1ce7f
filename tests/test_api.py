"""The library, as a user's program uses it: `import falconchat`, then `falconchat.X` alone
(docs/api.md). Here the scripted model and the settings; tests/test_api_models.py has the bundled
model and endpoints."""

from __future__ import annotations

import subprocess
import sys

import pytest

import falconchat


def test_every_public_name_is_there_and_documented():
    for name in falconchat.__all__:
        value = getattr(falconchat, name)
        assert name in dir(falconchat)
        assert name == "__version__" or value.__doc__, name
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = falconchat.nothing


@pytest.mark.process
def test_import_loads_nothing_until_a_name_is_used():
    """`import falconchat` (and the front ends' `from falconchat import __version__`) stays
    instant: no settings, no backend, not even `typing`; the first use loads the library."""
    code = (
        "import sys, falconchat; from falconchat import __version__; "
        "print(sorted(m for m in sys.modules if m.startswith('falconchat') or m in ('typing', 'rich', 'llama_cpp'))); "
        "falconchat.ScriptedModel; print('falconchat.api' in sys.modules, 'llama_cpp' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["['falconchat']", "True False"]


def test_a_scripted_model_answers_in_turn_and_streams_in_pieces():
    model = falconchat.ScriptedModel(["Hello there, friend.", "Second."])
    stream = model.stream("hi")
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == "Hello there, friend."
    reply = stream.result()
    assert (reply.text, reply.finish_reason, reply.completion_tokens) == ("Hello there, friend.", "stop", len(pieces))
    assert reply.prompt_tokens > 0 and reply.value is None and str(reply) == reply.text
    assert model.reply("again").text == "Second."
    with pytest.raises(falconchat.FalconchatError, match="no reply left"):
        model.reply("a third")
    model.enqueue("Third.")
    assert model.reply("a third").text == "Third."


def test_a_conversation_sends_the_system_message_and_history_and_keeps_the_turns():
    model = falconchat.ScriptedModel(["Paris.", "About 2.1 million.", "Alone."])
    chat = model.conversation(system="Answer in one line.")
    chat.reply("Capital of France?")
    chat.reply("Its population?", temperature=0, seed=7)
    assert model.prompts[1].messages == (
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Its population?"},
    )
    assert (model.prompts[1].params.temperature, model.prompts[1].params.seed) == (0, 7)
    assert [(t.user, t.assistant, t.status) for t in chat.turns] == [
        ("Capital of France?", "Paris.", "complete"),
        ("Its population?", "About 2.1 million.", "complete"),
    ]
    assert chat.undo().user == "Its population?" and len(chat.turns) == 1
    model.reply("alone")  # Model.reply keeps no history
    assert model.prompts[2].messages == ({"role": "user", "content": "alone"},)


def test_the_falcon_format_sends_one_text_prompt():
    model = falconchat.ScriptedModel(["Yes."], format="falcon")
    model.reply("Is it?", system="Be brief.")
    sent = model.prompts[0]
    assert sent.messages == () and "Be brief." in sent.text and "Is it?" in sent.text


def test_sampling_values_are_the_clis_and_checked_by_its_rules():
    model = falconchat.ScriptedModel(["one two three four five", "a b STOP c", "x"])
    cut = model.conversation()
    reply = cut.reply("count", max_new_tokens=2)
    assert (reply.text, reply.finish_reason, cut.turns[0].status) == ("one two", "length", "length")
    assert model.reply("stop early", stop=["STOP"]).text == "a b "
    assert model.prompts[0].params.top_p == 0.95  # the CLI's defaults
    with pytest.raises(falconchat.FalconchatError, match=r"invalid temperature -1 .*a number from 0") as bad:
        model.reply("x", temperature=-1)
    assert bad.value.exit_code == 2
    with pytest.raises(falconchat.FalconchatError, match="unknown sampling value 'temprature'"):
        model.reply("x", temprature=0)  # type: ignore[call-arg]
    assert len(model.prompts) == 2  # nothing was sent for the refused ones


def test_structured_output_fails_closed():
    model = falconchat.ScriptedModel(['{"name": "Ada", "age": 36}', "Sure! Here it is: Ada, 36", '{"name": "Ada"}'])
    assert model.reply("who?", schema="name, age int").value == {"name": "Ada", "age": 36}
    with pytest.raises(falconchat.InvalidReply, match="the reply is not JSON") as prose:
        model.reply("who?", schema="name, age int")
    assert prose.value.exit_code == 5
    with pytest.raises(falconchat.InvalidReply, match="does not match the schema: \\$: 'age' is a required property"):
        model.reply("who?", schema={"type": "object", "required": ["name", "age"]})


def test_a_streamed_structured_reply_is_checked_when_it_ends():
    model = falconchat.ScriptedModel(['{"name": "Ada", "tags": [', "[1, 2]"])
    stream = model.stream("who?", json_mode=True, max_new_tokens=3)
    seen = []
    with pytest.raises(falconchat.InvalidReply, match="stopped at max-new-tokens"):
        for piece in stream:
            seen.append(piece)
    assert seen  # the pieces came, and then the check refused the whole
    with pytest.raises(falconchat.InvalidReply, match="JSON but not an object"):
        model.reply("list?", json_mode=True)
    with pytest.raises(falconchat.FalconchatError, match="not both"):
        model.reply("x", schema="name", json_mode=True)
    with pytest.raises(falconchat.FalconchatError, match="not a valid JSON Schema"):
        model.reply("x", schema={"type": 12})


def test_closing_a_stream_stops_it_and_the_conversation_keeps_what_arrived():
    model = falconchat.ScriptedModel(["one two three four"])
    chat = model.conversation()
    with chat.stream("count") as stream:
        first = next(iter(stream))
    reply = stream.result()
    assert (reply.text, reply.finish_reason) == (first, "cancelled")
    assert (chat.turns[0].assistant, chat.turns[0].status) == (first, "cut")


def test_open_model_chooses_as_the_cli_does_and_loads_nothing(tmp_path):
    """The bundled model by default, its sampling values and system message from the same
    settings (here the environment); nothing loaded or asked until a reply."""
    environ = {"FALCONCHAT_TEMPERATURE": "0", "FALCONCHAT_SYSTEM": "Be kind.", "FALCONCHAT_MAX_NEW_TOKENS": "64"}
    with falconchat.open_model(environ=environ, cwd=tmp_path) as model:
        assert model.name == "smollm2" and "bundled" in model.describe()
        assert (model.sampling.temperature, model.sampling.max_new_tokens, model.system) == (0, 64, "Be kind.")
    with pytest.warns(UserWarning, match="FALCONCHAT_TEMPRATURE"):
        falconchat.open_model(environ={"FALCONCHAT_TEMPRATURE": "0"}, cwd=tmp_path).close()
    with pytest.raises(falconchat.FalconchatError, match=r"unknown model 'nope'.*known: smollm2"):
        falconchat.open_model("nope", environ={}, cwd=tmp_path)
    (tmp_path / "c.toml").write_text(
        'temperature = 0.2\n[models.far]\nbackend = "tgi"\nendpoint = "http://127.0.0.1:9"\n'
    )
    with falconchat.open_model("far", config="c.toml", environ={}, cwd=tmp_path) as model:
        assert model.name == "far" and model.sampling.temperature == 0.2 and "127.0.0.1:9" in model.describe()


@pytest.mark.process  # runs mypy on a user's program
def test_a_users_program_is_type_checked_against_the_library(tmp_path):
    """py.typed (PEP 561): mypy reads falconchat's own types (without it: "missing library stubs
    or py.typed marker") and catches a wrong sampling value."""
    (tmp_path / "user.py").write_text(
        "import falconchat\n\n"
        "model = falconchat.open_model()\n"
        "text: str = model.reply('hi', temperature=0).text\n"
        "model.reply('hi', temperature='hot')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.stdout.splitlines()[:-1] == [
        'user.py:5: error: Argument "temperature" to "reply" of "Model" has incompatible type "str"; '
        'expected "float"  [arg-type]'
    ], result.stdout
