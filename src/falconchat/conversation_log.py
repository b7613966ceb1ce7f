"""Which logged conversation the one in memory is, and the one place where a log failure
becomes a warning. exchange.py calls it after every reply. The chat's /undo, /retry, /clear
and /load need nothing of it: a conversation in memory that no longer starts with the
exchanges the log holds is logged, at its next exchange, as a new conversation forked from
the old one where they part — nothing logged is ever changed or lost."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace

from falconchat.conversation import Conversation
from falconchat.errors import FalconchatError
from falconchat.log_store import FINISH_OF_STATUS, Exchange, LogStore
from falconchat.sources import Block, words_after
from falconchat.structured import check_reply
from falconchat.types import Done, SamplingParams, Turn


class ConversationLog:
    def __init__(
        self,
        store: LogStore | None,
        warn: Callable[[str], None],
        *,
        command: str = "chat",
        cid: str | None = None,
        name: str | None = None,
        logged: Sequence[Turn] = (),
    ):
        self.store = store  # None: logging is off; nothing is read or written
        self.cid = cid  # the logged conversation; None until its first exchange is written
        self.name = name  # a named session's name: it follows the conversation the chat goes on with
        self.command = command
        self.backend: str | None = None  # the backend's kind and endpoint (no credentials): set by
        self.endpoint: str | None = None  # whoever opens it
        self._logged = list(logged)  # the turns in memory the log holds, in order (compared by identity)
        self._warn = warn
        self._warned = False

    @property
    def on(self) -> bool:
        return self.store is not None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def exchange(
        self,
        conversation: Conversation,
        message: str,
        done: Done | None,
        reasoning: str | None,
        params: SamplingParams,
        sources: Sequence[Block] = (),
    ) -> None:
        """Log the exchange `conversation` just recorded (nothing, if it kept none); `sources`:
        the blocks that open `message`, each stored once (log_store's fragments)."""
        turn = conversation.last
        if self.store is None or turn is None or turn.user != message or any(t is turn for t in self._logged):
            return  # logging off, or the request failed before any text: the chat kept nothing either
        try:
            self._sync(conversation.turns[:-1], conversation.system)
            assert self.cid is not None
            exchange = self._exchange(turn, conversation.system, done, reasoning, params)
            words = words_after(turn.user, sources)
            if words is not None:
                exchange = replace(exchange, prompt=words, sources=tuple(sources))
            self.store.add(self.cid, exchange)
            self._logged.append(turn)
        except Exception as exc:  # never costs the reply
            self._failed(exc)

    def continuation(
        self, conversation: Conversation, previous: Turn | None, done: Done | None, params: SamplingParams
    ) -> None:
        """/continue made `previous` (the last turn) longer: its logged exchange gets the whole reply."""
        turn = conversation.last
        if self.store is None or turn is None or turn is previous:
            return
        try:
            before = conversation.turns[:-1]
            if self.cid is not None and self._is_logged([*before, previous]):
                self.store.extend_last(self.cid, self._exchange(turn, conversation.system, done, None, params))
                self._logged[-1] = turn
            else:
                self._sync(before, conversation.system)
                assert self.cid is not None
                self.store.add(self.cid, self._exchange(turn, conversation.system, done, None, params))
                self._logged.append(turn)
        except Exception as exc:
            self._failed(exc)

    def fork(self, conversation: Conversation) -> str | None:
        """/fork: the conversation in memory (already cut to its first N turns) becomes a new
        logged conversation, forked from this one at turn N. Its id, or None (logging off, or failed)."""
        if self.store is None:
            return None
        try:
            self._new(conversation.turns, conversation.system)
            return self.cid
        except Exception as exc:
            self._failed(exc)
            return None

    # ---- keeping the log's conversation the one in memory -------------------------------------------

    def _is_logged(self, turns: Sequence[Turn | None]) -> bool:
        return len(turns) == len(self._logged) and all(a is b for a, b in zip(turns, self._logged))

    def _sync(self, before: Sequence[Turn], system: str) -> None:
        """Make the logged conversation hold exactly `before`, the turns before the new one."""
        shared = _common_prefix(before, self._logged)
        if self.cid is not None and shared == len(self._logged):
            for turn in before[shared:]:  # turns the log lacks (a loaded session file): added
                self.store.add(self.cid, self._imported(turn, system))  # type: ignore[union-attr]
                self._logged.append(turn)
            return
        self._new(before, system)

    def _new(self, turns: Sequence[Turn], system: str) -> None:
        """A new logged conversation holding `turns`: forked where it shares turns with the
        current one, else a fresh one."""
        assert self.store is not None
        shared = _common_prefix(turns, self._logged) if self.cid is not None else 0
        parent = self.cid if shared else None
        self.cid = self.store.new_conversation(
            name=self.name,
            parent=parent,
            parent_turn=shared if parent else None,
            exchanges=[self._imported(turn, system) for turn in turns[shared:]],
        )
        self._logged = list(turns)

    def _imported(self, turn: Turn, system: str) -> Exchange:
        return Exchange(
            prompt=turn.user,
            reply=turn.assistant,
            finish_reason=FINISH_OF_STATUS[turn.status],
            command=self.command,
            system=system,
            model=turn.model,
        )

    def _exchange(
        self, turn: Turn, system: str, done: Done | None, reasoning: str | None, params: SamplingParams
    ) -> Exchange:
        if turn.status == "error" or done is None:
            finish = "cancelled" if turn.status == "cut" else "error"
        else:
            finish = done.finish_reason
        schema, valid = _schema_check(turn.assistant, params, finish)
        return Exchange(
            prompt=turn.user,
            reply=turn.assistant,
            finish_reason=finish,
            command=self.command,
            system=system,
            reasoning=reasoning or None,
            model=turn.model,
            backend=self.backend,
            endpoint=self.endpoint,
            params=sampling_values(params),
            prompt_tokens=done.prompt_tokens if done else None,
            completion_tokens=done.completion_tokens if done else None,
            first_token_s=done.first_token_s if done else None,
            total_s=done.total_s if done else None,
            schema=schema,
            schema_valid=valid,
        )

    def _failed(self, exc: Exception) -> None:
        if self._warned:
            return
        self._warned = True
        where = self.store.path if self.store is not None else "the log"
        reason = " ".join(str(exc).split()) or type(exc).__name__
        try:
            self._warn(f"falconchat: warning: not logged ({where}: {reason}); falconchat logs status says more")
        except Exception:  # stderr gone: nothing more to say
            pass


def sampling_values(params: SamplingParams) -> dict:
    values = {k: v for k, v in asdict(params).items() if k != "constraint"}
    values["stop"] = list(params.stop)
    return values


def _schema_check(reply: str, params: SamplingParams, finish: str) -> tuple[str | None, bool | None]:
    """--schema / --json-mode: the constraint as JSON, and whether the reply kept it (None: no
    reply to judge)."""

    constraint = params.constraint
    if constraint is None:
        return None, None
    schema = json.dumps({"kind": constraint.kind, "value": constraint.value}, ensure_ascii=False, default=str)
    if finish not in ("stop", "length"):
        return schema, None
    try:
        check_reply(reply, constraint, cut=finish == "length")
    except FalconchatError:
        return schema, False
    return schema, True


def _common_prefix(a: Sequence[Turn | None], b: Sequence[Turn]) -> int:
    shared = 0
    for left, right in zip(a, b):
        if left is not right:
            break
        shared += 1
    return shared
