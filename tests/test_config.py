"""Settings: flags > environment > .env > config TOML > defaults, and named models."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from falconchat import config
from falconchat.config import load_settings, user_config_dir
from falconchat.errors import ConfigError, UsageError

# The flags the CLI passes: every shared name, None when not given; numbers arrive as text.
FLAG_NAMES = (
    "model",
    "endpoint",
    "model_path",
    "system",
    "temperature",
    "max_new_tokens",
    "top_p",
    "top_k",
    "repetition_penalty",
    "seed",
    "stop",
    "plain",
    "timeout",
    "verbose",
    "debug",
    "env_file",
    "config",
)

URL_A = "https://a.endpoints.huggingface.cloud"
URL_B = "https://b.example.org:8080"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An isolated user config dir (via XDG_CONFIG_HOME) and an empty working directory."""
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    cfg = xdg / "falconchat"
    cfg.mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    return SimpleNamespace(tmp=tmp_path, cfg=cfg, work=work)


def load(home, flags=None, env=None, cwd=None):
    full = dict.fromkeys(FLAG_NAMES)
    full.update(flags or {})
    return load_settings(full, environ=dict(env or {}), cwd=Path(cwd or home.work))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def config_error(home, *words, **kwargs) -> str:
    """Load, expect a ConfigError; check it is exit code 2, one line, naming each of `words`."""
    with pytest.raises(ConfigError) as info:
        load(home, **kwargs)
    message = str(info.value)
    assert info.value.exit_code == 2
    assert "\n" not in message and message.strip() == message and message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


# ---- where things are read from ---------------------------------------------------------


def test_user_config_dir_honours_xdg_config_home(home):
    assert user_config_dir(os.environ) == home.cfg  # the fixture sets XDG_CONFIG_HOME in the process
    elsewhere = home.tmp / "elsewhere"
    assert user_config_dir({"XDG_CONFIG_HOME": str(elsewhere)}) == elsewhere / "falconchat"  # the command's wins


def test_nothing_configured_runs_the_bundled_model(home):
    s = load(home)
    assert s.model.name == config.BUNDLED_MODEL == "smollm2"
    assert s.model.backend == "local"
    assert s.model.endpoint is None and s.model.model_path is None
    assert s.system == ""
    assert (s.sampling.temperature, s.sampling.max_new_tokens, s.sampling.stop) == (0.7, 512, ())
    assert s.plain is False and s.verbose is False
    assert "smollm2" in s.models


def test_classic_tutorial_variables_choose_the_tgi_endpoint(home):
    s = load(home, env={"HF_API_FALCOM_BASE": URL_A + "/", "HF_API_KEY": "hf_secret"})
    assert s.model.backend == "auto"  # asked of the server when opened: TGI's /info, or TGI as before
    assert s.model.endpoint.rstrip("/") == URL_A
    assert s.model.api_key == "hf_secret"
    assert s.model.auth_scheme == "Bearer"
    assert "hf_secret" not in repr(s.model)  # the key never shows in a repr


def test_classic_tutorial_variables_in_dotenv(home):
    write(home.work / ".env", f"HF_API_KEY=hf_dot\nHF_API_FALCOM_BASE={URL_A}\n")
    s = load(home)
    assert (s.model.backend, s.model.endpoint, s.model.api_key) == ("auto", URL_A, "hf_dot")


def test_falconchat_names_beat_the_tutorial_names(home):
    env = {
        "HF_API_FALCOM_BASE": URL_A,
        "FALCONCHAT_ENDPOINT": URL_B,
        "HF_API_KEY": "hf_old",
        "FALCONCHAT_API_KEY": "new",
    }
    s = load(home, env=env)
    assert (s.model.endpoint, s.model.api_key) == (URL_B, "new")


@pytest.mark.parametrize(
    "layers, expected",
    [
        (("flag", "env", "cwd_env", "user_env", "toml"), 0.1),
        (("env", "cwd_env", "user_env", "toml"), 0.2),
        (("cwd_env", "user_env", "toml"), 0.3),
        (("user_env", "toml"), 0.4),
        (("toml",), 0.5),
        ((), 0.7),
    ],
)
def test_precedence_flags_env_dotenv_toml_defaults(home, layers, expected):
    flags, env = {}, {}
    if "flag" in layers:
        flags["temperature"] = "0.1"
    if "env" in layers:
        env["FALCONCHAT_TEMPERATURE"] = "0.2"
    if "cwd_env" in layers:
        write(home.work / ".env", "FALCONCHAT_TEMPERATURE=0.3\n")
    if "user_env" in layers:
        write(home.cfg / ".env", "FALCONCHAT_TEMPERATURE=0.4\n")
    if "toml" in layers:
        write(home.cfg / "config.toml", "temperature = 0.5\n")
    assert load(home, flags=flags, env=env).sampling.temperature == expected


def test_dotenv_never_overrides_the_environment(home):
    write(home.work / ".env", f"FALCONCHAT_SYSTEM=from dotenv\nHF_API_KEY=dot\nFALCONCHAT_ENDPOINT={URL_A}\n")
    s = load(home, env={"FALCONCHAT_SYSTEM": "from env", "HF_API_KEY": "env", "HF_API_FALCOM_BASE": URL_B})
    assert s.system == "from env"
    assert s.model.api_key == "env"
    assert s.model.endpoint == URL_B  # any environment name beats any .env name


def test_parent_directory_dotenv_is_not_read(home):
    parent = home.tmp / "parent"
    child = parent / "child"
    child.mkdir(parents=True)
    write(parent / ".env", f"FALCONCHAT_ENDPOINT={URL_A}\nFALCONCHAT_SYSTEM=parent\n")
    s = load(home, cwd=child)
    assert s.model.backend == "local" and s.system == ""


def test_user_config_dir_dotenv_is_read_and_cwd_wins(home):
    write(home.cfg / ".env", "FALCONCHAT_SYSTEM=user\nFALCONCHAT_TOP_K=7\n")
    assert load(home).system == "user"
    write(home.work / ".env", "FALCONCHAT_SYSTEM=cwd\n")
    s = load(home)
    assert s.system == "cwd"
    assert s.sampling.top_k == 7  # the user's .env still supplies what cwd's lacks


def test_env_file_replaces_the_default_dotenvs(home):
    write(home.work / ".env", "FALCONCHAT_SYSTEM=cwd\nFALCONCHAT_TOP_K=3\n")
    write(home.cfg / ".env", "FALCONCHAT_SYSTEM=user\nFALCONCHAT_TOP_K=4\n")
    other = write(home.tmp / "elsewhere" / "prod.env", "FALCONCHAT_SYSTEM=chosen\n")
    s = load(home, flags={"env_file": str(other)})
    assert s.system == "chosen"
    assert s.sampling.top_k == 50  # neither default .env was read


def test_missing_env_file_is_a_config_error(home):
    missing = str(home.tmp / "nope.env")
    config_error(home, missing, flags={"env_file": missing})


def test_config_flag_reads_that_toml(home):
    write(home.cfg / "config.toml", "system = 'user file'\n")
    other = write(home.tmp / "other.toml", "system = 'other file'\ntop_k = 9\n")
    s = load(home, flags={"config": str(other)})
    assert (s.system, s.sampling.top_k) == ("other file", 9)


def test_missing_config_flag_file_is_a_config_error(home):
    missing = str(home.tmp / "nope.toml")
    config_error(home, missing, flags={"config": missing})


# ---- named models ----------------------------------------------------------------------

MODELS_TOML = f"""
[models.remote]
backend = "tgi"
endpoint = "{URL_A}"
api_key_env = "MY_REMOTE_KEY"
auth_scheme = "Basic"
timeout = 33
context_length = 4096

[models.tiny]
backend = "local"
model_path = "/models/tiny.gguf"
context_length = 1024
"""


@pytest.fixture
def with_models(home):
    write(home.cfg / "config.toml", MODELS_TOML)
    return home


def test_named_tgi_model_and_its_fields(with_models):
    s = load(with_models, flags={"model": "remote"}, env={"MY_REMOTE_KEY": "k-123", "HF_API_KEY": "other"})
    m = s.model
    assert (m.name, m.backend, m.endpoint) == ("remote", "tgi", URL_A)
    assert (m.api_key, m.auth_scheme, m.timeout, m.context_length) == ("k-123", "Basic", 33.0, 4096)
    assert set(s.models) == {"smollm2", "remote", "tiny"}


def test_api_key_env_may_name_a_dotenv_variable(with_models):
    write(with_models.work / ".env", "MY_REMOTE_KEY=from-dotenv\n")
    assert load(with_models, flags={"model": "remote"}).model.api_key == "from-dotenv"


def test_named_local_model_and_its_fields(with_models):
    m = load(with_models, flags={"model": "tiny"}).model
    assert (m.name, m.backend, m.model_path, m.context_length) == ("tiny", "local", "/models/tiny.gguf", 1024)
    assert m.endpoint is None


def test_model_chosen_from_environment_and_toml(with_models):
    assert load(with_models, env={"FALCONCHAT_MODEL": "tiny"}).model.name == "tiny"
    write(with_models.cfg / "config.toml", "model = 'remote'\n" + MODELS_TOML)
    assert load(with_models).model.name == "remote"


def test_unknown_model_lists_the_known_ones(with_models):
    message = config_error(with_models, "nosuch", "--model", flags={"model": "nosuch"})
    for known in ("smollm2", "remote", "tiny"):
        assert known in message


def test_timeout_flag_beats_the_model_entry(with_models):
    assert load(with_models, flags={"model": "remote"}).model.timeout == 33.0
    assert load(with_models, flags={"model": "remote", "timeout": "5"}).model.timeout == 5.0
    assert load(with_models, flags={"model": "remote"}, env={"FALCONCHAT_TIMEOUT": "7"}).model.timeout == 7.0


def test_dotenv_endpoint_does_not_override_model_flag(home):
    write(home.work / ".env", f"HF_API_FALCOM_BASE={URL_A}\nHF_API_KEY=hf\n")
    m = load(home, flags={"model": "smollm2"}).model
    assert (m.name, m.backend, m.endpoint) == ("smollm2", "local", None)


def test_environment_endpoint_does_not_override_model_flag(home):
    m = load(home, flags={"model": "smollm2"}, env={"FALCONCHAT_ENDPOINT": URL_A}).model
    assert m.backend == "local"


def test_local_model_flag_with_endpoint_flag_is_a_usage_error(home):
    with pytest.raises(UsageError) as info:
        load(home, flags={"model": "smollm2", "endpoint": URL_A})
    assert info.value.exit_code == 2
    assert "smollm2" in str(info.value)


def test_endpoint_flag_refines_a_named_tgi_model(with_models):
    m = load(with_models, flags={"model": "remote", "endpoint": URL_B}, env={"MY_REMOTE_KEY": "k"}).model
    assert (m.name, m.endpoint, m.api_key, m.auth_scheme) == ("remote", URL_B, "k", "Basic")


def test_endpoint_flag_beats_model_from_environment(with_models):
    m = load(with_models, flags={"endpoint": URL_B}, env={"FALCONCHAT_MODEL": "tiny"}).model
    assert (m.backend, m.endpoint) == ("auto", URL_B)


# ---- wrong values ----------------------------------------------------------------------

BAD_VALUES = [
    ("temperature", "abc"),
    ("top_p", "1.5"),
    ("max_new_tokens", "0"),
    ("seed", "-1"),
    ("timeout", "nan"),
    ("endpoint", "ftp://example.org"),
    ("endpoint", "not a url"),
    ("top_k", "-3"),
    ("repetition_penalty", "0"),
]


@pytest.mark.parametrize("name, raw", BAD_VALUES)
def test_bad_flag_value(home, name, raw):
    config_error(home, name.replace("_", "-"), "--" + name.replace("_", "-"), repr(raw), flags={name: raw})


@pytest.mark.parametrize("name, raw", BAD_VALUES)
def test_bad_environment_value(home, name, raw):
    var = config.SETTINGS[name][0][0]
    config_error(home, name.replace("_", "-"), var, env={var: raw})


@pytest.mark.parametrize("name, raw", BAD_VALUES)
def test_bad_dotenv_value(home, name, raw):
    var = config.SETTINGS[name][0][0]
    write(home.work / ".env", f"{var}={raw}\n")
    message = config_error(home, name.replace("_", "-"), var)
    assert ".env" in message


@pytest.mark.parametrize(
    "name, raw",
    [
        ("temperature", '"abc"'),
        ("top_p", "1.5"),
        ("max_new_tokens", "0"),
        ("seed", "-1"),
        ("timeout", "nan"),
        ("endpoint", '"ftp://x.org/y"'),
    ],
)
def test_bad_toml_value(home, name, raw):
    write(home.cfg / "config.toml", f"{name} = {raw}\n")
    config_error(home, name.replace("_", "-"), "config file")


def test_fractional_integer_in_toml_is_rejected_not_truncated(home):
    write(home.cfg / "config.toml", "max_new_tokens = 2.5\n")
    config_error(home, "max-new-tokens", "config file")


def test_bad_toml_file(home):
    path = write(home.cfg / "config.toml", "temperature = = 1\n[unclosed\n")
    config_error(home, str(path), "TOML")


def test_unknown_toml_key(home):
    write(home.cfg / "config.toml", "temprature = 0.5\n")
    config_error(home, "temprature", "config file")


def test_unknown_backend(home):
    write(home.cfg / "config.toml", "[models.odd]\nbackend = 'foo'\n")
    config_error(home, "models.odd", "backend", "foo", flags={"model": "odd"})


def test_transformers_model_entry(home):
    write(
        home.cfg / "config.toml",
        "[models.hf]\nbackend = 'transformers'\nmodel_path = '/models/smol'\n"
        "device = 'cuda:1'\nformat = 'native'\n\n[models.plain]\nbackend = 'transformers'\n",
    )
    m = load(home, flags={"model": "hf"}).model
    assert (m.backend, m.model_path, m.device, m.format, m.endpoint) == (
        "transformers",
        "/models/smol",
        "cuda:1",
        "native",
        None,
    )
    plain = load(home, flags={"model": "plain"}).model
    assert (plain.model_path, plain.device, plain.format) == (None, None, "auto")  # the bundled GGUF, device auto
    assert load(home, flags={"model": "hf", "model_path": "/other"}).model.model_path == "/other"
    with pytest.raises(UsageError):
        load(home, flags={"model": "hf", "endpoint": URL_A})


def test_local_models_default_to_the_auto_format_and_endpoints_to_falcon(home):
    """Issue 15, item 10: a local model's format is "auto" (its own chat template when it carries
    one, decided when the backend loads it); an explicit format wins; TGI stays Falcon-style."""
    write(
        home.cfg / "config.toml",
        "[models.gguf]\nbackend = 'local'\nmodel_path = '/m.gguf'\n\n"
        "[models.classic]\nbackend = 'local'\nformat = 'falcon'\n\n"
        "[models.tgi]\nbackend = 'tgi'\nendpoint = 'http://127.0.0.1:1'\n",
    )
    assert load(home).model.format == "auto"  # the bundled model
    assert load(home, flags={"model_path": "/x.gguf"}).model.format == "auto"
    assert load(home, flags={"model": "gguf"}).model.format == "auto"
    assert load(home, flags={"model": "classic"}).model.format == "falcon"
    assert load(home, flags={"model": "classic", "model_path": "/x.gguf"}).model.format == "falcon"
    assert load(home, flags={"model": "tgi"}).model.format == "falcon"
    write(home.cfg / "config.toml", "[models.x]\nbackend = 'tgi'\nendpoint = 'http://127.0.0.1:1'\nformat = 'auto'\n")
    with pytest.raises(ConfigError, match="format for a tgi model must be one of falcon"):
        load(home, flags={"model": "x"})


def test_device_is_checked_and_only_for_transformers(home):
    write(home.cfg / "config.toml", "[models.hf]\nbackend = 'transformers'\ndevice = 'gpu'\n")
    config_error(home, "models.hf", "device", "gpu")
    write(home.cfg / "config.toml", f"[models.r]\nbackend = 'tgi'\nendpoint = '{URL_A}'\ndevice = 'cpu'\n")
    config_error(home, "models.r", "device", "transformers")


def test_unknown_model_field(home):
    write(home.cfg / "config.toml", f"[models.r]\nbackend = 'tgi'\nendpoint = '{URL_A}'\napi_key = 'inline'\n")
    config_error(home, "models.r", "api_key")


def test_tgi_model_without_endpoint(home):
    write(home.cfg / "config.toml", "[models.r]\nbackend = 'tgi'\n")
    config_error(home, "models.r", "endpoint")


def test_bad_value_inside_a_model_entry(home):
    write(home.cfg / "config.toml", f"[models.r]\nbackend = 'tgi'\nendpoint = '{URL_A}'\ntimeout = -5\n")
    config_error(home, "timeout", "models.r")


def test_long_bad_value_is_shortened_and_stays_one_line(home):
    message = config_error(home, "temperature", env={"FALCONCHAT_TEMPERATURE": "x\n" * 100})
    assert len(message) < 300


# ---- stop sequences and switches -------------------------------------------------------


def test_stop_from_flags_list(home):
    assert load(home, flags={"stop": ["###", "\nQ:"]}).sampling.stop == ("###", "\nQ:")


def test_stop_from_environment_json_array(home):
    s = load(home, env={"FALCONCHAT_STOP": '["###", "<end>"]'})
    assert s.sampling.stop == ("###", "<end>")


def test_stop_from_environment_single_string(home):
    assert load(home, env={"FALCONCHAT_STOP": "<end>"}).sampling.stop == ("<end>",)


def test_stop_single_string_that_starts_with_a_bracket(home):
    # "[/INST]" is a common stop sequence; as a single string it must not be read as broken JSON.
    assert load(home, env={"FALCONCHAT_STOP": "[/INST]"}).sampling.stop == ("[/INST]",)


def test_stop_flag_beats_environment(home):
    s = load(home, flags={"stop": ["A"]}, env={"FALCONCHAT_STOP": "B"})
    assert s.sampling.stop == ("A",)


def test_bad_stop_json_array(home):
    config_error(home, "stop", "FALCONCHAT_STOP", env={"FALCONCHAT_STOP": '["ok", 3]'})


def test_boolean_switches_from_environment(home):
    s = load(home, env={"FALCONCHAT_PLAIN": "1", "FALCONCHAT_VERBOSE": "yes"})
    assert s.plain is True and s.verbose is True
    config_error(home, "plain", "FALCONCHAT_PLAIN", env={"FALCONCHAT_PLAIN": "maybe"})


def test_numbers_are_typed(home):
    s = load(home, flags={"temperature": "0", "max_new_tokens": "64", "top_p": "1", "seed": "42"})
    assert s.sampling.temperature == 0.0 and isinstance(s.sampling.max_new_tokens, int)
    assert (s.sampling.max_new_tokens, s.sampling.top_p, s.sampling.seed) == (64, 1.0, 42)


def test_base_url_is_accepted_beside_endpoint_as_openai_users_name_it(home):
    write(home.cfg / "config.toml", f'[models.mine]\nbackend = "openai"\nbase_url = "{URL_A}/v1"\n')
    model = load(home, flags={"model": "mine"}).model
    assert (model.backend, model.endpoint) == ("openai", URL_A + "/v1")


def test_two_names_for_the_url_are_one_too_many(home):
    write(home.cfg / "config.toml", f'[models.mine]\nendpoint = "{URL_A}"\nbase_url = "{URL_B}"\n')
    config_error(home, "[models.mine]", "endpoint and base_url", flags={"model": "mine"})


# ---- what would be silently ignored: misspelt names, unparsable lines (issue 15, item 16) ------


def test_unknown_falconchat_name_in_dotenv_is_one_warning_with_the_closest_name(home):
    path = write(home.work / ".env", "FALCONCHAT_TEMP=0\n")
    s = load(home)
    assert s.sampling.temperature == 0.7  # ignored, and said so
    assert len(s.warnings) == 1
    (line,) = s.warnings
    assert "FALCONCHAT_TEMP " in line and str(path) in line and "FALCONCHAT_TEMPERATURE" in line


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("FALCONCHAT_MAXNEWTOKENS", "FALCONCHAT_MAX_NEW_TOKENS"), ("FALCONCHAT_TEMPRATURE", "FALCONCHAT_TEMPERATURE")],
)
def test_unknown_falconchat_name_in_the_environment_names_the_closest(home, typed, meant):
    (line,) = load(home, env={typed: "1"}).warnings
    assert typed in line and "environment" in line and line.endswith(f"did you mean {meant}?")


def test_a_name_close_to_nothing_is_warned_without_a_guess(home):
    (line,) = load(home, env={"FALCONCHAT_XYZZY": "1"}).warnings
    assert "FALCONCHAT_XYZZY" in line and "did you mean" not in line


def test_known_names_and_a_models_api_key_env_are_not_warned(home):
    write(
        home.cfg / "config.toml", '[models.r]\nendpoint = "https://r.example.org"\napi_key_env = "FALCONCHAT_R_KEY"\n'
    )
    env = {"FALCONCHAT_TEMPERATURE": "0", "FALCONCHAT_R_KEY": "k", "FALCONCHAT_CONFIG": str(home.cfg / "config.toml")}
    assert load(home, env=env).warnings == ()


@pytest.mark.parametrize("name", ["HF_API_FALCON_BASE", "HF_API_FALCOM_BASE"])
def test_both_spellings_of_the_tutorial_endpoint_name_are_read(home, name):
    write(home.work / ".env", f"{name}={URL_A}\n")
    s = load(home)
    assert s.model.endpoint == URL_A and s.warnings == ()


def test_malformed_dotenv_line_names_the_file_and_line_and_the_rest_is_read(home):
    path = write(home.work / ".env", "FALCONCHAT_SYSTEM=kept\nthis is not a line\nFALCONCHAT_TOP_K=7\n")
    s = load(home)
    assert (s.system, s.sampling.top_k) == ("kept", 7)
    (line,) = s.warnings
    assert str(path) in line and "line 2" in line and "\n" not in line
