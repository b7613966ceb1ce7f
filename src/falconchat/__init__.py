"""falconchat: a terminal chatbot for open-source LLMs, and a library (docs/api.md).

    import falconchat

    with falconchat.open_model() as model:  # the bundled model; "NAME" or an endpoint URL as -m takes
        print(model.reply("Name three primes.", temperature=0).text)

The library's names live in falconchat/api.py and are loaded when first used (PEP 562), so
`import falconchat` (and `from falconchat import __version__`) stays instant and loads nothing."""

from __future__ import annotations

__version__ = "0.1.0"

# Not `from typing import TYPE_CHECKING`: importing typing would cost `import falconchat` ~40 ms.
# Type checkers take any TYPE_CHECKING as true, and see the names below; at run time, __getattr__.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from falconchat.api import Conversation, Model, Reply, ReplyStream, Sampling, ScriptedModel, open_model
    from falconchat.errors import FalconchatError, InvalidReply
    from falconchat.types import SentPrompt, Turn

__all__ = [
    "Conversation",
    "FalconchatError",
    "InvalidReply",
    "Model",
    "Reply",
    "ReplyStream",
    "Sampling",
    "ScriptedModel",
    "SentPrompt",
    "Turn",
    "__version__",
    "open_model",
]

# Each public name, and the module (of this package) that defines it.
_LAZY = {
    **dict.fromkeys(
        ("Conversation", "Model", "Reply", "ReplyStream", "Sampling", "ScriptedModel", "open_model"), "api"
    ),
    **dict.fromkeys(("FalconchatError", "InvalidReply"), "errors"),
    **dict.fromkeys(("SentPrompt", "Turn"), "types"),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'falconchat' has no attribute {name!r}")
    import importlib  # noqa: PLC0415 (the library loads when a name of it is first used)

    value = getattr(importlib.import_module(f"falconchat.{module}"), name)
    globals()[name] = value  # found once: later look-ups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
