"""The baselines `bench` runs that are llama.cpp themselves (the `llm` CLI with the bundled
model's plugin, llama-cpp-python alone), loaded the way falconchat loads a model: without
llama.cpp's repacked weight layouts (backends/llama_setup.py). That compares like with like,
and on CPUs that report AMX it is what runs at all: there the repacked kernels die with SIGILL
(`tilezero`) on the first reply, as `llm` does when run as installed."""

from __future__ import annotations

import importlib.util
import runpy
import sys
from typing import Any

from falconchat.backends.gguf import bundled_model_path
from falconchat.backends.llama_setup import never_repacked, silence_llama_logs, weights_not_repacked


def open_engine(threads: int) -> Any:
    """llama-cpp-python alone, in this process: a `Llama` on the bundled model with the settings
    `ask` decodes with (a 4096-token context, flash attention, `threads` threads)."""
    import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)

    silence_llama_logs(llama_cpp)
    with weights_not_repacked(llama_cpp):
        return llama_cpp.Llama(
            model_path=str(bundled_model_path()),
            n_ctx=4096,
            n_threads=threads,
            flash_attn=True,
            n_batch=256,
            verbose=False,
        )


def llm_command() -> list[str] | None:
    """The `llm` CLI (installed with the bundled model's package), run through this module so
    that its model loads as ours does; None where it is not installed."""

    if importlib.util.find_spec("llm") is None:
        return None
    return [sys.executable, "-m", "falconchat.bench.peers", "llm"]


def main(argv: list[str]) -> None:
    """`python -m falconchat.bench.peers MODULE [ARGS…]`: `python -m MODULE ARGS…`, every model
    it loads with plain weight layouts (on AMX CPUs the repacked ones die with SIGILL)."""

    import llama_cpp  # noqa: PLC0415 (heavy: llama_cpp)

    never_repacked(llama_cpp)
    module, *args = argv
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
