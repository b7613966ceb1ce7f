"""--schema and --json-mode: reading the schema (file, inline, short form) and checking replies."""

from __future__ import annotations

import json

import pytest

from falconchat.errors import ExitCode, InvalidReply, UsageError
from falconchat.structured import check_reply, json_mode, schema_constraint, short_schema

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def test_the_short_form_is_an_object_whose_fields_are_all_required():
    schema = short_schema("name, age int, tags list, score float: out of ten\nok bool")
    assert schema["required"] == ["name", "age", "tags", "score", "ok"]
    assert schema["properties"]["age"] == {"type": "integer"}
    assert schema["properties"]["tags"] == {
        "type": "array",
        "items": {"type": "string", "maxLength": 40},
        "maxItems": 8,
    }
    assert schema["properties"]["score"] == {"type": "number", "description": "out of ten"}
    assert schema["additionalProperties"] is False


def test_a_schema_from_a_file_inline_or_short(tmp_path):
    (tmp_path / "person.json").write_text(json.dumps(PERSON))
    assert schema_constraint("person.json", tmp_path).value == PERSON
    assert schema_constraint(json.dumps(PERSON)).value == PERSON
    assert schema_constraint("name, age int").value["required"] == ["name", "age"]
    assert schema_constraint("name").kind == "json_schema" and json_mode().kind == "json"


@pytest.mark.parametrize(
    "text, says",
    [
        ("{not json", "not valid JSON"),
        ('{"type": "nonsense"}', "not a valid JSON Schema"),
        ("[1, 2]", "cannot read the field"),
        ("name, age integer", "unknown type 'integer'"),
        ("missing.json", "cannot read the schema file"),
        ("  ", "empty"),
    ],
)
def test_a_bad_schema_is_a_usage_error(tmp_path, text, says):
    with pytest.raises(UsageError) as caught:
        schema_constraint(text, tmp_path)
    assert says in caught.value.message and "\n" not in caught.value.message


def test_a_valid_reply_gives_its_value():
    constraint = schema_constraint(json.dumps(PERSON))
    assert check_reply(' {"name": "Ada", "age": 36}\n', constraint) == {"name": "Ada", "age": 36}
    assert check_reply('{"any": 1}', json_mode()) == {"any": 1}
    assert check_reply("prose is fine without a constraint", None) is None


@pytest.mark.parametrize(
    "reply, says",
    [
        ("Sure! Ada is 36.", "the reply is not JSON"),
        ('{"name": "Ada", "age": "36"}', "$.age: '36' is not of type 'integer'"),
        ('{"name": "Ada"}', "'age' is a required property"),
        ("", "the reply is not JSON"),
        ('{"name": "\\u001b[2J", "age": 1.5}\x1b[31m', "the reply is not JSON"),
    ],
)
def test_a_reply_that_does_not_fit_is_invalid_reply_exit_5(reply, says):
    with pytest.raises(InvalidReply) as caught:
        check_reply(reply, schema_constraint(json.dumps(PERSON)))
    assert caught.value.exit_code == ExitCode.REJECTED and caught.value.kind == "invalid_reply"
    assert says in caught.value.message
    assert "\n" not in caught.value.message and "\x1b" not in caught.value.message


def test_json_mode_wants_an_object():
    with pytest.raises(InvalidReply, match="not an object"):
        check_reply("[1, 2]", json_mode())


def test_a_reply_cut_at_max_new_tokens_says_so():
    with pytest.raises(InvalidReply) as caught:
        check_reply('{"name": "Ada", "ag', schema_constraint(json.dumps(PERSON)), cut=True)
    assert "max-new-tokens" in caught.value.message
