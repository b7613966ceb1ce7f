"""The rows `batch` writes, in two shapes: falconchat's own (docs/batch-line.schema.json) and,
when the input was an OpenAI batch file, OpenAI's (docs/batch-openai-row.schema.json), as
the OpenAI Batch API and `vllm run-batch` write them:

    {"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}

`body` is a `chat.completion` or `text_completion` object with `usage`; a failed row has
`body` null and `error` {code, message}, and a status code that says what kind of failure.
"""

from __future__ import annotations

import functools
import itertools
import time
import uuid
from typing import Any

from falconchat.batch.input import Item
from falconchat.errors import AuthRejected, InvalidReply, Overloaded, Rejected, Timeout, Unreachable
from falconchat.records import error_object, reply_fields
from falconchat.types import Done

# The HTTP status a failure stands for (an OpenAI batch row's response.status_code).
STATUS = (
    (InvalidReply, 422),  # a structured reply that does not validate: never a silent pass
    (AuthRejected, 401),
    (Overloaded, 429),
    (Timeout, 504),
    (Unreachable, 503),
    (Rejected, 400),
)


class OwnRows:
    """falconchat's own lines."""

    openai = False

    def answer(self, item: Item, reply: str, done: Done, attempts: int, data: Any, reasoning: str, notes: list[str]):
        record = {"id": item.id, **reply_fields(reply, done), "attempts": attempts}
        if item.params.constraint is not None:
            record["data"] = data
        if reasoning:
            record["reasoning"] = reasoning
            record["reasoning_s"] = round(done.reasoning_s or 0.0, 4)
        if notes:
            record["notes"] = notes  # such as turns left out to fit the context
        return record

    def failure(self, item: Item, exc: BaseException, attempts: int) -> dict:
        return {"id": item.id, "error": error_object(exc), "attempts": attempts}

    def refused(self, item: Item) -> dict:
        return {"id": item.id, "error": {"kind": "input", "message": item.refused, "exit_code": 2}, "attempts": 1}


class OpenAIRows:
    """OpenAI's batch output rows; `model` is the model that answered (the command's)."""

    openai = True

    def __init__(self, model: str) -> None:
        self.model = model

    def answer(self, item: Item, reply: str, done: Done, attempts: int, data: Any, reasoning: str, notes: list[str]):
        usage = {
            "prompt_tokens": done.prompt_tokens,
            "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens,
        }
        if item.api == "completions":
            body: dict[str, Any] = {
                "id": f"cmpl-{_hex()}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "text": reply,
                        "logprobs": _completion_logprobs(done.logprobs) if _asked(item, done) else None,
                        "finish_reason": done.finish_reason,
                    }
                ],
                "usage": usage,
            }
        else:
            message: dict[str, Any] = {"role": "assistant", "content": reply}
            if reasoning:
                message["reasoning_content"] = reasoning  # as vLLM's reasoning parsers give it
            body = {
                "id": f"chatcmpl-{_hex()}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": {"content": list(done.logprobs or ())} if _asked(item, done) else None,
                        "finish_reason": done.finish_reason,
                    }
                ],
                "usage": usage,
            }
        return self._row(item, 200, body, None)

    def failure(self, item: Item, exc: BaseException, attempts: int) -> dict:
        status = next((code for kind, code in STATUS if isinstance(exc, kind)), 500)
        error = error_object(exc)
        return self._row(item, status, None, {"code": error["kind"], "message": error["message"]})

    def refused(self, item: Item) -> dict:
        return self._row(item, 400, None, {"code": "invalid_request", "message": item.refused})

    @staticmethod
    def _row(item: Item, status: int, body: dict | None, error: dict | None) -> dict:
        return {
            "id": f"falconchat-{_hex()}",
            "custom_id": item.id,
            "response": {"status_code": status, "request_id": f"falconchat-batch-{_hex()}", "body": body},
            "error": error,
        }


def _asked(item: Item, done: Done) -> bool:
    """The request asked for logprobs and the replica gave them (else the row's are null)."""
    return item.params.logprobs is not None and bool(done.logprobs)


def _completion_logprobs(entries: tuple[dict, ...] | None) -> dict:
    """The completions API's shape: parallel lists, each token's alternatives as {token: logprob}."""
    tokens = [entry["token"] for entry in entries or ()]
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [entry.get("logprob") for entry in entries or ()],
        "top_logprobs": [
            {t["token"]: t["logprob"] for t in entry.get("top_logprobs") or ()} for entry in entries or ()
        ],
        "text_offset": offsets,
    }


def is_failed(record: dict) -> bool:
    return record.get("error") is not None


def _hex() -> str:
    """A unique id's 32 hex digits: this run's random half, then a count (a uuid4 for each of a
    row's three ids read the kernel's random source three times per row)."""
    return f"{_run_id()}{next(_count):016x}"


@functools.cache
def _run_id() -> str:
    return uuid.uuid4().hex[:16]


_count = itertools.count()
