"""Start one benchmark worker and follow it: the loop the local runner and a Ray
node share.

`follow` starts `bench.timing.worker_main` in its own session, polls the JSON
lines it streams (one per finished cell) and yields each new entry as it
appears; its return value (`StopIteration.value`) is "" or the group-level
error: a timeout (the worker and its children are killed) or a non-zero exit
(with the tail of its log). On any exception or when the generator is closed
(Ctrl-C, a cancelled Ray task) the worker is killed before it propagates, so
no benchmark outlives the process that owns it. This module imports no
framework and times nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any

from bench.results import write as records
from bench.results.paths import ROOT

POLL_S = 0.2  # how often the worker's stream is read (not a timing: nothing is timed here)


def worker_command(action: str, spec: Path) -> list[str]:
    """The worker process's command line (`bench.timing.worker_main`)."""
    return [sys.executable, "-m", "bench.timing.worker_main", action, str(spec)]


def log_tail(path: Path, lines: int = 3) -> str:
    """The last `lines` lines of a log on one line (at most 400 characters)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-400:]


def kill(proc: subprocess.Popen) -> None:
    """Stop a worker started here, and its children (its own session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def follow(spec: Path, log: Path, stream: Path, timeout: float, *,
           env: Mapping[str, str] | None = None,
           preexec_fn: Callable[[], None] | None = None,
           ) -> Generator[dict[str, Any], None, str]:
    """Run the worker for `spec`; yield its streamed cell entries; return its error ("")."""
    with log.open("w") as fh:
        proc = subprocess.Popen(worker_command("run", spec), cwd=ROOT, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env=None if env is None else dict(env), preexec_fn=preexec_fn)
    start, seen = time.monotonic(), 0
    try:
        while True:
            finished = proc.poll() is not None
            entries = records.read_stream(stream)
            yield from entries[seen:]
            seen = len(entries)
            if finished:
                break
            if time.monotonic() - start > timeout:
                kill(proc)
                return f"group timed out after {timeout:g}s (hang?)"
            time.sleep(POLL_S)
    except BaseException:  # Ctrl-C, SIGTERM, a cancelled task, a closed generator
        kill(proc)
        raise
    if proc.returncode != 0:
        return f"worker exited with code {proc.returncode}: {log_tail(log)}"
    return ""
