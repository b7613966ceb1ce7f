"""`falconchat serve`: settings, the local model and the server, which then runs until Ctrl-C."""

from __future__ import annotations

from dataclasses import dataclass

from falconchat.backends import open_in_process
from falconchat.backends.registry import BACKENDS
from falconchat.cli.options import load
from falconchat.environment import Environment
from falconchat.serve.server import TgiServer, is_loopback
from falconchat.serve.server import serve as run_server


@dataclass(frozen=True)
class ServeOptions:
    """`serve`'s own flags."""

    model: str | None
    model_path: str | None
    host: str
    port: int
    api_key: str | None
    max_waiting: int
    parallel: int | None
    debug: bool
    env_file: str | None
    config: str | None


def serve_model(env: Environment, options: ServeOptions) -> int:
    flags = {
        "model": options.model,
        "model_path": options.model_path,
        "env_file": options.env_file,
        "config": options.config,
        "debug": options.debug or None,
    }
    settings = load(flags, env)
    spec = settings.model
    if not BACKENDS[spec.backend].serves and not options.model:
        spec = settings.models["smollm2"]  # an endpoint in the environment is for chatting, not serving
    key = options.api_key or settings.serve_api_key
    backend = open_in_process(spec, sequences=options.parallel or BACKENDS[spec.backend].default_sequences())
    try:
        server = TgiServer(
            backend,
            model_id=spec.name,
            api_key=key,
            max_waiting=options.max_waiting,
            debug=env.debug,  # settled by `load`: --debug, FALCONCHAT_DEBUG, .env, the config file
            log=env.stderr,
        )
        if not is_loopback(options.host) and not key:
            print(
                f"falconchat: warning: serving on {options.host} without --api-key: anyone who can reach it can use it",
                file=env.stderr,
            )

        def ready(url: str) -> None:
            print(f"falconchat serve: {backend.describe()} on {url} (Ctrl-C to stop)", file=env.stderr, flush=True)

        return run_server(server, options.host, options.port, ready=ready)
    finally:
        backend.close()
