"""Loading a model into llama.cpp quietly and reproducibly: its own log lines never reach
the user's terminal, and its weights keep the layout that gives every batch size the same
numbers."""

from __future__ import annotations

import ctypes
import threading
from contextlib import contextmanager

_log_callback = None  # kept referenced: llama.cpp holds only a C pointer to it


def silence_llama_logs(llama_cpp) -> None:
    """Nothing from llama.cpp reaches the user's terminal; errors surface as ConfigError lines."""
    global _log_callback
    if _log_callback is None:

        @llama_cpp.llama_log_callback
        def drop(level, text, user_data):
            pass

        _log_callback = drop
        llama_cpp.llama_log_set(drop, ctypes.c_void_p(0))


_model_params_lock = threading.Lock()


@contextmanager
def weights_not_repacked(llama_cpp):
    """Load without llama.cpp's repacked weight layouts (`--no-repack`).

    Repacked weights are multiplied by one kernel for one row and another for
    several, so a reply's tokens would depend on how many sequences the
    batching engine decodes beside it. Plain layouts give every sequence the
    single-sequence path's numbers. And on CPUs that report AMX, the repacked
    kernels die with SIGILL (`tilezero`) on the first reply: plain ones run.
    `Llama()` has no argument for it, so its default model parameters are
    swapped while it loads.
    """
    defaults = llama_cpp.llama_cpp.llama_model_default_params
    with _model_params_lock:
        llama_cpp.llama_cpp.llama_model_default_params = _plain(defaults)
        try:
            yield
        finally:
            llama_cpp.llama_cpp.llama_model_default_params = defaults


def never_repacked(llama_cpp) -> None:
    """Every model this process loads from now on keeps plain weight layouts: for a program
    that loads models its own way (llama-cpp-python's server, `llm`), started by `bench` or a
    test as a peer (see `weights_not_repacked`)."""
    with _model_params_lock:
        llama_cpp.llama_cpp.llama_model_default_params = _plain(llama_cpp.llama_cpp.llama_model_default_params)


def _plain(defaults):
    def plain():
        params = defaults()
        params.use_extra_bufts = False
        return params

    return plain
