"""`falconchat chat`: settings, session and backend for the REPL, which then runs on its own."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from falconchat.cli.log import logged_name, open_log, using
from falconchat.cli.options import load, structured
from falconchat.cli.output import silence_stdout
from falconchat.environment import Environment
from falconchat.errors import ExitCode, Timeout, Unreachable, UsageError
from falconchat.images import read_images
from falconchat.sources import STDIN, read_sources, system_with_blocks
from falconchat.web_source import URL_TIMEOUT_S

PROBE_WAIT_S = 5.0  # how long the chat waits, at start or /model, for an endpoint to say which API it speaks


def chat_model(spec):
    """The chat opens even when its endpoint is down or hangs (issue 15): an `--endpoint URL`
    whose API must be probed gets PROBE_WAIT_S to answer; one that does not is taken for
    TGI, the classic default, and the chat then says in one line that it can't be reached."""

    from falconchat.backends.probe import resolve  # noqa: PLC0415 (per-command dispatch)

    if spec.backend != "auto":
        return spec
    try:
        return replace(resolve(replace(spec, timeout=min(spec.timeout, PROBE_WAIT_S))), timeout=spec.timeout)
    except (Unreachable, Timeout):
        return replace(spec, backend="tgi", format="falcon" if spec.format == "auto" else spec.format)


def open_for_chat(spec, log=None):
    """`/model NAME` opens its backend as the chat's start does (and the log names it from then on)."""
    from falconchat.backends import open_backend  # noqa: PLC0415 (per-command dispatch)

    backend = open_backend(chat_model(spec))
    if log is not None:
        using(log, spec)
    return backend


def chat_sources(env: Environment, settings, flags: dict[str, Any]):
    """`chat -f SOURCE` (attached to the first message) and `--sf SOURCE` (the system message)."""
    files, system_files = list(flags.get("file") or ()), list(flags.get("system_file") or ())
    if STDIN in files + system_files:
        raise UsageError("the chat reads its messages from standard input: -f - is for falconchat ask")
    timeout = min(settings.model.timeout, URL_TIMEOUT_S)
    system = read_sources(system_files, env, settings.max_file_size, timeout)
    loaded = read_sources(files, env, settings.max_file_size, timeout)
    loaded.blocks.extend(read_images(list(flags.get("attach") or ()), env, settings.max_file_size))
    for note in (*system.notes, *loaded.notes):
        env.stderr.write(f"falconchat: {note}\n")
    return tuple(loaded.blocks), tuple(system.blocks)


def chat_session(
    env: Environment,
    flags: dict[str, Any],
    *,
    session: str | None = None,
    resume: bool = False,
    no_history: bool = False,
) -> int:
    from falconchat.repl.input import typing_hidden  # noqa: PLC0415 (per-command dispatch)

    # From now until the chat ends, keys typed while it is busy (probing an endpoint, loading
    # a model, streaming a reply) are not echoed above the banner or into a reply: they wait,
    # Ctrl-D included, for the prompt. What the terminal echoed before this is erased.
    with typing_hidden(env.stdin, erase_echo=env.stderr):
        return _chat_session(env, flags, session=session, resume=resume, no_history=no_history)


def _chat_session(
    env: Environment,
    flags: dict[str, Any],
    *,
    session: str | None,
    resume: bool,
    no_history: bool,
) -> int:
    from falconchat import sessions  # noqa: PLC0415 (per-command dispatch)
    from falconchat.backends import open_backend  # noqa: PLC0415 (per-command dispatch)
    from falconchat.cli.pull import ask_to_pull  # noqa: PLC0415 (per-command dispatch)
    from falconchat.config import user_data_dir  # noqa: PLC0415 (per-command dispatch)
    from falconchat.config_values import SAMPLING_KEYS  # noqa: PLC0415 (per-command dispatch)
    from falconchat.repl.loop import Repl  # noqa: PLC0415 (per-command dispatch)
    from falconchat.repl.session_commands import reopened  # noqa: PLC0415 (per-command dispatch)
    from falconchat.repl.state import ReplOptions  # noqa: PLC0415 (per-command dispatch)

    settings = structured(load(flags, env), flags, env)
    ask_to_pull(env, settings.model.model_path, lambda q: _answer(env, q))  # hf:… not pulled: `Download …? [Y/n]`
    data_dir = user_data_dir(env.environ)
    sessions_dir = data_dir / "sessions"
    if resume and not session:  # `--resume --session NAME` resumes NAME
        session = sessions.last_session(sessions_dir)
        if session is None:
            raise UsageError("no saved session to resume; start one with --session NAME")
    continuing = bool(flags.get("continue_last") or flags.get("cid"))
    by_name = bool(session and not continuing and logged_name(env, settings, session))
    if by_name:
        flags = {**flags, "cid": session}  # a named session is the logged conversation of that name
        continuing = True
    log, conversation, params = open_log(
        env,
        settings,
        flags,
        command="chat",
        continue_last=bool(flags.get("continue_last")),
        cid=flags.get("cid"),
        name=session,
    )
    kept = None
    if by_name and conversation.turns:
        kept = sessions.Session(conversation, conversation.turns[-1].model or settings.model.name, params)
    if session and not continuing:  # a session file from before the log (or kept with logging off)
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
    attached, system_blocks = chat_sources(env, settings, flags)
    if system_blocks:
        conversation.system = system_with_blocks(conversation.system, system_blocks)
    settings = replace(settings, model=chat_model(settings.model))  # `--endpoint URL` alone: its API, now
    using(log, settings.model)
    backend = open_backend(settings.model)
    try:
        backend.warm_up()  # a missing or broken model file fails now, not at the first message
    except BaseException:
        backend.close()
        raise
    try:
        options = ReplOptions(
            plain=settings.plain,
            verbose=settings.verbose,
            show_reasoning=bool(flags.get("show_reasoning")),
            data_dir=None if (no_history or settings.no_history) else data_dir,
            sessions_dir=sessions_dir,
            session=session,
            models=settings.models,
            roles=settings.roles,
            open_backend=lambda spec: open_for_chat(spec, log),
            log=log,
            max_file_size=settings.max_file_size,
            url_timeout=min(settings.model.timeout, URL_TIMEOUT_S),
            attached=attached,
            # Say what came back: the model it was recorded with and where the conversation left off.
            opening=reopened("resumed", session, kept, backend.name) if session and kept else [],
            show_history=continuing and not by_name and bool(conversation.turns),
        )
        try:
            return Repl(backend, conversation, params, options, env).run()
        except BrokenPipeError:  # the replies' reader went away (`| head`): end quietly, as `ask` does
            silence_stdout(env)
            return ExitCode.BROKEN_PIPE
    finally:
        backend.close()


def _answer(env: Environment, question: str) -> str:
    """A question before the chat starts, its answer typed and echoed as a line is."""
    from falconchat.repl.input import typing_shown  # noqa: PLC0415 (it loads prompt_toolkit)

    with typing_shown(env.stdin):
        env.stderr.write(question)
        env.stderr.flush()
        return env.stdin.readline() if env.stdin is not None else ""
