"""`bench` row for `serve` under overload (issue 28): the tokens/s it serves while 32 clients
hammer it without backoff (a 429 is asked again at once), against 8 well-behaved clients (a 429
waits its Retry-After), in the same run on the same server. Both keep every decoding place busy:
what differs is only the stream of refusals, which must cost the model nothing measurable."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from falconchat.bench.batching import CLIENT_PROMPT, TOPICS, Served
from falconchat.bench.stats import Row, median

HAMMERING = 32
WELL_BEHAVED = 8
# Places for 8: the well-behaved clients are never refused, the hammering ones 24 at a time.
SERVER_ARGS = ("--max-batch-size", "4", "--max-concurrent-requests", "8")


@dataclass
class Tally:
    tokens: int = 0
    answered: int = 0
    refused: int = 0


def rows(bench) -> list[Row]:
    work = bench.work
    bench.say(f"starting falconchat serve {' '.join(SERVER_ARGS)}")
    with Served(bench, SERVER_ARGS) as url:
        polite: list[float] = []
        hammered: list[float] = []
        refusals: list[float] = []
        if work.warm_up:
            _served(url, WELL_BEHAVED, backoff=True, seconds=work.overload_s, tokens=work.serve_tokens)
        for rep in range(work.reps):
            bench.say(f"{HAMMERING} clients that do not back off and {WELL_BEHAVED} that do, {rep + 1}/{work.reps}")
            # Alternated, the hammering set first (--quick's only repetition, cold: a figure that errs low).
            for backoff in (False, True) if rep % 2 == 0 else (True, False):
                clients = WELL_BEHAVED if backoff else HAMMERING
                rate, tally = _served(url, clients, backoff=backoff, seconds=work.overload_s, tokens=work.serve_tokens)
                (polite if backoff else hammered).append(rate)
                if not backoff:
                    refusals.append(tally.refused / work.overload_s)
    bench.say(f"{median(refusals):.0f} refusals/s while {HAMMERING} clients hammered")
    return [
        Row(
            f"serve, {HAMMERING} clients retrying 429s at once (tokens/s served)",
            median(hammered),
            "tok/s",
            f"{WELL_BEHAVED} clients that back off",
            median(polite),
            "≥ 0.9 × backing off",
        )
    ]


def _served(url: str, clients: int, *, backoff: bool, seconds: float, tokens: int) -> tuple[float, Tally]:
    """Tokens/s the server answered while `clients` ask for `seconds` (each client's last request
    is let finish: the rate is over the whole time), and the tally."""
    return asyncio.run(_clients(url, clients, backoff=backoff, seconds=seconds, tokens=tokens))


async def _clients(url: str, clients: int, *, backoff: bool, seconds: float, tokens: int) -> tuple[float, Tally]:
    import aiohttp  # noqa: PLC0415 (heavy: aiohttp)

    tally = Tally()
    started = time.perf_counter()
    deadline = started + seconds

    async def client(index: int, session) -> None:
        body = {"inputs": CLIENT_PROMPT.format(TOPICS[index % len(TOPICS)]), "parameters": {"max_new_tokens": tokens}}
        while time.perf_counter() < deadline:
            async with session.post(url + "/generate", json=body) as response:
                await response.read()
                if response.status == 429:
                    tally.refused += 1
                    if backoff:
                        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                if response.status != 200:
                    raise RuntimeError(f"falconchat serve answered {response.status} under overload")
                tally.tokens += int(response.headers["x-generated-tokens"])
                tally.answered += 1

    connector = aiohttp.TCPConnector(limit=0)  # one keep-alive connection per client, as a script's session
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(index, session) for index in range(clients)))
    if not tally.answered:
        raise RuntimeError("falconchat serve answered no request under overload")
    return tally.tokens / (time.perf_counter() - started), tally
