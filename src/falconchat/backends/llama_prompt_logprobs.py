"""A prompt's own logprobs on the local model (TGI's `decoder_input_details`): each token's
logprob given the tokens before it, read from a llama.cpp context made for the purpose, so
that neither the batching engine's sequences nor the single-sequence path's cache is touched."""

from __future__ import annotations

from falconchat.backends.llama_sampling import log_softmax_at
from falconchat.errors import FalconchatError

CHUNK_TOKENS = 256  # tokens per llama_decode (the batching engine's step size, llama_batch.BATCH_TOKENS)


def prompt_logprobs(llm, tokens: list[int], threads: int) -> list[float | None]:
    """Each token's logprob given the tokens before it (None for the first: nothing predicts it),
    from a context of its own, so that no sequence's cache or the single path's is touched."""
    import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)

    params = llama_cpp.llama_context_default_params()
    params.n_ctx = len(tokens)
    params.n_batch = params.n_ubatch = CHUNK_TOKENS
    params.n_seq_max = 1
    params.n_threads = params.n_threads_batch = threads
    params.no_perf = True
    ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    if not ctx:
        raise FalconchatError(f"cannot make a context of {len(tokens)} tokens for the prompt's logprobs")
    batch = llama_cpp.llama_batch_init(CHUNK_TOKENS, 0, 1)
    n_vocab = llm.n_vocab()
    logprobs: list[float | None] = [None]
    try:
        for start in range(0, len(tokens), CHUNK_TOKENS):
            chunk = tokens[start : start + CHUNK_TOKENS]
            for row, token in enumerate(chunk):
                batch.token[row] = token
                batch.pos[row] = start + row
                batch.n_seq_id[row] = 1
                batch.seq_id[row][0] = 0
                batch.logits[row] = True
            batch.n_tokens = len(chunk)
            status = llama_cpp.llama_decode(ctx, batch)
            if status != 0:
                raise FalconchatError(f"the local model failed (llama_decode returned {status})")
            for row in range(len(chunk)):
                if start + row + 1 < len(tokens):
                    logprobs.append(log_softmax_at(ctx, row, n_vocab, tokens[start + row + 1])[0])
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
    return logprobs
