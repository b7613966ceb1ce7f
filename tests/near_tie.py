"""Many sequences decoded together against one at a time, as a property every correct
engine keeps on every CPU: the same greedy tokens, or the same tokens up to a near tie.

Decoding eight sequences in one batch adds the same products in another order than
decoding one (llama.cpp picks other matrix kernels for other batch sizes), so the
logits differ in their last bits, and the difference grows along the reply through the
cache. Where one-at-a-time's two best tokens were almost equally likely, the batch may
take the other one, and the replies go separate ways from there. Seen on this machine:
a counting prompt, token 47, "8" at logprob -0.6927 alone against "7" about as likely.
A wrong engine (another sequence's logits, a stale cache) picks tokens that one-at-a-time
found unlikely, and that is what the check catches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TIE_NATS = 0.25  # how close (in logprob) the two tokens must have been alone: ~1.3× in probability
TOP_N = 5  # the most likely tokens asked of the one-at-a-time run, to see the runner-up


@dataclass(frozen=True)
class Step:
    token: int
    logprob: float
    top: dict[int, float]  # the most likely tokens at this step, alone: id -> logprob


def near_tie_difference(alone: Sequence[Step], together: Sequence[int]) -> str | None:
    """None when `together` is `alone`'s tokens, or is them up to a near tie where it took
    another token that alone was within TIE_NATS of the one chosen; otherwise why not."""
    for index, (step, token) in enumerate(zip(alone, together)):
        if token == step.token:
            continue
        other = step.top.get(token)
        if other is None or other < step.logprob - TIE_NATS:
            return (
                f"at token {index} the batch chose {token} (logprob alone: {other}), "
                f"one at a time chose {step.token} (logprob {step.logprob:.4f}): not a near tie"
            )
        return None  # a near tie decided the other way: the rest follows another path
    if len(together) != len(alone):
        return f"the same tokens, but {len(together)} of them together and {len(alone)} alone"
    return None
