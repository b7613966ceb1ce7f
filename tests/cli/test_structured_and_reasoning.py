"""--schema fails closed and reasoning stays apart, through the commands in process, against
scripted endpoints over real HTTP: servers that ignore the schema, stream reasoning_content,
or split <think> across chunks (what real servers do not do on demand)."""

from __future__ import annotations

import json
import re

import pytest

from falconchat.backends.grammar import compile_constraint
from falconchat.cli.app import run
from falconchat.errors import ExitCode
from falconchat.structured import short_schema
from falconchat.types import Constraint
from in_process import environment
from openai_endpoint import OpenAIEndpoint

SCHEMA = '{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]}'
THINK = ["<th", "ink>\nThe user", " wants a name.</th", "ink>", "\n\n", "Ada", " it is."]


@pytest.fixture
def endpoint():
    server = OpenAIEndpoint()
    yield server
    server.close()


def one_error(env) -> str:
    lines = env.stderr.text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("falconchat: error: "), env.stderr.text()
    return lines[0]


# ---- structured output ------------------------------------------------------------------


def test_a_server_that_ignores_the_schema_is_exit_5_never_silent(tmp_path, endpoint):
    endpoint.reply(["Sure! Her name is Ada", " and she is 36."])
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "--schema", SCHEMA, "who?"], env) == ExitCode.REJECTED
    assert "the reply is not JSON" in one_error(env)
    assert env.stdout.text() == ""  # nothing a script could take for an answer
    [body] = endpoint.posts()
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == json.loads(SCHEMA)


def test_a_reply_of_the_wrong_shape_names_the_first_error(tmp_path, endpoint):
    endpoint.reply(['{"name": "Ada", ', '"age": "36"}'])
    env = environment(tmp_path)
    assert run(["ask", "--json", "--endpoint", endpoint.url, "--schema", SCHEMA, "who?"], env) == 5
    record = json.loads(env.stdout.text())
    assert record["error"]["kind"] == "invalid_reply" and record["data"] is None
    assert "$.age: '36' is not of type 'integer'" in record["error"]["message"]
    assert "$.age" in one_error(env)


def test_a_valid_reply_is_exactly_the_json_in_a_pipe_and_data_in_json(tmp_path, endpoint):
    endpoint.reply(['{"name": "Ada",', ' "age": 36}\n'])
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "--schema", "name, age int", "who?"], env) == 0
    assert env.stdout.text() == '{"name": "Ada", "age": 36}\n' and env.stderr.text() == ""
    env = environment(tmp_path)
    assert run(["ask", "--json", "--endpoint", endpoint.url, "--json-mode", "who?"], env) == 0
    record = json.loads(env.stdout.text())
    assert record["data"] == {"name": "Ada", "age": 36} and record["error"] is None
    assert endpoint.posts()[-1]["response_format"] == {"type": "json_object"}


def test_on_a_terminal_the_json_is_highlighted(tmp_path, endpoint):
    endpoint.reply(['{"name": "Ada\\u001b[2J", "age": 36}'])
    env = environment(tmp_path)
    env.stdout._tty = True
    assert run(["ask", "--endpoint", endpoint.url, "--schema", SCHEMA, "who?"], env) == 0
    shown = env.stdout.text()
    assert "\x1b[" in shown and "\x1b[2J" not in shown  # colours, never the model's own sequences
    assert '"age"' in shown and "36" in shown


def test_vllm_gets_structured_outputs(tmp_path, endpoint):
    endpoint.models = [{"id": "qwen3", "owned_by": "vllm", "max_model_len": 4096}]
    endpoint.reply(['{"name": "Ada", "age": 36}'])
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "--schema", SCHEMA, "who?"], env) == 0, env.stderr.text()
    assert endpoint.posts()[0]["structured_outputs"] == {"json": json.loads(SCHEMA)}


def test_tgi_gets_its_grammar_and_prose_is_still_refused(tmp_path, tgi_endpoint):
    tgi_endpoint.stream([" I", " refuse"], "eos_token")
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", tgi_endpoint.url, "--schema", SCHEMA, "who?"], env) == 5
    assert "not JSON" in one_error(env) and env.stdout.text() == ""
    grammar = tgi_endpoint.requests[0].body["parameters"]["grammar"]
    assert grammar == {"type": "json", "value": json.loads(SCHEMA)}


def test_a_bad_schema_is_exit_2_before_any_request(tmp_path, endpoint):
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "--schema", '{"type": 5}', "who?"], env) == ExitCode.USAGE
    assert "not a valid JSON Schema" in one_error(env) and endpoint.requests == []


def test_batch_lines_carry_their_own_schema(tmp_path, endpoint):
    endpoint.reply(['{"name": "Ada", "age": 36}'])
    endpoint.reply(["no JSON here"])
    lines = [
        {"id": "good", "prompt": "who?", "schema": json.loads(SCHEMA)},
        {"id": "bad", "prompt": "who?", "schema": "name, age int"},
    ]
    env = environment(tmp_path, "\n".join(json.dumps(x) for x in lines).encode())
    assert run(["batch", "-j", "1", "--endpoint", endpoint.url], env) == 1
    good, bad = (json.loads(line) for line in env.stdout.text().splitlines())
    assert good["data"] == {"name": "Ada", "age": 36} and good["reply"] == '{"name": "Ada", "age": 36}'
    assert bad["error"]["kind"] == "invalid_reply" and bad["error"]["exit_code"] == 5


# ---- reasoning ------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["reasoning_content", "reasoning", "think"])
def test_piped_reasoning_goes_nowhere_and_json_records_it(tmp_path, endpoint, style):
    if style == "think":
        endpoint.reply(THINK)
    else:
        endpoint.reply(["Ada", " it is."], reasoning=["\nThe user", " wants a name."], reasoning_field=style)
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "-v", "who?"], env) == 0
    assert env.stdout.text() == "Ada it is.\n"
    assert "wants a name" not in env.stderr.text() and "reasoning " in env.stderr.text()  # the -v stats
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "--show-reasoning", "who?"], env) == 0
    assert env.stdout.text() == "Ada it is.\n" and env.stderr.text() == "\nThe user wants a name.\n"
    env = environment(tmp_path)
    assert run(["ask", "--json", "--endpoint", endpoint.url, "who?"], env) == 0
    record = json.loads(env.stdout.text())
    assert record["reply"] == "Ada it is." and record["reasoning"] == "\nThe user wants a name."
    assert record["reasoning_s"] is not None


def test_batch_records_reasoning_apart(tmp_path, endpoint):
    endpoint.reply(THINK)
    env = environment(tmp_path, b"who?\n")
    assert run(["batch", "--endpoint", endpoint.url], env) == 0
    record = json.loads(env.stdout.text())
    assert record["reply"] == "Ada it is." and record["reasoning"] == "\nThe user wants a name."


def test_a_schema_reply_after_thinking_is_checked_without_the_thinking(tmp_path, endpoint):
    endpoint.reply(["<think>hmm {not json</think>", '{"name": "Ada", "age": 36}'])
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "--schema", SCHEMA, "who?"], env) == 0, env.stderr.text()
    assert env.stdout.text() == '{"name": "Ada", "age": 36}\n'


def test_a_reply_cut_by_max_new_tokens_is_exit_5_and_says_why(tmp_path, endpoint):
    endpoint.reply(['{"name": "Ada', "Ada"], finish_reason="length")
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "--json-mode", "who?"], env) == 5
    assert "raise --max-new-tokens" in one_error(env) and env.stdout.text() == ""


def test_a_constrained_reply_shows_its_progress_on_a_terminal_and_nothing_in_a_pipe(tmp_path, endpoint):
    """Issue 23 item 2: the reply is collected to be validated, so nothing streams to stdout;
    a terminal's stderr says it is being written, and the line is gone when it is done."""
    endpoint.reply(['{"name": ', '"Ada", ', '"age": ', "36}"], delay_s=0.15)
    env = environment(tmp_path)
    env.stderr._tty = True
    assert run(["ask", "--endpoint", endpoint.url, "--schema", "name, age int", "who?"], env) == 0
    shown = env.stderr.text()
    counts = [int(n) for n in re.findall(r"falconchat: writing JSON… (\d+)/512 tokens · \d+s \(Ctrl-C stops\)", shown)]
    assert counts[0] == 0 and max(counts) >= 1, shown  # drawn before the first token, then counting
    assert shown.endswith("\r\x1b[K")  # erased: the terminal is left as it was
    assert env.stdout.text() == '{"name": "Ada", "age": 36}\n'
    piped = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "--schema", "name, age int", "who?"], piped) == 0
    assert piped.stderr.text() == ""


def test_the_short_form_bounds_lists_so_a_small_model_cannot_run_on():
    schema = short_schema("name, age int, tags list")
    tags = schema["properties"]["tags"]
    assert tags["maxItems"] >= 5 and tags["items"]["maxLength"] >= 20
    gbnf = compile_constraint(Constraint("json_schema", schema))
    assert gbnf.count("tags-item") > tags["maxItems"]  # the grammar holds the bound, not only the check


# ---- thinking switches reach an OpenAI-compatible server's chat template ---------------------


def test_thinking_switches_reach_the_server_s_chat_template(tmp_path, endpoint):
    """Left open in issue 23: --thinking/--no-thinking and --reasoning-effort went nowhere on an
    OpenAI-compatible server. vLLM and llama.cpp's server take chat_template_kwargs (Qwen3's
    enable_thinking) and reasoning_effort (gpt-oss); nothing is sent unless asked."""
    endpoint.reply(["Ada", " it is."])
    for flags in ([], ["--no-thinking"], ["--thinking", "--reasoning-effort", "low"]):
        env = environment(tmp_path)
        assert run(["ask", "--endpoint", endpoint.url, *flags, "who?"], env) == 0, env.stderr.text()
    plain, off, low = endpoint.posts()
    assert "chat_template_kwargs" not in plain and "reasoning_effort" not in plain
    assert off["chat_template_kwargs"] == {"enable_thinking": False} and "reasoning_effort" not in off
    assert low["chat_template_kwargs"] == {"enable_thinking": True, "reasoning_effort": "low"}
    assert low["reasoning_effort"] == "low"


def test_a_configured_openai_model_s_thinking_and_a_schema_go_together(tmp_path, endpoint):
    endpoint.models = [{"id": "qwen3", "owned_by": "vllm"}]
    endpoint.reply(['{"name": "Ada", "age": 36}'])
    config = tmp_path / "config" / "falconchat" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[models.qwen]\nbackend = "openai"\nendpoint = "{endpoint.url}/v1"\nthinking = false\n')
    env = environment(tmp_path)
    assert run(["ask", "-m", "qwen", "--schema", SCHEMA, "who?"], env) == 0, env.stderr.text()
    [body] = endpoint.posts()
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["response_format"]["type"] == "json_schema"  # both parts of the request kept


def test_on_vllm_the_schema_and_the_thinking_switch_share_the_extra_body(tmp_path, endpoint):
    endpoint.models = [{"id": "qwen3", "owned_by": "vllm", "max_model_len": 4096}]
    endpoint.reply(['{"name": "Ada", "age": 36}'])
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", endpoint.url, "--no-thinking", "--schema", SCHEMA, "who?"], env) == 0
    [body] = endpoint.posts()
    assert body["structured_outputs"] == {"json": json.loads(SCHEMA)}
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
