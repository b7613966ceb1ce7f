"""One exchange: fit the prompt, stream the reply through a writer, record it.

Shared by the REPL and `ask`, so both trim, record and cut replies the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import replace
from typing import TYPE_CHECKING

from falconchat.backends.base import Backend
from falconchat.conversation import Conversation
from falconchat.errors import InputError
from falconchat.images import IMAGE_TOKENS, has_images, tokens_of, without_images
from falconchat.prompt import CountMessages, FittedPrompt, PromptTooLong
from falconchat.sources import Block
from falconchat.thinking import separate_reasoning
from falconchat.types import Done, ReasoningDelta, ReasoningWriter, ReplyWriter, SamplingParams, TextDelta, TokenStream

if TYPE_CHECKING:  # the caller opens the log (and sqlite3) only when it logs
    from falconchat.conversation_log import ConversationLog


def answer(
    conversation: Conversation,
    backend: Backend,
    message: str,
    params: SamplingParams,
    writer: ReplyWriter,
    notice: Callable[[str], None],
    reasoning: ReasoningWriter | None = None,
    log: ConversationLog | None = None,
    setting: str = "--max-new-tokens",
    attached: Sequence[Block] = (),
) -> Done:
    """Stream the reply to `message` into `writer`, and a thinking model's reasoning into
    `reasoning` (dropped when None); return its `Done`. `setting` is how the caller's user
    changes max-new-tokens, named in the errors that say to (a flag, or the REPL's /set).

    Ctrl-C (KeyboardInterrupt) and errors propagate after the writer has shown
    what arrived, the conversation has kept it and `log` has logged it. The conversation
    keeps the reply only: reasoning is never sent back to the model (the log keeps it apart).
    `attached`: the sources in the message and the system message, named if they do not fit.
    """
    thoughts: list[str] = []
    recorded, fitted = start(conversation, backend, message, params, notice, thoughts, setting, attached)
    ended: Done | None = None
    try:
        ended = done = _run(recorded, fitted, writer, reasoning)
    finally:  # a reply cut by Ctrl-C or an error is logged with what arrived
        if log is not None:
            sent = [block for block in attached if block.delimited() in message]  # not the system's
            log.exchange(conversation, message, ended, "".join(thoughts), params, sent)
    last = conversation.last
    if done.finish_reason != "cancelled" and last is not None and not last.assistant.strip():
        notice("(the model ended without writing any text)")  # an empty reply is never silent
    return done


def start(
    conversation: Conversation,
    backend: Backend,
    message: str,
    params: SamplingParams,
    notice: Callable[[str], None],
    thoughts: list[str] | None = None,
    setting: str = "--max-new-tokens",
    attached: Sequence[Block] = (),
) -> tuple[TokenStream, FittedPrompt]:
    """The reply to `message` as events, recorded into `conversation` as they pass (closing the
    stream cuts the reply), reasoning apart (its text also into `thoughts`); and the prompt it
    was fitted into. `answer` draws the events; the library (api.py) hands them to its caller.
    A prompt that cannot fit raises InputError here, before anything is sent (naming `setting`,
    and the largest of the `attached` sources)."""
    _check_sight(conversation, backend, message)
    counter = _message_counter(backend)
    fitted = _fit(
        lambda budget: conversation.prompt_for(message, _text_counter(backend), budget, counter),
        backend,
        params,
        notice,
        setting,
        attached,
    )
    if backend.takes_messages:  # the server or the model's own template formats them
        events = backend.stream_messages(fitted.messages, params)
    else:
        events = backend.stream(fitted.text, params)
    events = separate_reasoning(events)
    if thoughts is not None:
        events = _noting_reasoning(events, thoughts)
    return conversation.record(message, events, model=backend.name), fitted


def continue_answer(
    conversation: Conversation,
    backend: Backend,
    params: SamplingParams,
    writer: ReplyWriter,
    notice: Callable[[str], None],
    log: ConversationLog | None = None,
    setting: str = "--max-new-tokens",
) -> Done:
    """Have the model go on with the last reply, appending to it: a text prompt that ends inside
    the reply, or (format "native") the model's template with the reply as an open last message."""
    if backend.prompt_format == "chat":  # a server's template always closes the last message
        raise InputError('/continue needs a prompt falconchat writes (format "falcon" or "native"); /retry works')
    counter = _message_counter(backend)
    fitted = _fit(
        lambda budget: conversation.prompt_to_continue(_text_counter(backend), budget, counter),
        backend,
        params,
        notice,
        setting,
    )
    if backend.takes_messages:
        events = backend.stream_messages(fitted.messages, params)
    else:
        events = backend.stream(fitted.text, params)
    previous, ended = conversation.last, None
    try:
        ended = done = _run(conversation.record_continuation(events, model=backend.name), fitted, writer)
    finally:
        if log is not None:
            log.continuation(conversation, previous, ended, params)
    return done


def _noting_reasoning(events: TokenStream, into: list[str]) -> TokenStream:
    """Pass `events` through, keeping the reasoning's text for the log."""
    with closing(events):
        for event in events:
            if isinstance(event, ReasoningDelta):
                into.append(event.text)
            yield event


def prompt_size(conversation: Conversation, backend: Backend, message: str, max_new_tokens: int) -> tuple[int, int]:
    """Tokens the prompt for `message` would take as it is sent — the oldest turns left out to
    leave `max_new_tokens` for the reply, as `start` fits it — and how many turns that leaves
    out (the chat's toolbar). A prompt that cannot fit at all: what it needs, no turn left out."""
    budget = max(backend.context_length - max_new_tokens, 0)
    try:
        fitted = conversation.prompt_for(message, _text_counter(backend), budget, _message_counter(backend))
    except PromptTooLong as exc:
        return exc.needed, 0
    return fitted.prompt_tokens, fitted.dropped_turns


def _message_counter(backend: Backend) -> CountMessages | None:
    """Chat messages are measured as the backend sends them (the model's template adds its
    markers); an image as images.IMAGE_TOKENS, not as its base64."""
    if not backend.takes_messages:
        return None

    def count(messages: Sequence[dict]) -> int:
        stripped = [{**m, "content": without_images(m["content"])[0]} for m in messages]
        images = sum(without_images(m["content"])[1] for m in messages)
        return backend.count_message_tokens(stripped) + images * IMAGE_TOKENS

    return count


def _text_counter(backend: Backend) -> Callable[[str], int]:
    return lambda text: tokens_of(backend.count_tokens, text)


def _check_sight(conversation: Conversation, backend: Backend, message: str) -> None:
    """A backend that cannot see refuses a message with an image (or a conversation that has
    one, after /model) in one line, before anything is sent."""
    if backend.sees_images:
        return
    if has_images(message) or any(has_images(turn.user) for turn in conversation.turns):
        where = "the message has" if has_images(message) else "the conversation has"
        raise InputError(
            f"{backend.describe()} cannot see images, and {where} one; use a vision model's endpoint "
            "(--endpoint: TGI, or OpenAI-compatible with format chat)"
        )


def _fit(
    make_prompt: Callable[[int], FittedPrompt],
    backend: Backend,
    params: SamplingParams,
    notice: Callable[[str], None],
    setting: str,
    attached: Sequence[Block] = (),
) -> FittedPrompt:
    context = backend.context_length
    budget = context - params.max_new_tokens
    if budget < 16:
        raise InputError(
            f"max-new-tokens {params.max_new_tokens} leaves no room for the prompt in the model's "
            f"context of {context} tokens; lower {setting}"
        )
    try:
        fitted = make_prompt(budget)
    except PromptTooLong as exc:
        if attached:
            raise InputError(_over_budget(exc, attached, backend, context, params)) from None
        raise InputError(
            f"the message needs {exc.needed} tokens but only {exc.budget} fit "
            f"(context {context} − max-new-tokens {params.max_new_tokens}); shorten it or lower {setting}"
        ) from None
    if fitted.dropped_turns:
        turns = "turn" if fitted.dropped_turns == 1 else "turns"
        notice(f"left out the {fitted.dropped_turns} oldest {turns} to fit the model's context")
    return fitted


def _over_budget(
    exc: PromptTooLong, attached: Sequence[Block], backend: Backend, context: int, params: SamplingParams
) -> str:
    """One line: by how much the attached sources miss, and the largest of them (never cut)."""
    count = _text_counter(backend)
    sizes = sorted(((count(block.delimited()), block.name) for block in attached), reverse=True)
    largest = ", ".join(f"{name} {tokens} tokens" for tokens, name in sizes[:3])
    return (
        f"the attached sources do not fit: the prompt needs {exc.needed} tokens, {exc.needed - exc.budget} more "
        f"than the {exc.budget} that fit (context {context} − max-new-tokens {params.max_new_tokens}); "
        f"largest: {largest}; nothing was sent"
    )


def _run(
    events: TokenStream, fitted: FittedPrompt, writer: ReplyWriter, reasoning: ReasoningWriter | None = None
) -> Done:
    """The reply writer is entered at the first reply text (or at the end), so that reasoning
    drawn before it is over — collapsed, or kept — before the reply's own drawing starts."""
    done = Done("cancelled")
    with ExitStack() as stack:
        stack.enter_context(closing(events))
        replying = False

        def start_reply() -> None:
            nonlocal replying
            if not replying:
                replying = True
                if reasoning is not None:
                    reasoning.close()
                stack.enter_context(writer)

        stack.callback(start_reply)  # runs at the end (last in, first out), if the reply never started
        for event in events:
            if isinstance(event, TextDelta):
                start_reply()
                writer.write(event.text)
            elif isinstance(event, ReasoningDelta):
                if reasoning is not None and not replying:
                    reasoning.write(event.text)
            else:
                done = event
    if not done.prompt_tokens:
        done = replace(done, prompt_tokens=fitted.prompt_tokens)
    return done


def stats_line(done: Done) -> str:
    rate = done.completion_tokens / done.total_s if done.total_s > 0 else 0.0
    first = f"{done.first_token_s:.2f}s" if done.first_token_s is not None else "—"
    thought = f" · reasoning {done.reasoning_s:.2f}s" if done.reasoning_s is not None else ""
    return (
        f"{done.completion_tokens} tokens in {done.total_s:.2f}s ({rate:.1f} tokens/s) · "
        f"first token {first}{thought} · prompt {done.prompt_tokens} tokens · finish: {done.finish_reason}"
    )
