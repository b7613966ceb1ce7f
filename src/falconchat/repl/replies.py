"""A reply as the chat runs it: the message with what is attached, the waiting line until the
first text, Ctrl-C and errors said in one notice, a constrained reply checked, and what to do
with a reply cut short. The loop (loop.py's `Repl`) calls `reply` and `continue_reply`."""

from __future__ import annotations

from collections.abc import Callable
from typing import IO, Protocol

from falconchat.conversation import Conversation
from falconchat.environment import Environment
from falconchat.errors import FalconchatError
from falconchat.exchange import answer, continue_answer, stats_line
from falconchat.reasoning_view import KeptReasoning, reasoning_writer
from falconchat.render import reply_writer
from falconchat.repl.attach_commands import described
from falconchat.repl.settings_commands import MAX_TOKENS_SETTING
from falconchat.repl.state import ReplState
from falconchat.repl.waiting import FirstOutput, WaitingLine
from falconchat.sources import with_blocks
from falconchat.structured import check_reply

NOTHING_KEPT = "(stopped waiting for the model; nothing was kept — Up brings the text back)"


class Host(Protocol):
    """What a reply needs of the running chat (loop.py's `Repl`)."""

    state: ReplState
    env: Environment
    out: IO[str]
    watch: FirstOutput | None  # while a reply is awaited: its waiting line, which notices hide
    draft: str  # a message to open the next prompt with

    def notice(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...

    def keep_session(self) -> None: ...

    def waiting_line(self) -> WaitingLine | None: ...


def reply(chat: Host, text: str, *, attach: bool = True) -> None:
    """Answer `text`; with `attach`, the sources attached (/file, /run) go first, as blocks,
    and are dropped once the exchange is kept. If it is not (the sources do not fit, the
    endpoint fails), they stay attached and the message comes back at the prompt."""
    state = chat.state
    blocks = tuple(state.attached) if attach else ()
    message = with_blocks(text, blocks)
    conversation = state.conversation
    before = conversation.last
    _stream(
        chat,
        lambda writer, watch: answer(
            conversation,
            state.backend,
            message,
            state.params,
            writer,
            chat.notice,
            watch.reasoning(
                KeptReasoning(
                    reasoning_writer(
                        chat.out,
                        chat.out,
                        chat.env,
                        show=state.options.show_reasoning,
                        kept="/reasoning shows it",
                    ),
                    lambda piece: _keep_reasoning(state, piece),
                )
            ),
            log=state.options.log,
            setting=MAX_TOKENS_SETTING,
            attached=blocks,
        ),
        fresh=True,
    )
    if not blocks:
        return
    last = conversation.last
    if last is not None and last is not before and last.user == message:
        last.attached = tuple(described(state, block) for block in blocks)
        last.words_at = len(message) - len(text)
        del state.attached[: len(blocks)]
    else:
        chat.notice("(the attached sources are kept: /files lists them, /drop clears them)")
        chat.draft = text  # the message comes back at the prompt, to shorten or send again


def _keep_reasoning(state: ReplState, text: str | None) -> None:
    """The reply's reasoning, for /reasoning: None as a reply starts, then its pieces."""
    state.last_reasoning = "" if text is None else state.last_reasoning + text


def continue_reply(chat: Host) -> None:
    state = chat.state
    _stream(
        chat,
        lambda writer, _watch: continue_answer(
            state.conversation,
            state.backend,
            state.params,
            writer,
            chat.notice,
            log=state.options.log,
            setting=MAX_TOKENS_SETTING,
        ),
    )


def _stream(chat: Host, run: Callable, *, fresh: bool = False) -> None:
    """Run one exchange: `run(writer, watch)` streams into `writer`; until it draws
    anything, the waiting line says the chat waits and that Ctrl-C stops it."""
    from falconchat.repl.input import typing_hidden  # noqa: PLC0415 (it loads prompt_toolkit)

    state = chat.state
    writer = reply_writer(chat.out, chat.env, plain=state.options.plain)
    turns = len(state.conversation.turns)
    watch = chat.watch = FirstOutput(chat.waiting_line())
    try:
        with typing_hidden(chat.env.stdin):
            try:
                if watch.waiting is not None:
                    watch.waiting.start()
                done = run(watch.reply(writer), watch)
            finally:
                watch.ended()
                chat.watch = None
    except KeyboardInterrupt:
        if watch.shown:
            chat.notice(f"(reply stopped; what was shown is kept — {after_a_cut(state, at_limit=False)})")
        elif fresh:
            _forget_empty_turn(state.conversation, turns)
            chat.notice(NOTHING_KEPT)
        else:
            chat.notice("(stopped waiting for the model; the reply is as it was — /continue tries again)")
        return
    except FalconchatError as exc:
        chat.error(exc.message)
        if len(state.conversation.turns) == turns and fresh:
            chat.notice("(no reply, so the message was not kept; Up brings it back to send again)")
        return
    finally:
        chat.keep_session()
    if state.params.constraint is not None and done.finish_reason != "cancelled":
        try:  # --schema / --json-mode: a reply that does not fit is said, never passed over
            last = state.conversation.turns[-1].assistant
            check_reply(last, state.params.constraint, cut=done.finish_reason == "length", setting=MAX_TOKENS_SETTING)
        except FalconchatError as exc:
            chat.error(exc.message)
    if done.finish_reason == "length":
        limit = state.params.max_new_tokens
        chat.notice(f"(stopped at max_new_tokens = {limit}; {after_a_cut(state, at_limit=True)})")
    if state.options.verbose:
        chat.notice(stats_line(done))


def after_a_cut(state: ReplState, *, at_limit: bool) -> str:
    """What goes on with a reply cut short, here: /continue, unless the reply is constrained
    (the schema holds from its first character) or the server's chat template writes the
    prompt (it closes the last message): then the reply is asked again, longer if the limit
    cut it (exchange.continue_answer refuses those)."""
    if state.params.constraint is None and state.backend.prompt_format != "chat":
        return "/continue goes on"
    return "/set max_new_tokens N, then /retry" if at_limit else "/retry asks again"


def _forget_empty_turn(conversation: Conversation, turns: int) -> None:
    """Ctrl-C before any text came: the message is not kept as an exchange with no reply."""
    if len(conversation.turns) > turns and not conversation.turns[-1].assistant:
        conversation.undo()
