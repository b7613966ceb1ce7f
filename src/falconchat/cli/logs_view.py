"""How `falconchat logs` shows what it found: exchanges drawn as the chat draws replies
(Markdown on a terminal, plain text in a pipe), the conversations as a table, the database's
status. Every logged text is untrusted: it passes through text.sanitize() on its way out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import IO, Any

from falconchat.environment import Environment
from falconchat.render import make_console, reply_writer
from falconchat.text import sanitize

_FENCED = re.compile(r"^ {0,3}(`{3,}|~{3,})[^\n]*\n(.*?)^ {0,3}\1[`~]*[ \t]*$", re.MULTILINE | re.DOTALL)


def local_time(stamp: str | None) -> str:
    """A logged UTC time as the user's local date and time."""
    if not stamp:
        return "—"
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return sanitize(stamp)


def heading(exchange: dict[str, Any]) -> str:
    name = f" ({exchange['conversation_name']})" if exchange.get("conversation_name") else ""
    note = "" if exchange["finish_reason"] == "stop" else f" · {exchange['finish_reason']}"
    return sanitize(
        f"{local_time(exchange['created_at'])} · conversation {exchange['conversation_id']}{name} · "
        f"exchange {exchange['turn']} · {exchange['model'] or '?'}{note}"
    )


def show_exchanges(out: IO[str], env: Environment, exchanges: list[dict[str, Any]], *, plain: bool) -> None:
    terminal = not plain and env.draws_on(out)
    console = make_console(out, env, soft_wrap=True) if terminal else None  # no Rich to import in a pipe
    for n, exchange in enumerate(exchanges):
        if console is not None:
            from rich.text import Text  # noqa: PLC0415 (heavy: rich)

            console.rule(Text(heading(exchange), style="dim"), style="dim")
            console.print(Text("You: ", style="bold cyan") + Text(sanitize(exchange["prompt"])))
            with reply_writer(out, env, plain=False) as writer:
                writer.write(exchange["reply"])  # the writer sanitises, as it does a live reply
        else:
            out.write(("\n" if n else "") + f"## {heading(exchange)}\n\n")
            out.write(f"> {sanitize(exchange['prompt'])}".replace("\n", "\n> ") + "\n\n")
            with reply_writer(out, env, plain=True) as writer:
                writer.write(exchange["reply"])
    out.flush()


def last_code_block(reply: str) -> str | None:
    """The last fenced code block's text (`logs -x`), or None."""
    blocks = _FENCED.findall(reply)
    return blocks[-1][1] if blocks else None


def show_conversations(out: IO[str], conversations: list[dict[str, Any]]) -> None:
    rows = [
        (
            c["id"],
            c["name"] or "",
            c["model"] or "",
            str(c["exchanges"]),
            local_time(c["last_at"]),
            f"{c['parent_id']} @{c['parent_turn']}" if c["parent_id"] else "",
        )
        for c in conversations
    ]
    header = ("id", "name", "model", "exchanges", "last", "forked from")
    widths = [max(len(sanitize(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.write("  ".join(sanitize(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")
    out.flush()


def size_text(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size} bytes"
