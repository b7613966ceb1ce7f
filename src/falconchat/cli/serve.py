"""`falconchat serve`: settings, the local model and the server, which then runs until Ctrl-C."""

from __future__ import annotations

from dataclasses import dataclass

from falconchat.backends import open_in_process
from falconchat.backends.registry import BACKENDS
from falconchat.cli.options import load
from falconchat.environment import Environment
from falconchat.errors import UsageError
from falconchat.serve.server import TgiServer, is_loopback
from falconchat.serve.server import serve as run_server

DEFAULT_MAX_CONCURRENT_REQUESTS = 128  # TGI's default


@dataclass(frozen=True)
class ServeOptions:
    """`serve`'s own flags."""

    model: str | None
    model_path: str | None
    host: str
    port: int
    api_key: str | None
    max_concurrent_requests: int | None
    max_waiting: int | None  # the older flag: places beyond those decoding
    parallel: int | None
    max_input_tokens: int | None
    max_total_tokens: int | None
    client_timeout: float
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
    if options.max_waiting is not None and options.max_concurrent_requests is not None:
        raise UsageError("give --max-concurrent-requests or --max-waiting, not both (they set the same limit)")
    sequences = options.parallel or BACKENDS[spec.backend].default_sequences()
    backend = open_in_process(spec, sequences=sequences)
    try:
        concurrent = options.max_concurrent_requests or DEFAULT_MAX_CONCURRENT_REQUESTS
        if options.max_waiting is not None:
            concurrent = backend.sequences + options.max_waiting
        server = TgiServer(
            backend,
            model_id=spec.name,
            api_key=key,
            max_concurrent_requests=concurrent,
            max_input_tokens=options.max_input_tokens,
            max_total_tokens=options.max_total_tokens,
            client_timeout=options.client_timeout,
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
