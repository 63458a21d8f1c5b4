"""greenlm.progress: one updating line on a terminal, throttled plain lines in a log."""

import io

import pytest

from greenlm.progress import Progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_a_log_gets_a_line_at_most_every_interval_and_a_closing_line():
    out, clock = io.StringIO(), Clock()
    with Progress("optimize", stream=out, interval_s=10, clock=clock) as p:
        for i in range(1, 61):  # one update a second for a minute
            p.update(f"variant {i % 8}/8 int8 round {i // 8 + 1}/8", i, 60)
            clock.t += 1
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    # the first update at once, then one every 10 s of the 60, then the closing line
    assert len(lines) == 7, lines
    assert lines[0] == "optimize: variant 1/8 int8 round 1/8 (1/60, 0.0 s)"
    assert lines[1] == "optimize: variant 3/8 int8 round 2/8 (11/60, 10.0 s)"
    assert lines[-1] == "optimize: done (1 min 00 s)"


def test_a_stopped_run_says_where_it_stopped():
    out, clock = io.StringIO(), Clock()
    with pytest.raises(KeyboardInterrupt):
        with Progress("optimize", stream=out, interval_s=10, clock=clock) as p:
            p.update("baseline round 1/5", 1, 10)
            clock.t += 2
            p.update("variant 1/1 bf16 round 1/5", 2, 10)  # within 10 s: held back
            raise KeyboardInterrupt
    assert out.getvalue().splitlines()[-2:] == [
        "optimize: variant 1/1 bf16 round 1/5 (2/10, 2.00 s)",
        "optimize: stopped (2.00 s)",
    ]


def test_a_terminal_gets_one_line_redrawn_in_place_and_cleared(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    out, clock = io.StringIO(), Clock()
    p = Progress("optimize", stream=out, tty=True, clock=clock)
    p.update("variant 1/8 a-rather-long-technique-name round 1/5", 1, 40)
    clock.t += 0.05
    p.update("variant 2/8 int8 round 1/5", 2, 40)  # faster than 10 a second: not drawn
    clock.t += 0.2
    p.update("variant 3/8 int8 round 1/5", 3, 40)
    p.log("skipped: bnb4")
    p.close()
    text = out.getvalue()
    assert "\n" not in text.replace("skipped: bnb4\n", "")  # only the logged line is a line
    frames = [f.removesuffix("\x1b[K") for f in text.split("\r") if f]
    assert frames[0] == "optimize: variant 1/8 a-rather-long-tec"  # cut to the terminal width - 1
    assert all(len(f) <= 39 for f in frames)
    assert not any("variant 2/8" in f for f in frames)
    assert "optimize: variant 3/8 int8 round 1/5" in frames[1]
    assert text.endswith("\r\x1b[K")  # the line is gone when the work is done


def test_the_mode_follows_isatty():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert Progress("x", stream=Tty()).tty is True
    assert Progress("x", stream=io.StringIO()).tty is False


def test_a_broken_stream_never_stops_the_work():
    out = io.StringIO()
    out.close()
    p = Progress("optimize", stream=out, interval_s=0)
    p.update("round 1/5", 1, 5)
    p.log("a line")
    p.close()  # nothing raised


def test_the_callback_takes_optimizes_signature():
    out = io.StringIO()
    cb = Progress("optimize", stream=out, interval_s=0, clock=Clock()).callback()
    cb("baseline round 1/5", 1, 12)
    assert out.getvalue() == "optimize: baseline round 1/5 (1/12, 0.0 s)\n"
