"""Start a peer built on llama.cpp (llama-cpp-python's server) the way falconchat loads a model:
without llama.cpp's repacked weight layouts (backends/llama_setup.py). Why: on CPUs that report
AMX the repacked kernels die with SIGILL (`tilezero`) on the first reply, so a peer started as
installed crashes there while falconchat answers, and the tests against it fail for that alone.

`python tests/peers.py MODULE [ARGS…]` runs `python -m MODULE ARGS…` so; `command()` builds that."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def command(module: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), module, *args]


if __name__ == "__main__":
    import runpy

    import llama_cpp

    from falconchat.backends.llama_setup import never_repacked

    never_repacked(llama_cpp)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # the peer sees its own modules
    module, *args = sys.argv[1:]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
