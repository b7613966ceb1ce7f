"""`falconchat ask`: one prompt, one reply — streamed, whole, as validated JSON, or as a record."""

from __future__ import annotations

import traceback
from dataclasses import replace
from typing import Any

from falconchat.cli.attach import prompt_with_sources
from falconchat.cli.log import open_log
from falconchat.cli.options import load, resolved, structured
from falconchat.cli.output import error_line, print_json, silence_stdout
from falconchat.environment import Environment
from falconchat.errors import ExitCode, FalconchatError
from falconchat.sources import system_with_blocks


def ask_once(
    env: Environment, flags: dict[str, Any], prompt: str | None, *, stream: bool = True, command: str = "ask"
) -> int:
    from falconchat.reasoning_view import reasoning_writer  # noqa: PLC0415 (per-command dispatch)
    from falconchat.records import Collector  # noqa: PLC0415 (per-command dispatch)
    from falconchat.render import reply_writer  # noqa: PLC0415 (per-command dispatch)

    settings = structured(load(flags, env), flags, env)
    asked = prompt_with_sources(env, settings, flags, prompt)
    message = asked.message
    settings = resolved(settings)
    log = continued(env, settings, flags, command, asked.system_blocks)
    settings = replace(settings, sampling=log[2])
    reasoning = reasoning_writer(env.stdout, env.stderr, env, show=bool(flags.get("show_reasoning")))
    try:
        if settings.sampling.constraint is not None:
            # Structured output fails closed: nothing on stdout unless the whole reply validates.
            from falconchat.structured import check_reply  # noqa: PLC0415 (per-command dispatch)

            collector = Collector()
            done = answer_once(
                env, settings, message, collector, reasoning, log, progress="JSON", attached=asked.attached
            )
            value = check_reply(collector.text, settings.sampling.constraint, cut=done.finish_reason == "length")
            print_json(env, collector.text, value)
        elif stream:
            writer = reply_writer(env.stdout, env, plain=settings.plain)
            answer_once(env, settings, message, writer, reasoning, log, attached=asked.attached)
        else:
            # --no-stream: all or nothing on stdout; a reply cut by an error or Ctrl-C is not printed.
            collector = Collector()
            answer_once(
                env, settings, message, collector, reasoning, log, progress="the reply", attached=asked.attached
            )
            with reply_writer(env.stdout, env, plain=settings.plain) as writer:
                writer.write(collector.text)
    except BrokenPipeError:
        # The reader went away (`| head`): the stream is closed, end quietly as Unix tools do.
        silence_stdout(env)
        return ExitCode.BROKEN_PIPE
    return 0


def ask_json(env: Environment, flags: dict[str, Any], prompt: str | None) -> int:
    """`ask --json`: exactly one JSON object on stdout whatever happens, and the exit code
    `ask` would give; an error is also reported on stderr as usual."""
    import json  # noqa: PLC0415 (per-command dispatch)

    from falconchat.records import Collector, ask_record  # noqa: PLC0415 (per-command dispatch)
    from falconchat.structured import check_reply  # noqa: PLC0415 (per-command dispatch)
    from falconchat.text import sanitize  # noqa: PLC0415 (per-command dispatch)

    collector, thoughts, settings, done, data, log = Collector(), Collector(), None, None, None, None
    error: BaseException | None = None
    try:
        settings = structured(load(flags, env), flags, env)
        asked = prompt_with_sources(env, settings, flags, prompt)
        message = asked.message
        settings = resolved(settings)  # the record names the backend and model the server said
        log = continued(env, settings, flags, "ask", asked.system_blocks)
        settings = replace(settings, sampling=log[2])
        done = answer_once(
            env, settings, message, collector, thoughts, log, progress="the reply", attached=asked.attached
        )
        data = check_reply(collector.text, settings.sampling.constraint, cut=done.finish_reason == "length")
    except KeyboardInterrupt as exc:
        error = exc
    except Exception as exc:  # every failure becomes the `error` object
        error = exc
        if not isinstance(exc, FalconchatError):
            if env.debug:
                traceback.print_exc(file=env.stderr)
            error_line(env, f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")
        else:
            error_line(env, exc.message)
    record = ask_record(
        sanitize(collector.text),
        done,
        settings,
        error,
        data=data,
        reasoning=sanitize(thoughts.text) if thoughts.parts else None,
    )
    # the logged conversation, for `ask --cid ID` to go on with (null: not logged)
    record["conversation_id"] = log[0].cid if log is not None and log[0].on else None
    try:
        env.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
        env.stdout.flush()
    except BrokenPipeError:
        silence_stdout(env)
        return ExitCode.BROKEN_PIPE
    return record["error"]["exit_code"] if record["error"] else 0


def answer_once(
    env: Environment,
    settings,
    message: str,
    writer,
    reasoning=None,
    log=None,
    progress: str | None = None,
    attached=(),
):
    """One exchange into `writer` (streamed), with notices and -v statistics on stderr; `log`:
    the conversation it continues and the log it goes into. `progress` (what is being written)
    for a reply collected rather than shown: a line on a terminal's stderr counts its tokens.
    `attached`: the -f/--sf sources, named if they do not fit."""

    from falconchat.backends import open_backend  # noqa: PLC0415 (per-command dispatch)
    from falconchat.cli.progress_line import ProgressLine  # noqa: PLC0415 (per-command dispatch)
    from falconchat.conversation import Conversation  # noqa: PLC0415 (per-command dispatch)
    from falconchat.exchange import answer, stats_line  # noqa: PLC0415 (per-command dispatch)
    from falconchat.render import make_console  # noqa: PLC0415 (per-command dispatch)
    from falconchat.text import sanitize  # noqa: PLC0415 (per-command dispatch)

    err = make_console(env.stderr, env, soft_wrap=True)
    backend = open_backend(settings.model)
    limit = settings.sampling.max_new_tokens
    line = ProgressLine(env.stderr, env.environ, limit, progress)  # off without `progress`
    try:
        conversation_log, conversation, _ = (
            log if log is not None else (None, Conversation(system=settings.system), None)
        )
        with line:
            done = answer(
                conversation,
                backend,
                message,
                settings.sampling,
                line.counting(writer),
                notice=line.above(lambda text: err.print(sanitize(text))),
                reasoning=line.pausing(reasoning),
                log=conversation_log,
                attached=attached,
            )
    finally:
        backend.close()
    if settings.verbose:
        err.print(stats_line(done))
    return done


def continued(env: Environment, settings, flags: dict[str, Any], command: str, system_blocks=()):
    """The log `ask` writes to, the conversation it continues (-c, --cid) and its sampling values;
    the --sf blocks go into its system message."""

    log = open_log(
        env, settings, flags, command=command, continue_last=bool(flags.get("continue_last")), cid=flags.get("cid")
    )
    if system_blocks:
        log[1].system = system_with_blocks(log[1].system, system_blocks)
    return log
