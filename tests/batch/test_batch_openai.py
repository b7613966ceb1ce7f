"""`falconchat batch` with OpenAI's batch-file format (as `vllm run-batch` reads it), as a real
process against the scripted TGI endpoint: requests in, OpenAI's rows out, each row checked
against docs/batch-openai-row.schema.json (jsonschema) and parsed by the openai SDK's types."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from test_batch import run, summary

from processes import isolated_env

pytestmark = pytest.mark.process

DOCS = Path(__file__).resolve().parents[2] / "docs"
VALIDATOR = Draft202012Validator(json.loads((DOCS / "batch-openai-row.schema.json").read_text()))


@pytest.fixture
def env(tmp_path):
    return isolated_env(tmp_path)


def request(custom_id: str, body: dict, url: str = "/v1/chat/completions", **extra) -> dict:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body, **extra}


def chat(custom_id: str, text: str, **body) -> dict:
    return request(custom_id, {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **body})


def jsonl(*lines: dict | str) -> bytes:
    return b"".join((line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines)


def rows(data: bytes) -> list[dict]:
    """Every row whole, valid by the published schema, and readable by the openai SDK's types."""
    from openai.types import BatchError, Completion
    from openai.types.chat import ChatCompletion

    assert data == b"" or data.endswith(b"\n")
    found = [json.loads(line) for line in data.decode().splitlines()]
    for row in found:
        assert list(VALIDATOR.iter_errors(row)) == [], row
        body = row["response"]["body"]
        if body is not None:
            typed = (ChatCompletion if body["object"] == "chat.completion" else Completion).model_validate(body)
            assert typed.usage is not None and typed.usage.total_tokens == body["usage"]["total_tokens"]
        else:
            assert BatchError.model_validate(row["error"]).message
    return found


def answer_text(row: dict) -> str:
    choice = row["response"]["body"]["choices"][0]
    return choice["message"]["content"] if "message" in choice else choice["text"]


def test_chat_and_completions_requests_become_openai_rows_in_input_order(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo()
    lines = []
    for i in range(12):
        if i % 2:
            lines.append(
                request(f"r{i}", {"model": "m", "prompt": f"question {i}", "max_tokens": 20}, "/v1/completions")
            )
        else:
            lines.append(chat(f"r{i}", f"question {i}", max_completion_tokens=20, temperature=0.2, seed=7))
    (tmp_path / "job.jsonl").write_bytes(jsonl(*lines))
    result = run("job.jsonl", "-o", "out.jsonl", "--endpoint", tgi_endpoint.url, "-j", "4", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    found = rows((tmp_path / "out.jsonl").read_bytes())
    assert [r["custom_id"] for r in found] == [f"r{i}" for i in range(12)]
    for i, row in enumerate(found):
        assert row["response"]["status_code"] == 200 and row["error"] is None
        assert answer_text(row) == f"echo: question {i}"
        assert row["response"]["body"]["object"] == ("text_completion" if i % 2 else "chat.completion")
    assert len({r["id"] for r in found}) == 12
    # The body's fields reached the endpoint as our sampling values; `model` was named once.
    bodies = {tgi_endpoint_message(r.body): r.body["parameters"] for r in tgi_endpoint.requests if r.method == "POST"}
    assert bodies["question 0"]["max_new_tokens"] == 20 and bodies["question 0"]["seed"] == 7
    assert bodies["question 0"]["temperature"] == pytest.approx(0.2)
    stderr = result.stderr.decode()
    assert stderr.count("ignoring model 'gpt-4o-mini'") == 1 and stderr.count("ignoring model 'm'") == 1
    assert summary(result.stderr) == (12, 12, 0)


def tgi_endpoint_message(body: dict) -> str:
    from tgi_endpoint import _last_user_message

    return _last_user_message(body["inputs"])


BAD_REQUESTS = [
    (request("e1", {"input": "x"}, "/v1/embeddings"), "URL /v1/embeddings was used. Supported endpoints: "),
    (chat("e2", "hi", stream=True), "stream: true is not supported"),
    (chat("e3", "hi", n=2), "n = 2 is not supported"),
    (request("e4", ["not", "an", "object"]), "body must be a JSON object"),
    (chat("e5", "hi", temperature="hot"), "temperature"),
    (chat("e6", "hi", tools=[{"type": "function", "function": {"name": "f"}}]), "tools is not supported"),
    (chat("e7", "hi", response_format={"type": "xml"}), "response_format type 'xml' is not supported"),
]


def test_each_unusable_request_is_its_own_error_row_and_the_rest_runs(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo()
    lines = (
        [chat("ok1", "question 1")]
        + [line for line, _ in BAD_REQUESTS]
        + [chat("ok1", "again"), chat("ok2", "question 2")]
    )
    result = run("-", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=jsonl(*lines))
    assert result.returncode == 1, result.stderr
    found = rows(result.stdout)
    assert [r["custom_id"] for r in found] == ["ok1", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "ok1", "ok2"]
    for row, (_, says) in zip(found[1:8], BAD_REQUESTS):
        assert row["response"]["status_code"] == 400 and row["error"]["code"] == "invalid_request"
        assert says in row["error"]["message"], row
    assert "/v1/chat/completions, /v1/completions" in found[1]["error"]["message"]
    assert "custom_id 'ok1' was already used on line 1" in found[8]["error"]["message"]
    assert answer_text(found[9]) == "echo: question 2"
    posts = [r for r in tgi_endpoint.requests if r.method == "POST"]
    assert len(posts) == 2  # nothing refused was sent


def test_strict_refuses_a_file_with_an_unusable_request_before_anything_runs(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo()
    data = jsonl(chat("a", "question 1"), BAD_REQUESTS[0][0])
    result = run("-", "--strict", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=data)
    assert result.returncode == 2 and result.stdout == b""
    assert "nothing was run (--strict)" in result.stderr.decode()
    assert not [r for r in tgi_endpoint.requests if r.method == "POST"]


def test_a_reply_that_does_not_validate_is_a_422_row_and_errors_go_to_their_own_file(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo()  # "echo: …" is never JSON
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    data = jsonl(
        chat("plain", "question 1"),
        chat("obj", "question 2", response_format={"type": "json_object"}),
        chat(
            "sch", "question 3", response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
        ),
        request("url", {}, "/v1/embeddings"),
    )
    args = ("-", "-o", "out.jsonl", "--errors", "errors.jsonl", "--endpoint", tgi_endpoint.url)
    result = run(*args, cwd=tmp_path, env=env, input=data)
    assert result.returncode == 1, result.stderr
    good = rows((tmp_path / "out.jsonl").read_bytes())
    bad = rows((tmp_path / "errors.jsonl").read_bytes())
    assert [r["custom_id"] for r in good] == ["plain"]
    assert [(r["custom_id"], r["response"]["status_code"], r["error"]["code"]) for r in bad] == [
        ("obj", 422, "invalid_reply"),
        ("sch", 422, "invalid_reply"),
        ("url", 400, "invalid_request"),
    ]
    # The schema reached the endpoint as its grammar.
    grammars = [r.body["parameters"].get("grammar") for r in tgi_endpoint.requests if r.method == "POST"]
    assert {"type": "json", "value": schema} in grammars


def test_resume_keys_on_custom_id_skips_answered_rows_and_retries_failed_ones(tgi_endpoint, tmp_path, env):
    failing = {"question 2"}
    tgi_endpoint.echo(fault=lambda message, attempt: 422 if message in failing else None)
    job = tmp_path / "job.jsonl"
    job.write_bytes(jsonl(*[chat(f"c{i}", f"question {i}") for i in range(5)]))
    first = run("job.jsonl", "-o", "out.jsonl", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env)
    assert first.returncode == 1
    before = rows((tmp_path / "out.jsonl").read_bytes())
    assert [r["response"]["status_code"] for r in before] == [200, 200, 400, 200, 200]
    failing.clear()
    second = run("job.jsonl", "-o", "out.jsonl", "--resume", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env)
    assert second.returncode == 0, second.stderr
    after = rows((tmp_path / "out.jsonl").read_bytes())
    assert sorted(r["custom_id"] for r in after) == [f"c{i}" for i in range(5)]  # each id once
    assert all(r["error"] is None for r in after)
    assert [r["id"] for r in after[:4]] == [r["id"] for r in before if r["error"] is None]  # kept as written
    assert tgi_endpoint.echo_attempts == {f"question {i}": 2 if i == 2 else 1 for i in range(5)}


def test_a_file_mixing_formats_is_refused_naming_the_first_line_of_each(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo()
    data = jsonl({"id": "x", "prompt": "hi"}, chat("a", "hi"))
    result = run("-", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=data)
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode().strip().splitlines() == [
        'falconchat: error: line 2 is an OpenAI batch request and line 1 is falconchat\'s own {"id", "prompt"} line: '
        "one format per file"
    ]


def test_a_request_without_a_string_custom_id_is_a_bad_line(tgi_endpoint, tmp_path, env):
    tgi_endpoint.echo()
    data = jsonl(
        chat("a", "question 1"),
        {"method": "POST", "url": "/v1/chat/completions", "body": {}},
        {**chat("b", "x"), "custom_id": 3},
    )
    result = run("-", "--input-format", "openai", "--endpoint", tgi_endpoint.url, cwd=tmp_path, env=env, input=data)
    assert result.returncode == 1
    assert [r["custom_id"] for r in rows(result.stdout)] == ["a"]
    stderr = result.stderr.decode()
    assert "line 2: custom_id must be a non-empty string" in stderr and "line 3: custom_id" in stderr
