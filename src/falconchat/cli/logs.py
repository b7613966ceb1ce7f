"""`falconchat logs`: read the conversation log (newest exchanges, search, one conversation,
the last reply or code block), and look after it (status, on/off, rm, export, backup, path).
The database is log_store.py's; what is shown, logs_view.py's."""

from __future__ import annotations

from pathlib import Path

import typer

from falconchat.cli.log import log_store, logging_on, reading
from falconchat.cli.options import invocation, load
from falconchat.errors import LogError, UsageError

logs_app = typer.Typer(
    name="logs",
    help="Read, search and look after the conversation log (every exchange, in one SQLite file).",
    invoke_without_command=True,
    no_args_is_help=False,
    rich_markup_mode=None,
)


@logs_app.callback()
def logs(
    ctx: typer.Context,
    count: int = typer.Option(10, "--count", "-n", min=0, metavar="N", help="How many exchanges (0: all)."),
    current: bool = typer.Option(False, "--current", "-c", help="The most recent conversation, whole."),
    cid: str | None = typer.Option(
        None, "--cid", metavar="ID", help="This conversation (a unique id prefix, or its name)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", metavar="NAME", help="Only this model's exchanges."),
    since: str | None = typer.Option(
        None, "--since", metavar="WHEN", help="Only since then: a date, or an age (2h, 3d, 1w)."
    ),
    query: str | None = typer.Option(
        None, "--query", "-q", metavar="TEXT", help="Full-text search over prompts and replies."
    ),
    latest: bool = typer.Option(False, "--latest", help="With -q: newest matches, not the most relevant."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array of exchanges (fields in docs/log.md)."),
    reply: bool = typer.Option(False, "--reply", "-r", help="Only the last reply, as it was written."),
    extract: bool = typer.Option(False, "--extract", "-x", help="Only the last fenced code block of the last reply."),
    plain: bool = typer.Option(False, "--plain", help="Plain text instead of rendered Markdown."),
) -> None:
    """Show the newest exchanges (newest last), or those a search or conversation names."""
    if ctx.invoked_subcommand is not None:
        return
    import json  # noqa: PLC0415 (per-command dispatch)

    from falconchat import log_query  # noqa: PLC0415 (per-command dispatch)
    from falconchat.cli import logs_view  # noqa: PLC0415 (per-command dispatch)
    from falconchat.text import sanitize  # noqa: PLC0415 (per-command dispatch)

    env = invocation(ctx).env
    store = log_store(env)
    if not store.exists():
        if as_json:
            print("[]", file=env.stdout)
        elif reply or extract:
            raise LogError("nothing is logged yet")
        else:
            print(f"nothing is logged yet ({store.path})", file=env.stderr)
        ctx.exit(0)
    with reading(store) as db:
        target = None
        if cid:
            target = log_query.resolve(db, cid)
        elif current:
            target = log_query.latest_conversation(db)
        which = log_query.Filter(
            limit=count,
            cid=target,
            model=model,
            since=log_query.since(since) if since else None,
            query=query,
            latest=latest,
        )
        found = log_query.exchanges(db, which) if (target or not (cid or current)) else []
    if as_json:
        env.stdout.write(json.dumps(found, ensure_ascii=True, indent=1) + "\n")
    elif reply or extract:
        if not found:
            raise LogError("no exchange matches")
        text = found[-1]["reply"]
        if extract:
            block = logs_view.last_code_block(text)
            if block is None:
                raise LogError("the last reply has no fenced code block")
            text = block
        env.stdout.write(sanitize(text) + ("" if text.endswith("\n") else "\n"))
    elif found:
        logs_view.show_exchanges(
            env.stdout,
            env,
            found,
            plain=plain or env.environ.get("FALCONCHAT_PLAIN", "").lower() in ("1", "true", "yes", "on"),
        )
    else:
        print("no exchange matches", file=env.stderr)
    env.stdout.flush()


@logs_app.command("status")
def status(ctx: typer.Context) -> None:
    """Where the log is, whether logging is on, what it holds and its size."""
    from falconchat import log_query  # noqa: PLC0415 (per-command dispatch)
    from falconchat.cli import logs_view  # noqa: PLC0415 (per-command dispatch)
    from falconchat.log_store import SCHEMA_VERSION  # noqa: PLC0415 (per-command dispatch)

    env = invocation(ctx).env
    settings = load({}, env)
    store = log_store(env)
    on = logging_on(settings, store)
    why = "" if settings.log is None else " (FALCONCHAT_LOG or log in the config)"
    if settings.log is None and not on:
        why = " (falconchat logs off; logs on turns it back on)"
    out = env.stdout
    print(f"database: {store.path}", file=out)
    print(f"logging: {'on' if on else 'off'}{why}", file=out)
    if not store.exists():
        print("holds: nothing yet (created at the first exchange)", file=out)
        return
    files = [store.path, store.path.with_name(store.path.name + "-wal")]
    size = sum(p.stat().st_size for p in files if p.exists())
    try:
        with reading(store) as db:
            conversations, exchanges = log_query.counts(db)
    except LogError as exc:
        print(f"size: {logs_view.size_text(size)}", file=out)
        out.flush()
        raise LogError(
            f"{exc.message}. It is left as it is: move it aside (mv {store.path} {store.path}.broken) "
            "and a new log starts at the next exchange"
        ) from None
    print(f"holds: {conversations} conversations, {exchanges} exchanges", file=out)
    print(f"size: {logs_view.size_text(size)} · schema version {SCHEMA_VERSION}", file=out)


@logs_app.command("on")
def on(ctx: typer.Context) -> None:
    """Log exchanges (the default)."""
    from falconchat.log_store import OFF_MARK  # noqa: PLC0415 (per-command dispatch)

    store = log_store(invocation(ctx).env)
    (store.path.parent / OFF_MARK).unlink(missing_ok=True)
    print("logging is on", file=invocation(ctx).env.stdout)


@logs_app.command("off")
def off(ctx: typer.Context) -> None:
    """Stop logging exchanges (until `logs on`; --log, FALCONCHAT_LOG=1 or log = true still log)."""
    from falconchat.log_store import OFF_MARK  # noqa: PLC0415 (per-command dispatch)
    from falconchat.sessions import private_dir  # noqa: PLC0415 (per-command dispatch)

    store = log_store(invocation(ctx).env)
    private_dir(store.path.parent)
    (store.path.parent / OFF_MARK).touch(mode=0o600)
    print("logging is off", file=invocation(ctx).env.stdout)


@logs_app.command("path")
def path(ctx: typer.Context) -> None:
    """The database's path."""
    env = invocation(ctx).env
    print(log_store(env).path, file=env.stdout)


@logs_app.command("list-conversations")
def list_conversations(
    ctx: typer.Context,
    count: int = typer.Option(20, "--count", "-n", min=0, metavar="N", help="How many, newest last (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="A JSON array."),
) -> None:
    """The conversations: id, name, model, exchanges, last time (newest last)."""
    import json  # noqa: PLC0415 (per-command dispatch)

    from falconchat import log_query  # noqa: PLC0415 (per-command dispatch)
    from falconchat.cli import logs_view  # noqa: PLC0415 (per-command dispatch)

    env = invocation(ctx).env
    store = log_store(env)
    found = []
    if store.exists():
        with reading(store) as db:
            found = log_query.conversations(db, count)
    if as_json:
        env.stdout.write(json.dumps(found, ensure_ascii=True, indent=1) + "\n")
    elif found:
        logs_view.show_conversations(env.stdout, found)
    else:
        print("no conversations logged yet", file=env.stderr)


@logs_app.command("rm")
def rm(
    ctx: typer.Context,
    exchange: int | None = typer.Argument(None, metavar="[ID]", help="An exchange's id (logs --json shows it)."),
    cid: str | None = typer.Option(None, "--cid", metavar="ID", help="A whole conversation."),
    before: str | None = typer.Option(None, "--before", metavar="WHEN", help="Everything before a date or age (30d)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (scripts)."),
) -> None:
    """Delete exchanges; the file is rewritten so their text is gone from it."""
    from falconchat import log_query  # noqa: PLC0415 (per-command dispatch)

    env = invocation(ctx).env
    if sum(x is not None for x in (exchange, cid, before)) != 1:
        raise UsageError("logs rm: give one of ID, --cid ID or --before WHEN")
    store = log_store(env)
    with reading(store) as db:
        target = log_query.resolve(db, cid) if cid else None
        moment = log_query.since(before) if before else None
        if exchange is not None:
            n = db.execute("SELECT count(*) FROM exchanges WHERE id = ?", (exchange,)).fetchone()[0]
            if not n:
                raise LogError(f"no exchange {exchange}")
            what = f"exchange {exchange}"
        elif target is not None:
            n = db.execute("SELECT count(*) FROM exchanges WHERE conversation_id = ?", (target,)).fetchone()[0]
            what = f"conversation {target} ({n} exchanges)"
        else:
            n = db.execute("SELECT count(*) FROM exchanges WHERE created_at < ?", (moment,)).fetchone()[0]
            what = f"{n} exchanges before {before}"
    if not yes:
        if env.stdin is None or env.stdin_is_piped:
            raise UsageError(f"logs rm: would delete {what}; add -y to confirm in a script")
        env.stderr.write(f"delete {what}? [y/N] ")
        env.stderr.flush()
        answer = env.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            print("nothing deleted", file=env.stderr)
            ctx.exit(1)
    try:
        gone = log_query.delete(store, exchange=exchange, cid=target, before=moment)
    except Exception as exc:
        import sqlite3  # noqa: PLC0415 (per-command dispatch)

        if isinstance(exc, sqlite3.Error | OSError):
            raise LogError(f"cannot change the log {store.path}: {exc}") from None
        raise
    print(f"deleted {gone} exchange{'s' if gone != 1 else ''}", file=env.stderr)


@logs_app.command("export")
def export(
    ctx: typer.Context,
    file: str = typer.Argument(..., metavar="FILE.md", help="The Markdown file to write."),
    cid: str | None = typer.Option(None, "--cid", metavar="ID", help="The conversation (default: the most recent)."),
) -> None:
    """A conversation as a Markdown transcript, as the chat's /export writes it."""

    from falconchat import log_query  # noqa: PLC0415 (per-command dispatch)
    from falconchat.conversation import Conversation  # noqa: PLC0415 (per-command dispatch)
    from falconchat.sessions import export_markdown  # noqa: PLC0415 (per-command dispatch)

    env = invocation(ctx).env
    with reading(log_store(env)) as db:
        target = log_query.resolve(db, cid) if cid else log_query.latest_conversation(db)
        if target is None:
            raise LogError("no conversation logged yet")
        rows = log_query.chain(db, target)
        turns = log_query.turns(db, target)
    system = rows[-1]["system"] if rows else ""
    model = rows[-1]["model"] if rows and rows[-1]["model"] else "the model"
    path = (env.cwd / Path(file).expanduser()) if not Path(file).expanduser().is_absolute() else Path(file).expanduser()
    export_markdown(path, Conversation(system=system, turns=turns), model)
    print(f"exported conversation {target} ({len(turns)} exchanges) to {path}", file=env.stderr)


@logs_app.command("backup")
def backup(ctx: typer.Context, file: str = typer.Argument(..., metavar="FILE", help="The copy to write.")) -> None:
    """A consistent copy of the log, even while others write to it."""
    import sqlite3  # noqa: PLC0415 (per-command dispatch)

    from falconchat import log_query  # noqa: PLC0415 (per-command dispatch)

    env = invocation(ctx).env
    store = log_store(env)
    target = Path(file).expanduser()
    target = target if target.is_absolute() else env.cwd / target
    with reading(store):
        pass  # exists and readable
    try:
        log_query.backup(store, target)
    except sqlite3.Error as exc:
        raise LogError(f"cannot back up the log to {target}: {exc}") from None
    print(f"backed up {store.path} to {target}", file=env.stderr)
