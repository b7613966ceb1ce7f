"""Closing the bundled model while another thread still uses it (the chat's toolbar counts
tokens in a thread of its own; the chat closes the model as it ends). CI caught the chat
exiting with SIGSEGV after Ctrl-D: the model was freed under a tokenizing thread."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.process  # a crash must take down a child, not the test run

SCRIPT = textwrap.dedent(
    """
    import threading
    from falconchat.backends.local import LocalBackend
    from falconchat.config_models import ModelSpec
    from falconchat.errors import FalconchatError

    backend = LocalBackend(ModelSpec(name="smollm2", backend="local"))
    backend.load()
    text = "The quick brown fox jumps over the lazy dog. " * 400
    counted, refused = [], []
    started = threading.Event()

    def count():
        while True:
            try:
                counted.append(backend.count_tokens(text))
                backend.native_prompt([{"role": "user", "content": text[:2000]}])
            except FalconchatError as exc:
                refused.append(exc.message)
                return
            started.set()

    workers = [threading.Thread(target=count, daemon=True) for _ in range(2)]
    for worker in workers:
        worker.start()
    started.wait(60)
    backend.close()
    for worker in workers:
        worker.join(10)
    print(len(counted), len(set(counted)), refused)
    """
)


def test_closing_the_model_while_a_thread_tokenizes_waits_for_it_and_refuses_later_calls():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    counted, distinct, refused = done.stdout.split(" ", 2)
    assert int(counted) >= 1 and int(distinct) == 1  # every count whole and the same
    assert refused.strip() == "['the model is closed', 'the model is closed']"
