"""One progress display for every long command (run, study, gradcheck, train).

Counts done / total, the rate and the time left, on stderr. On a terminal it is a
live bar (rich) with each finished item's line printed above it; on a pipe, in a
file or in CI (`CI` set) there is no bar and no control characters: only the
items' lines, each led by `[done/total] elapsed ETA`, so a log reads the same
wherever it was made. With `enabled=False` it prints nothing at all.

This module must not import a framework; it knows nothing about what is counted.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """mm:ss (hh:mm:ss from an hour)."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    text = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"{hours}:{text}" if hours else text


def live_possible(stream: TextIO) -> bool:
    """A live bar only where a person watches: a terminal, and not a CI log."""
    if os.environ.get("CI"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressLine:
    """`advance(line)` once per finished item (of `total`); `close()` at the end.

    `weight` lets items cost different amounts (the ETA then counts weights).
    """

    def __init__(self, total: float, label: str = "", *, enabled: bool = True,
                 stream: TextIO | None = None, live: bool | None = None) -> None:
        self.total = max(float(total), 0.0)
        self.label = label
        self.done = 0.0
        self.count = 0
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self._bar = None
        use_live = live_possible(self.stream) if live is None else live
        if enabled and use_live:
            self._bar = self._make_bar()

    def _make_bar(self):
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
        except ImportError:  # plain lines, as in a log
            return None
        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TaskProgressColumn(), TextColumn("{task.fields[rate]}"),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                       console=Console(file=self.stream), transient=True)
        bar.start()
        self._task = bar.add_task(self.label or "progress", total=self.total or None,
                                  rate="")
        return bar

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def eta(self) -> float:
        if self.done <= 0:
            return float("nan")
        return self.elapsed / self.done * max(0.0, self.total - self.done)

    def rate(self) -> str:
        per_s = self.count / self.elapsed if self.elapsed > 0 else 0.0
        return f"{per_s:.2f}/s" if per_s >= 0.1 else f"{60 * per_s:.2f}/min"

    def prefix(self) -> str:
        width = len(str(int(self.total)))
        eta = self.eta()
        left = clock(eta) if eta == eta else "--:--"
        return f"[{self.count:{width}d}/{int(self.total)}] {clock(self.elapsed)} ETA {left}"

    def skip(self, items: int) -> None:
        """`items` that will not run (a group that failed before them): counted as done,
        with no line."""
        self.done += items
        self.count += items
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total or None)

    def advance(self, line: str | None = None, weight: float = 1.0) -> None:
        """One item finished; `line` (if any) is printed for it, led by the counts."""
        self.done += weight
        self.count += 1
        if not self.enabled:
            return
        text = f"{self.prefix()}  {line}" if line is not None else None
        if self._bar is not None:
            if text is not None:
                self._bar.console.print(text, markup=False, highlight=False)
            self._bar.update(self._task, completed=self.done, total=self.total or None,
                             rate=self.rate())
        elif text is not None:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
