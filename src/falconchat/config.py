"""Settings: flags > environment > .env > config TOML > defaults, and which model a command uses.

`load_settings()` reads everything once, at the edge (the CLI calls it); nothing
here runs at import time. Every wrong value becomes one `ConfigError` line that
names the setting, where it came from and what is allowed.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from falconchat.config_env import model_key_names, read_dotenv, unknown_name_warnings
from falconchat.config_models import IN_PROCESS, TAKES_THINKING, ModelSpec, local_defaults, model_from_toml
from falconchat.config_values import (
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_INPUT_BYTES,
    SAMPLING_KEYS,
    SETTINGS,
    parse,
)
from falconchat.errors import ConfigError, UsageError
from falconchat.types import SamplingParams

__all__ = ["SETTINGS", "Settings", "load_settings", "parse", "user_config_dir"]

BUNDLED_MODEL = "smollm2"

# Precedence levels: lower wins.
FLAG, ENV, DOTENV, TOML, DEFAULT = range(5)


@dataclass(frozen=True)
class Settings:
    model: ModelSpec
    system: str
    sampling: SamplingParams
    plain: bool = False
    verbose: bool = False
    debug: bool = False
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_file_size: int = DEFAULT_MAX_FILE_SIZE  # each -f/--file source
    models: Mapping[str, ModelSpec] = field(default_factory=dict)
    serve_api_key: str | None = field(default=None, repr=False)
    no_history: bool = False
    log: bool | None = None  # the conversation log: None, as `falconchat logs on|off` left it
    roles: Mapping[str, Role] = field(default_factory=dict)
    role: str | None = None
    warnings: tuple[str, ...] = ()  # one line each, for stderr: what was read but ignored


@dataclass(frozen=True)
class Role:
    """A named system prompt, with optional sampling defaults, from `[roles.NAME]`."""

    name: str
    system: str | None = None
    sampling: Mapping[str, Any] = field(default_factory=dict)


def user_config_dir(environ: Mapping[str, str]) -> Path:
    """config.toml and a .env file live here: $XDG_CONFIG_HOME/falconchat, ~/.config/falconchat."""
    from platformdirs import user_config_dir as _dir  # noqa: PLC0415 (heavy: platformdirs)

    return _xdg(environ, "XDG_CONFIG_HOME") or Path(_dir("falconchat", appauthor=False))


def user_data_dir(environ: Mapping[str, str]) -> Path:
    """Input history and saved sessions live here: $XDG_DATA_HOME/falconchat, ~/.local/share/…"""
    from platformdirs import user_data_dir as _dir  # noqa: PLC0415 (heavy: platformdirs)

    return _xdg(environ, "XDG_DATA_HOME") or Path(_dir("falconchat", appauthor=False))


def _xdg(environ: Mapping[str, str], name: str) -> Path | None:
    """The XDG variable of the command's environment (not the process's) where platformdirs
    would honour it: an absolute path, on Linux and the BSDs."""
    value = environ.get(name, "").strip()
    if value and os.path.isabs(value) and sys.platform not in ("darwin", "win32", "cygwin"):
        return Path(value) / "falconchat"
    return None


# ---- sources --------------------------------------------------------------------------


@dataclass
class Sources:
    """The raw layers, highest precedence first."""

    flags: Mapping[str, Any]
    environ: Mapping[str, str]
    dotenv: Mapping[str, str]
    toml: Mapping[str, Any]

    def lookup(self, name: str) -> tuple[Any, int, str]:
        """(raw value, level, where it came from) for one setting."""
        env_names, _, default = SETTINGS[name]
        if self.flags.get(name) is not None:
            return self.flags[name], FLAG, "--" + name.replace("_", "-")
        for var in env_names:
            if self.environ.get(var) not in (None, ""):
                return self.environ[var], ENV, var
        for var in env_names:
            if self.dotenv.get(var) not in (None, ""):
                return self.dotenv[var], DOTENV, f"{var} in .env"
        if name in self.toml:
            return self.toml[name], TOML, f"'{name}' in the config file"
        return default, DEFAULT, "default"

    def value(self, name: str) -> Any:
        raw, level, origin = self.lookup(name)
        if level == DEFAULT:
            return raw
        return parse(name, raw, origin)

    def variable(self, var: str) -> str | None:
        return self.environ.get(var) or self.dotenv.get(var) or None


def read_toml(config_path: str | None, cwd: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    path = cwd / config_path if config_path else user_config_dir(environ) / "config.toml"
    if not path.is_file():
        if config_path:
            raise ConfigError(f"config file not found: {config_path}")
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None


# ---- named models ----------------------------------------------------------------------


def named_models(src: Sources, defaults: dict[str, Any]) -> dict[str, ModelSpec]:
    models = {BUNDLED_MODEL: ModelSpec(name=BUNDLED_MODEL, backend="local", **local_defaults(defaults))}
    table = src.toml.get("models", {})
    if not isinstance(table, dict):
        raise ConfigError("'models' in the config file must be a table of [models.NAME] entries")
    for name, entry in table.items():
        models[name] = model_from_toml(name, entry, src.variable, defaults)
    return models


def choose_model(src: Sources, models: dict[str, ModelSpec], defaults: dict[str, Any]) -> ModelSpec:
    """The model name, endpoint URL and model file compete by precedence level.

    The best-placed one chooses; a lower-placed one is ignored (a `.env` endpoint
    does not override `-m smollm2`), one at the same level refines the choice
    where it applies and is a usage error where it does not.
    """
    name, name_level, name_origin = src.lookup("model")
    url_level, path_level = src.lookup("endpoint")[1], src.lookup("model_path")[1]
    best = min(name_level, url_level, path_level)
    if best == DEFAULT:
        return models[BUNDLED_MODEL]

    url = src.value("endpoint") if url_level == best else None
    path = src.value("model_path") if path_level == best else None
    if name_level == best:
        name = parse("model", name, name_origin)
        if url and name not in models:
            return _probed_endpoint(url, defaults, remote_model=name)  # -m names one of the server's models
        if name not in models and name.lower().startswith("hf:") and not path:  # a Hub model, found in its cache
            return ModelSpec(name=name, backend="local", model_path=name, **local_defaults(defaults))
        if name not in models:
            raise ConfigError(f"unknown model {name!r} (from {name_origin}); known: {', '.join(sorted(models))}")
        spec = models[name]
        if url and spec.backend in IN_PROCESS:
            raise UsageError(f"an endpoint URL cannot be used with the local model {name!r}")
        if path and spec.backend not in IN_PROCESS:
            raise UsageError(f"a model file cannot be used with the endpoint model {name!r}")
        changes = {"endpoint": url} if url else {"model_path": path} if path else {}
        return _replace(spec, **changes)
    if url and path:
        raise UsageError("choose either an endpoint URL or a model file, not both")
    if url:
        return _probed_endpoint(url, defaults)
    assert path is not None  # chosen above: the model file is the best-ranked source
    return ModelSpec(name=Path(path).name, backend="local", model_path=path, **local_defaults(defaults))


def _probed_endpoint(url: str, defaults: dict[str, Any], remote_model: str | None = None) -> ModelSpec:
    """`--endpoint URL`: the backend, model and context are asked of the server when it is opened."""
    return ModelSpec(
        name=remote_model or "endpoint",
        backend="auto",
        endpoint=url,
        context_length=defaults["context_length"],
        api_key=defaults["api_key"],
        auth_scheme=defaults["auth_scheme"],
        timeout=defaults["timeout"],
        remote_model=remote_model,
        format="auto",
    )


def _replace(spec: ModelSpec, **changes) -> ModelSpec:
    return replace(spec, **changes) if changes else spec


# ---- the one entry point -------------------------------------------------------------------


def load_settings(
    flags: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    cwd: Path,
) -> Settings:
    """Resolve every setting. `flags` holds the command line's values (None = not given);
    `environ` and `cwd` are the command's (its `Environment`'s), relative paths are from `cwd`."""
    env_file = flags.get("env_file") or environ.get("FALCONCHAT_ENV_FILE")
    env_files = read_dotenv(env_file, cwd, user_config_dir(environ))
    dotenv = env_files.values
    config_path = flags.get("config") or environ.get("FALCONCHAT_CONFIG") or dotenv.get("FALCONCHAT_CONFIG")
    src = Sources(flags=flags, environ=environ, dotenv=dotenv, toml=read_toml(config_path, cwd, environ))
    key_names = model_key_names(src.toml)
    warnings = (
        unknown_name_warnings(environ, "in the environment", key_names)
        + env_files.warnings
        + env_files.name_warnings(key_names)
    )
    unknown = set(src.toml) - set(SETTINGS) - {"models", "roles"}
    if unknown:
        raise ConfigError(f"unknown setting {sorted(unknown)[0]!r} in the config file")

    values = {name: src.value(name) for name in SETTINGS}
    roles = named_roles(src)
    if values["role"] is not None:
        apply_role(values, src, roles, values["role"])
    models = named_models(src, values)
    model = choose_model(src, models, values)
    # Flags and the environment beat a [models.NAME] entry's own fields.
    overrides = {
        key: values[key]
        for key in ("timeout", "auth_scheme", "context_length", "threads", "thinking", "reasoning_effort")
        if src.lookup(key)[1] < TOML and values[key] is not None
    }
    if model.backend not in TAKES_THINKING:  # the switches of a model's own chat template
        overrides = {k: v for k, v in overrides.items() if k not in ("thinking", "reasoning_effort")}
    model = _replace(model, **overrides)
    sampling = SamplingParams(
        temperature=values["temperature"],
        max_new_tokens=values["max_new_tokens"],
        top_p=values["top_p"],
        top_k=values["top_k"],
        repetition_penalty=values["repetition_penalty"],
        seed=values["seed"],
        stop=values["stop"],
    )
    return Settings(
        model=model,
        system=values["system"],
        sampling=sampling,
        plain=values["plain"],
        verbose=values["verbose"],
        debug=values["debug"],
        max_input_bytes=values["max_input_bytes"],
        max_file_size=values["max_file_size"],
        models=models,
        serve_api_key=values["serve_api_key"],
        no_history=values["no_history"],
        log=values["log"],
        roles=roles,
        role=values["role"],
        warnings=tuple(warnings),
    )


def named_roles(src: Sources) -> dict[str, Role]:
    table = src.toml.get("roles", {})
    if not isinstance(table, dict):
        raise ConfigError("'roles' in the config file must be a table of [roles.NAME] entries")
    roles = {}
    for name, entry in table.items():
        where = f"[roles.{name}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} in the config file must be a table")
        unknown = set(entry) - {"system", *SAMPLING_KEYS}
        if unknown:
            raise ConfigError(
                f"{where}: unknown field {sorted(unknown)[0]!r}; allowed: system, {', '.join(SAMPLING_KEYS)}"
            )
        system = parse("system", entry["system"], f"{where} system") if "system" in entry else None
        sampling = {key: parse(key, entry[key], f"{where} {key}") for key in SAMPLING_KEYS if key in entry}
        roles[name] = Role(name=name, system=system, sampling=sampling)
    return roles


def apply_role(values: dict[str, Any], src: Sources, roles: Mapping[str, Role], name: str) -> None:
    """A role's values beat the config file and defaults, never a flag or the environment."""
    if name not in roles:
        known = ", ".join(sorted(roles)) or "none are configured"
        raise ConfigError(f"unknown role {name!r}; known: {known}")
    role = roles[name]
    for key, value in (("system", role.system), *role.sampling.items()):
        if value is not None and src.lookup(key)[1] >= TOML:
            values[key] = value
