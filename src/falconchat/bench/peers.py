"""The baselines `bench` runs that are llama.cpp themselves, loaded the way falconchat loads a
model: without llama.cpp's repacked weight layouts (backends/llama_setup.py)."""

from __future__ import annotations

from typing import Any


def open_engine() -> Any:
    """llama-cpp-python alone, in this process: a `Llama` on the bundled model with the settings
    `ask` decodes with (a 4096-token context, flash attention, the usable cores)."""
    import llama_cpp

    from falconchat.backends.gguf import bundled_model_path
    from falconchat.backends.llama_setup import silence_llama_logs, weights_not_repacked
    from falconchat.backends.threads import usable_cores

    silence_llama_logs(llama_cpp)
    with weights_not_repacked(llama_cpp):
        return llama_cpp.Llama(
            model_path=str(bundled_model_path()),
            n_ctx=4096,
            n_threads=usable_cores(),
            flash_attn=True,
            n_batch=256,
            verbose=False,
        )
