"""The one progress display (bench/progress.py): counts, rate and ETA; a live bar only
on a terminal outside CI; plain lines in logs; nothing when disabled."""

from __future__ import annotations

import io
import re

import pytest

from bench.progress import ProgressLine, clock, live_possible


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_clock_reads_minutes_and_hours() -> None:
    assert clock(0) == "00:00" and clock(61.9) == "01:01" and clock(3725) == "1:02:05"


def test_plain_lines_carry_counts_elapsed_and_eta() -> None:
    out = io.StringIO()
    with ProgressLine(3, "x", stream=out, live=False) as p:
        p.advance("first")
        p.advance()  # an item without a line prints nothing
        p.advance("third")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"\[1/3\] \d\d:\d\d ETA \d\d:\d\d  first", lines[0])
    assert lines[1].startswith("[3/3]") and lines[1].endswith("ETA 00:00  third")
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_weights_drive_the_eta() -> None:
    p = ProgressLine(10, stream=io.StringIO(), live=False)
    p.start -= 10.0  # ten seconds in
    p.advance(weight=5)
    assert p.eta() == pytest.approx(10.0, rel=0.05)  # half the weight done in 10 s


def test_disabled_prints_nothing() -> None:
    out = _Tty()
    with ProgressLine(2, stream=out, enabled=False) as p:
        p.advance("a")
        p.advance("b")
    assert out.getvalue() == ""


def test_live_bar_only_on_a_terminal_outside_ci(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert live_possible(_Tty()) and not live_possible(io.StringIO())
    monkeypatch.setenv("CI", "true")
    assert not live_possible(_Tty())


def test_live_bar_prints_each_line_above_it(monkeypatch) -> None:
    pytest.importorskip("rich")
    monkeypatch.delenv("CI", raising=False)
    out = _Tty()
    with ProgressLine(2, "job", stream=out) as p:
        assert p._bar is not None
        p.advance("one done")
        p.advance("two done")
    text = out.getvalue()
    assert "one done" in text and "two done" in text and "[2/2]" in text
