"""Where results live, resolved one way: from the repository root, never the working directory.

`nnparity run`, `baseline`, `history` and `nox -s bench` all read these, so a
command started from another directory finds the same baselines and writes
the same places. Raw runs and this machine's history are git-ignored
(`results/runs/`); committed baselines and the published report are not.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"
RUNS = RESULTS / "runs"  # raw runs, git-ignored
BASELINES = RESULTS / "baselines"  # committed, one file per machine fingerprint
# this machine's history: with the raw runs, git-ignored; publish with --file
HISTORY_FILE = RUNS / "history.csv"
HISTORY_PLOTS = RUNS / "history"
