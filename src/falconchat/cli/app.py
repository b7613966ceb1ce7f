"""The Typer app: the commands and their own flags, and `run()`, where every outcome becomes an exit code.
The work of `chat`, `ask` and `serve` is in chat.py, ask.py and serve.py; the shared flags in options.py;
the `models` and `logs` groups of subcommands in models_commands.py and logs.py."""

from __future__ import annotations

import sys
import traceback
from typing import Any

import typer

from falconchat import __version__
from falconchat.cli.ask import ask_json, ask_once
from falconchat.cli.chat import chat_session
from falconchat.cli.help_text import with_examples
from falconchat.cli.logs import logs_app
from falconchat.cli.models_commands import models_app
from falconchat.cli.options import Invocation, invocation, load, merged_flags, resolved, structured, with_shared_options
from falconchat.cli.output import error_line, silence_stdout
from falconchat.cli.piped import piped_default
from falconchat.environment import Environment
from falconchat.errors import ExitCode, FalconchatError, UsageError

app = typer.Typer(
    name="falconchat",
    help="Chat with open LLMs in the terminal: the bundled model offline, or a TGI or OpenAI-compatible endpoint.",
    add_completion=True,  # --install-completion for bash, zsh, fish
    invoke_without_command=True,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: no markup to escape, and no Rich import for --help
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
    # The chat's own flags, here too: `falconchat` alone is the chat, so `falconchat --session work` opens it.
    session: str | None = typer.Option(
        None, "--session", metavar="NAME", help="Open or create a named session (the chat), saved after every exchange."
    ),
    resume: bool = typer.Option(False, "--resume", help="Open the most recently saved session (the chat)."),
    no_history: bool = typer.Option(False, "--no-history", help="Do not read or write the input history file."),
    continue_last: bool = typer.Option(
        False, "--continue", "-c", help="Go on with the most recent logged conversation (the chat)."
    ),
    cid: str | None = typer.Option(
        None, "--cid", metavar="ID", help="Go on with this logged conversation (a unique id prefix, or its name)."
    ),
    *,
    shared: dict[str, Any],
) -> None:
    run = invocation(ctx)
    run.shared = shared
    if ctx.invoked_subcommand is None:
        flags = {**merged_flags(ctx, {}), "continue_last": continue_last, "cid": cid}
        if run.env.stdin_is_piped and not (session or resume or continue_last or cid):
            ctx.exit(piped_default(run.env, flags, no_history=no_history))  # `echo … | falconchat` answers once
        ctx.exit(chat_session(run.env, flags, session=session, resume=resume, no_history=no_history))


@app.command("chat")
@with_shared_options
def chat(
    ctx: typer.Context,
    session: str | None = typer.Option(
        None, "--session", metavar="NAME", help="Open or create a named session, saved after every exchange."
    ),
    resume: bool = typer.Option(False, "--resume", help="Open the most recently saved session."),
    no_history: bool = typer.Option(False, "--no-history", help="Do not read or write the input history file."),
    continue_last: bool = typer.Option(
        False, "--continue", "-c", help="Go on with the most recent logged conversation."
    ),
    cid: str | None = typer.Option(
        None, "--cid", metavar="ID", help="Go on with this logged conversation (a unique id prefix, or its name)."
    ),
    *,
    shared: dict[str, Any],
) -> None:
    """Open the interactive chat (the default)."""
    env = invocation(ctx).env
    before = ctx.parent.params if ctx.parent else {}  # the chat's flags given before `chat`
    session = session or before.get("session")
    resume = resume or bool(before.get("resume"))
    no_history = no_history or bool(before.get("no_history"))
    flags = {
        **merged_flags(ctx, shared),
        "continue_last": continue_last or bool(before.get("continue_last")),
        "cid": cid or before.get("cid"),
    }
    ctx.exit(chat_session(env, flags, session=session, resume=resume, no_history=no_history))


@app.command("ask")
@with_shared_options
def ask(
    ctx: typer.Context,
    prompt: str | None = typer.Argument(
        None, metavar="PROMPT", help="The prompt; piped stdin is appended after a blank line. '-' reads stdin only."
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="One JSON object on stdout: reply, model, settings, finish reason, token counts, timings, or an error (see docs/ask-json.schema.json).",
    ),
    no_stream: bool = typer.Option(False, "--no-stream", help="Wait for the whole reply, then print it once."),
    continue_last: bool = typer.Option(
        False, "--continue", "-c", help="Go on with the most recent logged conversation: its turns are sent too."
    ),
    cid: str | None = typer.Option(
        None, "--cid", metavar="ID", help="Go on with this logged conversation (a unique id prefix, or its name)."
    ),
    *,
    shared: dict[str, Any],
) -> None:
    """Answer one prompt and exit; made for scripts and pipes."""
    env = invocation(ctx).env
    flags = {**merged_flags(ctx, shared), "continue_last": continue_last, "cid": cid}
    ctx.exit(ask_json(env, flags, prompt) if as_json else ask_once(env, flags, prompt, stream=not no_stream))


@app.command("batch")
@with_shared_options(hidden=("plain",))
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
        metavar="auto|openai|jsonl|lines",
        help="auto: an OpenAI batch file when its lines have custom_id/url/body, JSON Lines when the first line starts with '{', else one prompt per line.",
    ),
    errors: str | None = typer.Option(
        None, "--errors", metavar="FILE", help="Write failed rows here instead of OUTPUT (as OpenAI's Batch API)."
    ),
    policy: str = typer.Option(
        "least-busy",
        "--policy",
        metavar="least-busy|round-robin",
        help="With several --endpoint replicas: each request to the one with the fewest in flight, or each in turn.",
    ),
    stats_path: str | None = typer.Option(
        None, "--stats", metavar="FILE", help="Write the summary as JSON here (per replica: requests, tokens, errors)."
    ),
    *,
    shared: dict[str, Any],
) -> None:
    """Answer many prompts concurrently; results in input order, resumable (see docs/scale.md)."""
    from falconchat.batch.command import run_batch  # noqa: PLC0415 (per-command dispatch)
    from falconchat.batch.runner import BatchOptions  # noqa: PLC0415 (per-command dispatch)
    from falconchat.cli.log import batch_log  # noqa: PLC0415 (per-command dispatch)

    env = invocation(ctx).env
    flags = merged_flags(ctx, shared)
    if flags.get("plain"):
        raise UsageError(
            "--plain: batch writes JSON Lines records, never Markdown, so there is nothing to make plain "
            "(the replies' text alone: jq -r .reply)"
        )
    endpoints = tuple(flags.get("endpoints") or ())
    settings = structured(load(flags, env), flags, env)
    if len(endpoints) < 2:  # a [models.NAME] with endpoints = [...]
        endpoints = settings.model.replicas
    if len(endpoints) < 2:  # replicas are probed by batch itself, each once
        settings = resolved(settings)
    options = BatchOptions(
        input_path=input_path,
        output=output,
        concurrency=concurrency,
        retries=retries,
        fail_fast=fail_fast,
        resume=resume,
        strict=strict,
        input_format=input_format,
        errors=errors,
        log=batch_log(env, settings, flags),
        endpoints=endpoints if len(endpoints) > 1 else (),
        policy=policy,
        stats=stats_path,
        files=tuple(flags.get("file") or ()),
        system_files=tuple(flags.get("system_file") or ()),
        images=tuple(flags.get("attach") or ()),
    )
    try:
        ctx.exit(run_batch(settings, options, env))
    except BrokenPipeError:  # results on stdout and the reader went away: end quietly
        silence_stdout(env)
        ctx.exit(ExitCode.BROKEN_PIPE)


@app.command("serve")
def serve(
    ctx: typer.Context,
    model: str | None = typer.Option(
        None, "--model", "-m", metavar="NAME", help="A local model: smollm2 (bundled) or a [models.NAME]."
    ),
    model_path: str | None = typer.Option(None, "--model-path", metavar="FILE", help="A GGUF model file."),
    host: str = typer.Option(
        "127.0.0.1", "--host", metavar="ADDRESS", help="Address to listen on (loopback by default)."
    ),
    port: int = typer.Option(8080, "--port", min=0, max=65535, metavar="PORT", help="Port (0 picks a free one)."),
    api_key: str | None = typer.Option(
        None, "--api-key", metavar="KEY", help="Require `Authorization: Bearer KEY` (or set FALCONCHAT_SERVE_API_KEY)."
    ),
    max_concurrent_requests: int | None = typer.Option(
        None,
        "--max-concurrent-requests",
        min=1,
        metavar="N",
        help="Requests decoding or waiting at once, as TGI's flag; more get 429 at once (with Retry-After).  [default: 128]",
    ),
    max_waiting: int | None = typer.Option(
        None,
        "--max-waiting",
        min=0,
        metavar="N",
        help="The older way to say it: N requests may wait beyond those decoding (0: no queue, only free places).",
    ),
    parallel: int | None = typer.Option(
        None,
        "--max-batch-size",
        "--parallel",
        "-P",
        min=1,
        max=64,
        metavar="N",
        help="Requests decoded together (continuous batching); default: 4 per CPU core, at most 16.",
    ),
    max_input_tokens: int | None = typer.Option(
        None, "--max-input-tokens", min=1, metavar="N", help="The longest prompt, in tokens.  [default: total - 1]"
    ),
    max_total_tokens: int | None = typer.Option(
        None,
        "--max-total-tokens",
        min=2,
        metavar="N",
        help="Prompt and reply of one request, in tokens.  [default: the model's context]",
    ),
    client_timeout: float = typer.Option(
        30.0,
        "--client-timeout",
        min=0.1,
        metavar="SECONDS",
        help="A request's headers and body must arrive, and a stream's client take each part, within this (else dropped / 408).",
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    env_file: str | None = typer.Option(None, "--env-file", metavar="PATH", help="Read this .env file."),
    config: str | None = typer.Option(None, "--config", metavar="PATH", help="Config TOML file."),
) -> int:
    """Serve a local model as a text-generation-inference endpoint."""
    from falconchat.cli.serve import ServeOptions, serve_model  # noqa: PLC0415 (per-command dispatch)

    options = ServeOptions(
        model=model,
        model_path=model_path,
        host=host,
        port=port,
        api_key=api_key,
        max_concurrent_requests=max_concurrent_requests,
        max_waiting=max_waiting,
        parallel=parallel,
        max_input_tokens=max_input_tokens,
        max_total_tokens=max_total_tokens,
        client_timeout=client_timeout,
        debug=debug,
        env_file=env_file,
        config=config,
    )
    return serve_model(invocation(ctx).env, options)


app.add_typer(models_app, name="models")


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
    from falconchat.cli.bench import run_bench  # noqa: PLC0415 (per-command dispatch)

    return run_bench(invocation(ctx).env, quick, as_json, only)


app.add_typer(logs_app, name="logs")


# ---- the entry point: every outcome becomes an exit code ----------------------------------


def main() -> None:
    sys.exit(run(sys.argv[1:], Environment.of_process()))  # the one place the process's world is read


def run(argv: list[str], env: Environment | None = None) -> int:
    """Run one command line in `env` (this process's streams, variables and directory by default)."""
    env = env or Environment.of_process()
    # Until the settings are read (they may be what fails) only the flag asks for tracebacks;
    # reading them settles `env.debug` from every source (cli/options.py's `load`).
    env.debug = env.debug or "--debug" in argv
    try:
        # Not standalone: Typer returns exit codes (130 for Ctrl-C) and raises usage errors to us.
        command = with_examples(typer.main.get_command(app))
        result = command(args=argv, prog_name="falconchat", standalone_mode=False, obj=Invocation(env))
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return ExitCode.INTERRUPTED
    except typer.TyperException as exc:  # a usage error: unknown flag, missing argument
        # The help of the command the mistake is in: `falconchat ask --help` for ask's options.
        # Click's UsageError carries the context it arose in; Typer's own base class does not.
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "falconchat"
        error_line(env, f"{exc.format_message()} (see {where} --help)")
        return UsageError.exit_code
    except FalconchatError as exc:
        if env.debug:
            traceback.print_exc(file=env.stderr)
        error_line(env, exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as exc:
        if env.debug:
            traceback.print_exc(file=env.stderr)
        error_line(env, f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        return 1
