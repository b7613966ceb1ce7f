"""The stderr line while a reply is collected (cli/progress_line.py), with a fake clock: what
else reaches the terminal meanwhile (a notice, a thinking model's live reasoning) is never
drawn into it."""

from __future__ import annotations

from falconchat.cli.progress_line import ProgressLine
from falconchat.records import Collector
from in_process import Terminal


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_line_counts_redraws_at_most_ten_times_a_second_and_is_erased():
    out, clock = Terminal(tty=True), Clock()
    with ProgressLine(out, {}, 100, "JSON", clock) as line, line.counting(Collector()) as writer:
        for _ in range(5):
            writer.write("x")  # the same instant: drawn once, at the start
        clock.now = 2.0
        writer.write("y")
    shown = out.text()
    assert shown.count("writing JSON…") == 2 and "6/100 tokens · 2s" in shown
    assert shown.endswith("\r\x1b[K")


def test_a_notice_goes_above_the_line_and_reasoning_pauses_it():
    out, clock = Terminal(tty=True), Clock()
    notices: list[str] = []
    reasoning = Collector()
    with ProgressLine(out, {}, 100, "JSON", clock) as line:
        line.above(lambda text: (notices.append(text), out.write(text + "\n")))("left out 1 turn")
        assert out.text().split("left out 1 turn")[0].endswith("\r\x1b[K")  # erased before the notice
        thinking = line.pausing(reasoning)
        before = out.text()
        thinking.write("Let me think.")
        clock.now = 5.0
        line.step()
        assert out.text() == before + "\r\x1b[K"  # erased, and not drawn while reasoning is shown
        thinking.close()
        assert out.text().endswith("1/100 tokens · 5s (Ctrl-C stops)")  # back once the reply starts
    assert reasoning.text == "Let me think." and notices == ["left out 1 turn"]


def test_nothing_in_a_pipe_or_on_a_dumb_terminal_or_when_off():
    for out, environ, what in (
        (Terminal(), {}, "JSON"),
        (Terminal(tty=True), {"TERM": "dumb"}, "JSON"),
        (Terminal(tty=True), {}, None),
    ):
        with ProgressLine(out, environ, 100, what, Clock()) as line, line.counting(Collector()) as writer:
            writer.write("x")
        assert out.text() == ""
