"""The bottom toolbar's figures, measured off prompt-toolkit's event loop.

The model's context length and what the conversation takes of it may need a remote
endpoint (TGI answers GET /info) that is slow, hanging or gone. prompt-toolkit draws
the toolbar on its event loop, so anything slow there freezes typing, Ctrl-C and
Ctrl-D, and anything raised there traps the user in "Press ENTER to continue". So the
toolbar only reads what is known; a background thread measures and fills it in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from falconchat.errors import FalconchatError


class Gauge:
    """`refresh()` starts a measurement in a thread; `length`, `used` (the next prompt as it
    would be sent), `left_out` (the oldest turns it leaves out to fit) and `problem` are what
    is known so far (None until measured). A refresh while one runs is queued."""

    def __init__(
        self,
        measure_length: Callable[[], int],
        measure_used: Callable[[], tuple[int, int]],
        redraw: Callable[[], None],
    ):
        self._measure_length = measure_length
        self._measure_used = measure_used
        self._redraw = redraw
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self.length: int | None = None
        self.used: int | None = None
        self.left_out = 0
        self.problem: str | None = None  # why the last measurement failed, one line

    def forget(self) -> None:
        """The backend changed: what was measured no longer holds."""
        self.length = self.used = None
        self.left_out = 0
        self.problem = None

    def refresh(self) -> None:
        with self._lock:
            if self._thread is not None:
                self._again = True
                return
            self._thread = threading.Thread(target=self._run, name="falconchat-gauge", daemon=True)
            self._thread.start()

    def wait(self, seconds: float | None = None) -> bool:
        """Wait for the measurement under way (in short steps, so Ctrl-C still interrupts);
        True when none is running any more."""
        thread = self._thread
        if thread is None:
            return True
        step = 0.05
        waited = 0.0
        while thread.is_alive() and (seconds is None or waited < seconds):
            thread.join(step)
            waited += step
        return not thread.is_alive()

    def _run(self) -> None:
        while True:
            self._measure()
            with self._lock:
                if not self._again:
                    self._thread = None
                    return
                self._again = False

    def _measure(self) -> None:
        try:
            self.length = self._measure_length()
            self._changed()
            self.used, self.left_out = self._measure_used()
            self.problem = None
        except FalconchatError as exc:
            self.problem = exc.message
        except Exception as exc:  # a figure for the toolbar must never take the chat down
            self.problem = f"could not measure the context: {type(exc).__name__}: {exc}"
        self._changed()

    def _changed(self) -> None:
        try:
            self._redraw()
        except Exception:  # no prompt showing, or it is closing
            pass
