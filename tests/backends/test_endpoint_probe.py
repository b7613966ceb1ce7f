"""`--endpoint URL` alone: the probe picks the API, the model and the context, against scripted
servers over real HTTP (the real servers are in test_endpoint_servers.py)."""

from __future__ import annotations

import re

import pytest

from falconchat.backends.probe import resolve
from falconchat.cli.app import run
from falconchat.config_models import ModelSpec
from falconchat.errors import ConfigError, ExitCode, Unreachable, UsageError
from in_process import environment
from openai_endpoint import OpenAIEndpoint


@pytest.fixture
def openai_endpoint():
    endpoint = OpenAIEndpoint()
    yield endpoint
    endpoint.close()


def auto(url: str, model: str | None = None, **changes) -> ModelSpec:
    return ModelSpec(
        name=model or "endpoint", backend="auto", endpoint=url, remote_model=model, format="auto", **changes
    )


def test_tgi_info_picks_the_tgi_backend(tgi_endpoint):
    spec = resolve(auto(tgi_endpoint.url))
    assert (spec.backend, spec.format, spec.name, spec.endpoint) == ("tgi", "falcon", "scripted/tgi", tgi_endpoint.url)
    assert [r.path for r in tgi_endpoint.gets] == ["/info"]


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_a_model_list_picks_the_openai_backend_with_or_without_v1(openai_endpoint, suffix):
    openai_endpoint.models = [{"id": "qwen3", "owned_by": "vllm", "max_model_len": 32768}]
    spec = resolve(auto(openai_endpoint.url + suffix))
    assert (spec.backend, spec.format, spec.remote_model) == ("openai", "chat", "qwen3")
    assert spec.endpoint == openai_endpoint.url + "/v1"
    assert spec.context_length == 32768 and spec.server == "vllm"


def test_several_models_need_a_name_and_a_wrong_one_lists_them(openai_endpoint):
    openai_endpoint.models = [{"id": "a"}, {"id": "b"}]
    with pytest.raises(UsageError) as several:
        resolve(auto(openai_endpoint.url))
    assert "a, b" in several.value.message and "-m" in several.value.message
    assert resolve(auto(openai_endpoint.url, "b")).remote_model == "b"
    with pytest.raises(ConfigError) as wrong:
        resolve(auto(openai_endpoint.url, "c"))
    assert "no model 'c'" in wrong.value.message and "it has: a, b" in wrong.value.message


def test_nothing_listening_is_unreachable(closed_port_url):
    with pytest.raises(Unreachable):
        resolve(auto(closed_port_url))


def test_a_configured_backend_is_not_probed(tgi_endpoint):
    spec = ModelSpec(name="x", backend="openai", endpoint=tgi_endpoint.url, format="chat")
    assert resolve(spec) is spec and tgi_endpoint.gets == []


def test_ask_with_endpoint_alone_speaks_openai(tmp_path, openai_endpoint):
    openai_endpoint.reply(["Hello", " there"])
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", openai_endpoint.url, "hi"], env) == ExitCode.OK, env.stderr.text()
    assert env.stdout.text() == "Hello there\n"
    [body] = openai_endpoint.posts()
    assert body["model"] == "scripted-model" and body["messages"][-1] == {"role": "user", "content": "hi"}


def test_a_config_entry_with_only_an_endpoint_is_probed(tmp_path, openai_endpoint):
    openai_endpoint.models = [{"id": "a"}, {"id": "b"}]
    openai_endpoint.reply(["ok"])
    config = tmp_path / "config.toml"
    config.write_text(f'[models.box]\nendpoint = "{openai_endpoint.url}"\nmodel = "b"\n')
    env = environment(tmp_path)
    assert run(["ask", "--json", "--config", str(config), "-m", "box", "hi"], env) == ExitCode.OK, env.stderr.text()
    assert '"backend": "openai"' in env.stdout.text() and '"model": "box"' in env.stdout.text()
    assert openai_endpoint.posts()[0]["model"] == "b"


def test_models_lists_a_servers_models(tmp_path, openai_endpoint):
    openai_endpoint.models = [{"id": "a", "owned_by": "vllm", "max_model_len": 8192}, {"id": "b\x1b[2J"}]
    env = environment(tmp_path)
    assert run(["models", "--endpoint", openai_endpoint.url], env) == ExitCode.OK, env.stderr.text()
    out = env.stdout.text()
    assert "OpenAI-compatible API (vllm)" in out and "8192" in out and "\x1b" not in out
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["a", "b"]


def test_models_with_the_endpoint_before_the_command_lists_that_servers_models(tmp_path, openai_endpoint):
    """`falconchat --endpoint URL models` listed the configured models instead, as if no URL was given."""
    openai_endpoint.models = [{"id": "served-one"}]
    env = environment(tmp_path)
    assert run(["--endpoint", openai_endpoint.url, "models"], env) == ExitCode.OK, env.stderr.text()
    assert "OpenAI-compatible API" in env.stdout.text() and "served-one" in env.stdout.text()


def test_several_models_without_a_name_is_one_usage_line(tmp_path, openai_endpoint):
    openai_endpoint.models = [{"id": "a"}, {"id": "b"}]
    env = environment(tmp_path)
    assert run(["ask", "--endpoint", openai_endpoint.url, "hi"], env) == ExitCode.USAGE
    [line] = env.stderr.text().splitlines()
    assert line.startswith("falconchat: error: ") and "a, b" in line


def test_models_checks_an_endpoint_only_entry(tmp_path, openai_endpoint, closed_port_url):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[models.box]\nendpoint = "{openai_endpoint.url}"\n[models.gone]\nendpoint = "{closed_port_url}"\n'
    )
    env = environment(tmp_path)
    assert run(["models", "--config", str(config)], env) == ExitCode.OK, env.stderr.text()
    rows = {line.split()[0]: line for line in env.stdout.text().splitlines()[1:]}
    assert rows["box"].split()[1:3] == ["openai", "chat"] and rows["box"].endswith("ok")  # what the probe found
    assert "cannot reach" in rows["gone"]


def test_models_fits_a_narrow_terminal_and_pads_nothing_in_a_pipe(tmp_path, openai_endpoint, closed_port_url):
    """Issue 23 item 11: always 120 columns, so a 60-column window wrapped every row and a
    pipe got every line padded with spaces to 120."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[models.box]\nendpoint = "{openai_endpoint.url}"\n[models.gone]\nendpoint = "{closed_port_url}"\n'
    )
    env = environment(tmp_path, COLUMNS="60")
    env.stdout._tty = True
    assert run(["models", "--config", str(config)], env) == ExitCode.OK, env.stderr.text()
    lines = re.sub(r"\x1b\[[0-9;]*m", "", env.stdout.text()).splitlines()  # the header is bold
    assert max(len(line) for line in lines) <= 60, lines
    assert len(lines) > 4 and lines[-1].endswith("running")  # the status wrapped, not cut
    assert all(line == line.rstrip() for line in lines), lines
    piped = environment(tmp_path, COLUMNS="60")
    assert run(["models", "--config", str(config)], piped) == ExitCode.OK
    lines = piped.stdout.text().splitlines()
    assert len(lines) == 4 and all(line == line.rstrip() for line in lines), lines  # a row a line
    assert [line.split()[0] for line in lines[1:]] == ["*", "box", "gone"]
    assert "check the URL" in lines[3]
