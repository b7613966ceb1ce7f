"""The Typer app: argument parsing, wiring and exit codes — nothing else."""

from __future__ import annotations

import functools
import inspect
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

import typer

from falconchat import __version__
from falconchat.cli.environment import Environment
from falconchat.errors import ExitCode, FalconchatError, InputError, UsageError

app = typer.Typer(
    name="falconchat",
    help="Chat with open LLMs in the terminal: the bundled model offline, or a text-generation-inference endpoint.",
    add_completion=True,  # --install-completion for bash, zsh, fish
    invoke_without_command=True,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: no markup to escape, and no Rich import for --help
    context_settings={"help_option_names": ["-h", "--help"]},
)

# The flags every command takes: (name, type, typer.Option). Numbers arrive as text
# and are checked by config, so a wrong value reads the same from a flag, the
# environment or a file.
SHARED_OPTIONS: list[tuple[str, Any, Any]] = [
    (
        "model",
        Optional[str],
        typer.Option(
            None,
            "--model",
            "-m",
            metavar="NAME",
            help="Model name: smollm2 (bundled) or a [models.NAME] from the config.",
        ),
    ),
    (
        "endpoint",
        Optional[str],
        typer.Option(None, "--endpoint", metavar="URL", help="A text-generation-inference base URL."),
    ),
    (
        "model_path",
        Optional[str],
        typer.Option(None, "--model-path", metavar="FILE", help="A GGUF model file to run locally."),
    ),
    ("system", Optional[str], typer.Option(None, "--system", "-s", metavar="TEXT", help="System message.")),
    (
        "temperature",
        Optional[str],
        typer.Option(
            None,
            "--temperature",
            "--temp",
            "-t",
            metavar="FLOAT",
            help="Sampling temperature; 0 is greedy.  [default: 0.7]",
        ),
    ),
    (
        "max_new_tokens",
        Optional[str],
        typer.Option(
            None, "--max-new-tokens", "--max-tokens", metavar="INT", help="Longest reply, in tokens.  [default: 512]"
        ),
    ),
    ("top_p", Optional[str], typer.Option(None, "--top-p", metavar="FLOAT", help="Nucleus sampling.  [default: 0.95]")),
    (
        "top_k",
        Optional[str],
        typer.Option(None, "--top-k", metavar="INT", help="Top-k sampling; 0 turns it off.  [default: 50]"),
    ),
    (
        "repetition_penalty",
        Optional[str],
        typer.Option(
            None, "--repetition-penalty", metavar="FLOAT", help="Penalty for repeated tokens.  [default: 1.0]"
        ),
    ),
    ("seed", Optional[str], typer.Option(None, "--seed", metavar="INT", help="Random seed, for repeatable sampling.")),
    (
        "stop",
        Optional[list[str]],
        typer.Option(None, "--stop", metavar="TEXT", help="Extra stop sequence (repeatable)."),
    ),
    ("plain", bool, typer.Option(False, "--plain", help="Plain text instead of rendered Markdown.")),
    (
        "schema",
        Optional[str],
        typer.Option(
            None,
            "--schema",
            metavar="SCHEMA",
            help="Reply in JSON matching this JSON Schema (a file, inline JSON, or fields: 'name, age int, tags list'); a reply that does not match is exit 5.",
        ),
    ),
    (
        "json_mode",
        bool,
        typer.Option(False, "--json-mode", help="Reply with a JSON object (any); anything else is exit 5."),
    ),
    (
        "show_reasoning",
        bool,
        typer.Option(
            False,
            "--show-reasoning",
            help="Keep a thinking model's reasoning: whole and dimmed on a terminal, on stderr in a pipe.",
        ),
    ),
    (
        "timeout",
        Optional[str],
        typer.Option(None, "--timeout", metavar="SECONDS", help="Endpoint connect/read timeout.  [default: 120]"),
    ),
    ("verbose", bool, typer.Option(False, "--verbose", "-v", help="Statistics on stderr after each reply.")),
    ("debug", bool, typer.Option(False, "--debug", help="Show tracebacks.")),
    (
        "env_file",
        Optional[str],
        typer.Option(None, "--env-file", metavar="PATH", help="Read this .env file instead of ./.env and the user's."),
    ),
    ("config", Optional[str], typer.Option(None, "--config", metavar="PATH", help="Config TOML file.")),
    (
        "role",
        Optional[str],
        typer.Option(
            None,
            "--role",
            "-r",
            metavar="NAME",
            help="A [roles.NAME] from the config: its system message and settings.",
        ),
    ),
]
SHARED_NAMES = [name for name, _, _ in SHARED_OPTIONS]
PROBE_WAIT_S = 5.0  # how long the chat waits, at start or /model, for an endpoint to say which API it speaks


@dataclass
class Invocation:
    """Typer's `ctx.obj`: the environment the command runs in, and the shared flags given
    before the subcommand (`falconchat -m x ask …`)."""

    env: Environment
    shared: dict[str, Any] = field(default_factory=dict)


def invocation(ctx: typer.Context) -> Invocation:
    return ctx.find_root().obj


def with_shared_options(func):
    """Give a command the shared flags; it receives them as one dict, `shared`."""
    own = [p for p in inspect.signature(func).parameters.values() if p.name != "shared"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
        for name, kind, option in SHARED_OPTIONS
    ]

    @functools.wraps(func)
    def command(*args, **kwargs):
        shared = {name: kwargs.pop(name) for name in SHARED_NAMES}
        return func(*args, shared=shared, **kwargs)

    command.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]  # what Typer reads
    return command


def merged_flags(ctx: typer.Context, shared: dict[str, Any]) -> dict[str, Any]:
    """A subcommand's flags over those given before it (`falconchat -m x ask …`)."""
    parent = dict(invocation(ctx).shared)
    for name, value in shared.items():
        if value not in (None, False, [], ()):
            parent[name] = value
    return {name: (True if value is True else value or None) for name, value in parent.items()}


def load(flags: dict[str, Any], env: Environment):
    from falconchat.config import load_settings

    return load_settings(flags, environ=env.environ, cwd=env.cwd)


def _version(value: bool) -> None:
    if value:
        print(f"falconchat {__version__}")
        raise typer.Exit(0)


@app.callback()
@with_shared_options
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    no_history: bool = typer.Option(False, "--no-history", help="Do not read or write the input history file."),
    *,
    shared: dict[str, Any],
) -> None:
    run = invocation(ctx)
    run.shared = shared
    if ctx.invoked_subcommand is None:
        if run.env.stdin_is_piped:
            ctx.exit(ask_once(run.env, merged_flags(ctx, {}), None))  # `echo … | falconchat` answers once
        ctx.exit(chat_session(run.env, merged_flags(ctx, {}), no_history=no_history))


@app.command("chat")
@with_shared_options
def chat(
    ctx: typer.Context,
    session: str | None = typer.Option(
        None, "--session", metavar="NAME", help="Open or create a named session, saved after every exchange."
    ),
    resume: bool = typer.Option(False, "--resume", help="Open the most recently saved session."),
    no_history: bool = typer.Option(False, "--no-history", help="Do not read or write the input history file."),
    *,
    shared: dict[str, Any],
) -> None:
    """Open the interactive chat (the default)."""
    env = invocation(ctx).env
    no_history = no_history or bool(ctx.parent and ctx.parent.params.get("no_history"))  # before `chat` too
    ctx.exit(chat_session(env, merged_flags(ctx, shared), session=session, resume=resume, no_history=no_history))


@app.command("ask")
@with_shared_options
def ask(
    ctx: typer.Context,
    prompt: str | None = typer.Argument(
        None, help="The prompt; piped stdin is appended after a blank line. '-' reads stdin only."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="One JSON object on stdout: reply, model, settings, finish reason, token counts, timings, or an error (see docs/ask-json.schema.json).",
    ),
    no_stream: bool = typer.Option(False, "--no-stream", help="Wait for the whole reply, then print it once."),
    *,
    shared: dict[str, Any],
) -> None:
    """Answer one prompt and exit; made for scripts and pipes."""
    flags, env = merged_flags(ctx, shared), invocation(ctx).env
    ctx.exit(ask_json(env, flags, prompt) if as_json else ask_once(env, flags, prompt, stream=not no_stream))


@app.command("batch")
@with_shared_options
def batch(
    ctx: typer.Context,
    input_path: str | None = typer.Argument(
        None,
        metavar="INPUT",
        help='JSON Lines ({"id", "prompt" or "messages", ...}) or one prompt per line; \'-\' or nothing reads stdin.',
    ),
    output: str | None = typer.Option(
        None, "--output", "-o", metavar="OUTPUT", help="Write the results (JSON Lines) here instead of stdout."
    ),
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        "-j",
        min=1,
        max=512,
        metavar="N",
        help="Requests in flight.  [default: 8 for endpoints; the local model decodes 4 per CPU core together, at most 16; transformers 1]",
    ),
    retries: int = typer.Option(
        4,
        "--retries",
        min=0,
        max=100,
        metavar="N",
        help="Retries of an item whose endpoint was overloaded, unreachable or timed out.",
    ),
    fail_fast: bool = typer.Option(False, "--fail-fast", help="Stop at the first item that fails."),
    resume: bool = typer.Option(False, "--resume", help="Skip the ids already in OUTPUT and append the rest."),
    strict: bool = typer.Option(
        False, "--strict", help="Refuse the whole input, before anything runs, if any line is bad."
    ),
    input_format: str = typer.Option(
        "auto",
        "--input-format",
        metavar="auto|jsonl|lines",
        help="auto: JSON Lines when the first line starts with '{', else one prompt per line.",
    ),
    *,
    shared: dict[str, Any],
) -> None:
    """Answer many prompts concurrently; results in input order, resumable (see docs/scale.md)."""
    from falconchat.batch.runner import BatchOptions, run_batch

    env = invocation(ctx).env
    flags = merged_flags(ctx, shared)
    settings = resolved(structured(load(flags, env), flags, env))
    options = BatchOptions(
        input_path=input_path,
        output=output,
        concurrency=concurrency,
        retries=retries,
        fail_fast=fail_fast,
        resume=resume,
        strict=strict,
        input_format=input_format,
    )
    try:
        ctx.exit(run_batch(settings, options, stdin=env.stdin, stdout=env.stdout, stderr=env.stderr))
    except BrokenPipeError:  # results on stdout and the reader went away: end quietly
        _silence_stdout(env)
        ctx.exit(ExitCode.BROKEN_PIPE)


@app.command("serve")
def serve(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None, "--model", "-m", metavar="NAME", help="A local model: smollm2 (bundled) or a [models.NAME]."
    ),
    model_path: str | None = typer.Option(None, "--model-path", metavar="FILE", help="A GGUF model file."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port (0 picks a free one)."),
    api_key: str | None = typer.Option(
        None, "--api-key", metavar="KEY", help="Require `Authorization: Bearer KEY` (or set FALCONCHAT_SERVE_API_KEY)."
    ),
    max_waiting: int = typer.Option(
        16,
        "--max-waiting",
        min=0,
        metavar="N",
        help="Requests that may wait for the model; more get 429 (0: no queue, only free places).",
    ),
    parallel: int | None = typer.Option(
        None,
        "--parallel",
        "-P",
        min=1,
        max=64,
        metavar="N",
        help="Requests decoded together (continuous batching); default: 4 per CPU core, at most 16.",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    env_file: str | None = typer.Option(None, "--env-file", metavar="PATH", help="Read this .env file."),
    config: str | None = typer.Option(None, "--config", metavar="PATH", help="Config TOML file."),
) -> int:
    """Serve a local model as a text-generation-inference endpoint."""
    from falconchat.backends.local import LocalBackend, default_sequences
    from falconchat.serve.server import TgiServer, is_loopback
    from falconchat.serve.server import serve as run_server

    env = invocation(ctx).env
    settings = load(
        {"model": model, "model_path": model_path, "env_file": env_file, "config": config, "debug": debug or None}, env
    )
    spec = settings.model
    if spec.backend != "local":
        if model:
            raise UsageError(f'serve runs GGUF models (backend = "local"); {model!r} is a {spec.backend} model')
        spec = settings.models["smollm2"]  # an endpoint in the environment is for chatting, not serving
    key = api_key or settings.serve_api_key
    backend = LocalBackend(spec, sequences=parallel or default_sequences())
    try:
        server = TgiServer(
            backend, model_id=spec.name, api_key=key, max_waiting=max_waiting, debug=bool(settings.debug)
        )
        if not is_loopback(host) and not key:
            print(
                f"falconchat: warning: serving on {host} without --api-key: anyone who can reach it can use it",
                file=env.stderr,
            )

        def ready(url: str) -> None:
            print(f"falconchat serve: {backend.describe()} on {url} (Ctrl-C to stop)", file=env.stderr, flush=True)

        return run_server(server, host, port, ready=ready)
    finally:
        backend.close()


@app.command("models")
def models(
    ctx: typer.Context,
    endpoint: str | None = typer.Option(
        None, "--endpoint", metavar="URL", help="List the models this server serves (TGI or OpenAI-compatible)."
    ),
    timeout: str | None = typer.Option(None, "--timeout", metavar="SECONDS", help="Endpoint timeout."),
    env_file: str | None = typer.Option(None, "--env-file", metavar="PATH", help="Read this .env file."),
    config: str | None = typer.Option(None, "--config", metavar="PATH", help="Config TOML file."),
) -> int:
    """List the configured models: backend, where they point, and whether they answer; or a server's models."""
    from falconchat.cli.models import print_models, print_served

    env = invocation(ctx).env
    settings = load({"env_file": env_file, "config": config, "endpoint": endpoint, "timeout": timeout}, env)
    if endpoint:
        print_served(settings.model, env.stdout)
    else:
        print_models(settings, env.stdout)
    return 0


@app.command("bench")
def bench(
    ctx: typer.Context,
    quick: bool = typer.Option(False, "--quick", help="A short run (a smoke test: fewer tokens and repetitions)."),
    as_json: bool = typer.Option(False, "--json", help="The rows as JSON on stdout."),
    only: str | None = typer.Option(
        None, "--only", metavar="GROUP,…", help="Only these groups of rows (e.g. under_load); the default: all."
    ),
) -> int:
    """Measure start-up, decoding, rendering, prefix reuse, memory and decoding on a busy computer
    against baselines in the same run."""
    import json

    from falconchat.bench import runner as benchmark

    env = invocation(ctx).env
    groups = None
    if only is not None:
        groups = {name.strip() for name in only.split(",") if name.strip()}
        unknown = sorted(groups - set(benchmark.ROW_GROUPS))
        if unknown or not groups:
            raise UsageError(
                f"--only: unknown group {', '.join(unknown) or '(none)'}; known: {', '.join(benchmark.ROW_GROUPS)}"
            )

    def step(what: str) -> None:
        if env.stderr.isatty():
            env.stderr.write(f"\r\x1b[2K… {what}")
            env.stderr.flush()

    rows = benchmark.run(quick, step, groups)
    if env.stderr.isatty():
        env.stderr.write("\r\x1b[2K")
    if as_json:
        print(json.dumps(benchmark.as_json(rows), indent=1), file=env.stdout)
    else:
        benchmark.print_table(rows, env.stdout)
    return 0


# ---- the commands' work ---------------------------------------------------------------


def chat_model(spec):
    """The chat opens even when its endpoint is down or hangs (issue 15): an `--endpoint URL`
    whose API must be probed gets PROBE_WAIT_S to answer; one that does not is taken for
    TGI, the classic default, and the chat then says in one line that it can't be reached."""
    from dataclasses import replace

    from falconchat.backends.probe import resolve
    from falconchat.errors import Timeout, Unreachable

    if spec.backend != "auto":
        return spec
    try:
        return replace(resolve(replace(spec, timeout=min(spec.timeout, PROBE_WAIT_S))), timeout=spec.timeout)
    except (Unreachable, Timeout):
        return replace(spec, backend="tgi", format="falcon" if spec.format == "auto" else spec.format)


def open_for_chat(spec):
    """`/model NAME` opens its backend as the chat's start does."""
    from falconchat.backends import open_backend

    return open_backend(chat_model(spec))


def chat_session(
    env: Environment,
    flags: dict[str, Any],
    *,
    session: str | None = None,
    resume: bool = False,
    no_history: bool = False,
) -> int:
    from dataclasses import replace

    from falconchat import sessions
    from falconchat.backends import open_backend
    from falconchat.config import user_data_dir
    from falconchat.config_values import SAMPLING_KEYS
    from falconchat.conversation import Conversation
    from falconchat.repl.session import Repl
    from falconchat.repl.state import ReplOptions

    settings = structured(load(flags, env), flags, env)
    data_dir = user_data_dir()
    sessions_dir = data_dir / "sessions"
    if resume and not session:  # `--resume --session NAME` resumes NAME
        session = sessions.last_session(sessions_dir)
        if session is None:
            raise UsageError("no saved session to resume; start one with --session NAME")
    conversation, params = Conversation(system=settings.system), settings.sampling
    if session:
        path = sessions.session_path(sessions_dir, session)
        sessions.check_writable(path, sessions_dir)  # a name that can never be saved stops here
        if path.exists():  # a refused file stops here, before anything is changed or written
            kept = sessions.load(path)
            conversation = kept.conversation
            # What the command line says now beats what the session remembers.
            given = {key: getattr(settings.sampling, key) for key in SAMPLING_KEYS if flags.get(key) is not None}
            # A session keeps no constraint: --schema / --json-mode say it each time.
            params = kept.params.with_changes(**given, constraint=settings.sampling.constraint)
            if flags.get("system") is not None:
                conversation.system = settings.system
    settings = replace(settings, model=chat_model(settings.model))  # `--endpoint URL` alone: its API, now
    backend = open_backend(settings.model)
    try:
        backend.warm_up()  # a missing or broken model file fails now, not at the first message
        options = ReplOptions(
            plain=settings.plain,
            verbose=settings.verbose,
            show_reasoning=bool(flags.get("show_reasoning")),
            data_dir=None if (no_history or settings.no_history) else data_dir,
            sessions_dir=sessions_dir,
            session=session,
            models=settings.models,
            roles=settings.roles,
            open_backend=open_for_chat,
        )
        return Repl(backend, conversation, params, options, out=env.stdout, err=env.stderr).run()
    finally:
        backend.close()


def ask_once(env: Environment, flags: dict[str, Any], prompt: str | None, *, stream: bool = True) -> int:
    from falconchat.reasoning_view import reasoning_writer
    from falconchat.records import Collector
    from falconchat.render import reply_writer

    settings = structured(load(flags, env), flags, env)
    message = read_prompt(env, prompt, settings.max_input_bytes)
    settings = resolved(settings)
    reasoning = reasoning_writer(env.stdout, env.stderr, show=bool(flags.get("show_reasoning")))
    try:
        if settings.sampling.constraint is not None:
            # Structured output fails closed: nothing on stdout unless the whole reply validates.
            from falconchat.structured import check_reply

            collector = Collector()
            done = _answer(env, settings, message, collector, reasoning)
            value = check_reply(collector.text, settings.sampling.constraint, cut=done.finish_reason == "length")
            _print_json(env, collector.text, value)
        elif stream:
            _answer(env, settings, message, reply_writer(env.stdout, plain=settings.plain), reasoning)
        else:
            # --no-stream: all or nothing on stdout; a reply cut by an error or Ctrl-C is not printed.
            collector = Collector()
            _answer(env, settings, message, collector, reasoning)
            with reply_writer(env.stdout, plain=settings.plain) as writer:
                writer.write(collector.text)
    except BrokenPipeError:
        # The reader went away (`| head`): the stream is closed, end quietly as Unix tools do.
        _silence_stdout(env)
        return ExitCode.BROKEN_PIPE
    return 0


def ask_json(env: Environment, flags: dict[str, Any], prompt: str | None) -> int:
    """`ask --json`: exactly one JSON object on stdout whatever happens, and the exit code
    `ask` would give; an error is also reported on stderr as usual."""
    import json

    from falconchat.records import Collector, ask_record
    from falconchat.structured import check_reply
    from falconchat.text import sanitize

    collector, thoughts, settings, done, data = Collector(), Collector(), None, None, None
    error: BaseException | None = None
    try:
        settings = structured(load(flags, env), flags, env)
        message = read_prompt(env, prompt, settings.max_input_bytes)
        settings = resolved(settings)  # the record names the backend and model the server said
        done = _answer(env, settings, message, collector, thoughts)
        data = check_reply(collector.text, settings.sampling.constraint, cut=done.finish_reason == "length")
    except KeyboardInterrupt as exc:
        error = exc
    except Exception as exc:  # every failure becomes the `error` object
        error = exc
        if not isinstance(exc, FalconchatError):
            if flags.get("debug") or (settings is not None and settings.debug):
                import traceback

                traceback.print_exc()
            _error(env, f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        else:
            _error(env, exc.message)
    record = ask_record(
        sanitize(collector.text),
        done,
        settings,
        error,
        data=data,
        reasoning=sanitize(thoughts.text) if thoughts.parts else None,
    )
    try:
        env.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        env.stdout.flush()
    except BrokenPipeError:
        _silence_stdout(env)
        return ExitCode.BROKEN_PIPE
    return record["error"]["exit_code"] if record["error"] else 0


def _answer(env: Environment, settings, message: str, writer, reasoning=None):
    """One exchange into `writer` (streamed), with notices and -v statistics on stderr."""
    from falconchat.backends import open_backend
    from falconchat.conversation import Conversation
    from falconchat.exchange import answer, stats_line
    from falconchat.render import make_console
    from falconchat.text import sanitize

    err = make_console(env.stderr, soft_wrap=True)
    backend = open_backend(settings.model)
    try:
        done = answer(
            Conversation(system=settings.system),
            backend,
            message,
            settings.sampling,
            writer,
            notice=lambda text: err.print(sanitize(text)),
            reasoning=reasoning,
        )
    finally:
        backend.close()
    if settings.verbose:
        err.print(stats_line(done))
    return done


def structured(settings, flags: dict[str, Any], env: Environment):
    """`--schema` / `--json-mode` onto the sampling settings, as the constraint every backend passes on."""
    from dataclasses import replace

    from falconchat.structured import json_mode, schema_constraint

    if flags.get("schema") and flags.get("json_mode"):
        raise UsageError("give --schema or --json-mode, not both")
    if flags.get("schema"):
        constraint = schema_constraint(flags["schema"], env.cwd)
    elif flags.get("json_mode"):
        constraint = json_mode()
    else:
        return settings
    return replace(settings, sampling=settings.sampling.with_changes(constraint=constraint))


def _print_json(env: Environment, text: str, value: Any) -> None:
    """The validated reply: highlighted on a terminal, exactly the JSON in a pipe."""
    if env.stdout.isatty() and env.environ.get("TERM") != "dumb":
        from rich.json import JSON

        from falconchat.render import make_console

        make_console(env.stdout).print(JSON.from_data(value, ensure_ascii=True))
    else:
        env.stdout.write(text.strip() + "\n")
        env.stdout.flush()


def resolved(settings):
    """Settings whose model is an endpoint of known API: `--endpoint URL` alone is probed here, once."""
    from dataclasses import replace

    from falconchat.backends.probe import resolve

    return replace(settings, model=resolve(settings.model))


def read_prompt(env: Environment, prompt: str | None, limit: int) -> str:
    """PROMPT + "\\n\\n" + stdin, stdin alone, or PROMPT alone (DESIGN.md's rule)."""
    from falconchat.text import sanitize

    if prompt is not None and len(prompt.encode("utf-8", "replace")) > limit:
        raise InputError(f"the prompt is larger than {limit} bytes (FALCONCHAT_MAX_INPUT_BYTES)")
    piped = None
    stdin = env.stdin
    wants_stdin = prompt == "-" or env.stdin_is_piped
    if stdin is not None and wants_stdin:
        data = stdin.buffer.read(limit + 1)
        if len(data) > limit:
            raise InputError(f"stdin is larger than {limit} bytes (FALCONCHAT_MAX_INPUT_BYTES)")
        piped = sanitize(data.decode("utf-8", errors="replace"))
    if prompt == "-":
        prompt = None
    text = "\n\n".join(part for part in (prompt, piped) if part is not None and part.strip())
    if not text.strip():
        raise UsageError("nothing to ask: give a prompt, or pipe text into falconchat ask")
    return text


# ---- the entry point: every outcome becomes an exit code ----------------------------------


def main() -> None:
    sys.exit(run(sys.argv[1:]))


def run(argv: list[str], env: Environment | None = None) -> int:
    """Run one command line in `env` (this process's streams, variables and directory by default)."""
    env = env or Environment.of_process()
    debug = "--debug" in argv or env.is_on("FALCONCHAT_DEBUG")
    try:
        # Not standalone: Typer returns exit codes (130 for Ctrl-C) and raises usage errors to us.
        result = app(args=argv, prog_name="falconchat", standalone_mode=False, obj=Invocation(env))
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return ExitCode.INTERRUPTED
    except typer.TyperException as exc:  # a usage error: unknown flag, missing argument
        _error(env, f"{exc.format_message()} (see falconchat --help)")
        return UsageError.exit_code
    except FalconchatError as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _error(env, exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as exc:
        if debug:
            import traceback

            traceback.print_exc()
        _error(env, f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        return 1


def _error(env: Environment, message: str) -> None:
    from falconchat.text import sanitize

    try:
        env.stderr.write(f"falconchat: error: {sanitize(message)}\n")
        env.stderr.flush()
    except (BrokenPipeError, OSError):
        pass


def _silence_stdout(env: Environment) -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, env.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
