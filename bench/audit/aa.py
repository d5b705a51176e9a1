"""A/A proof: two `nnparity run` of the same code, back to back, must compare as equal.

`python -m bench.audit.aa --preset quick --pairs 5` runs, per pair, the harness
twice into fresh directories (`python -m bench.cli run --preset P --out DIR ...`,
this checkout's code, one after the other on this machine), then reports:

- what `nnparity compare A B` concludes: its exit code (0 unless a regression or
  a lost cell) and how many cells it flags as regressions and improvements;
- flipped orderings: within each row group of the report (task config, phase,
  device, dtype, main batch size), every pair of variants whose ratio one run
  calls a difference (its 95% interval wholly outside the +-2% noise band, the
  report's "~" rule) is an ordering; it flips when the other run orders the two
  medians the other way round. The share is counted over both runs' significant
  orderings.

`--evaluate DIR` judges pairs kept earlier (`--keep DIR`: DIR/pair1/a, DIR/pair1/b,
...) again with this checkout's rules, without running anything: the same raw
timings under a changed comparison rule.

It exits 0 when every pair's compare exits 0 and at most `--max-flips` (5%) of
the significant orderings flip, else 1 (issue 21's acceptance test). Run it on
an otherwise idle machine: a busy one measures the neighbours. It times nothing
itself and imports no framework; the runs' directories are removed unless --keep.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from bench.options import InputError, finite_float, positive_int
from bench.regress.compare import compare_runs, compared_cells, exit_code
from bench.results.paths import ROOT
from bench.results.read import load_run
from bench.results.stats import Verdict, ratio_interval, within_noise

MAX_FLIPS = 0.05


@dataclass(frozen=True)
class PairResult:
    pair: int
    compare_exit: int
    regressions: int
    improvements: int
    cells: int
    significant: int  # orderings either run calls significant (counted per run)
    flipped: int
    seconds: tuple[float, float]

    @property
    def flip_share(self) -> float:
        return self.flipped / self.significant if self.significant else 0.0


def orderings(df: pd.DataFrame) -> dict[tuple, tuple[float, bool]]:
    """(row group, variant a, variant b) -> (median a / median b, significant) for every
    pair of ok steady cells in the same report row group (a < b by name)."""
    from bench.report.markdown import tidy
    from bench.results.read import main_batch
    from bench.results.schema import STEADY_PHASES

    t = tidy(df)
    ok = t[(t["status"] == "ok") & t["phase"].isin(STEADY_PHASES) & t["interval"].notna()]
    out: dict[tuple, tuple[float, bool]] = {}
    for config, part in ok.groupby("config", sort=False):
        main = part[part["batch_size"] == main_batch(part)]
        for key, group in main.groupby(["phase", "device", "dtype"], sort=False):
            rows = sorted(group.itertuples(), key=lambda r: r.impl)
            for a, b in itertools.combinations(rows, 2):
                ratio, low, high = ratio_interval(a.interval, b.interval)
                out[(config, *key, a.impl, b.impl)] = (ratio, not within_noise(low, high))
    return out


def flips(first: pd.DataFrame, second: pd.DataFrame) -> tuple[int, int]:
    """(significant orderings in either run, counted per run; those the other run reverses)."""
    one, two = orderings(first), orderings(second)
    significant = flipped = 0
    for mine, other in ((one, two), (two, one)):
        for key, (ratio, sig) in mine.items():
            if not sig or key not in other:
                continue
            significant += 1
            flipped += (ratio > 1.0) != (other[key][0] > 1.0)
    return significant, flipped


def compare_pair(a: Path, b: Path) -> tuple[int, int, int, int]:
    """(compare's exit code, regressions, improvements, cells compared) for A -> B."""
    cmp = compare_runs(load_run(a), load_run(b))
    return (exit_code(cmp), cmp.count(Verdict.REGRESSION), cmp.count(Verdict.IMPROVEMENT),
            compared_cells(cmp))


def _run(preset: str, out: Path, run_args: list[str], log: Path) -> float:
    cmd = [sys.executable, "-m", "bench.cli", "run", "--preset", preset, "--out", str(out),
           *run_args]
    print(f"aa: {shlex.join(cmd[1:])}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1) or not any(out.glob("*.json")):
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise InputError(f"nnparity run exited {proc.returncode}: {tail[0]} (log {log})")
    return seconds


def judge_pair(i: int, a: Path, b: Path, seconds: tuple[float, float]) -> PairResult:
    code, reg, imp, cells = compare_pair(a, b)
    significant, flipped = flips(load_run(a), load_run(b))
    return PairResult(i, code, reg, imp, cells, significant, flipped, seconds)


def run_pairs(preset: str, pairs: int, run_args: list[str], root: Path) -> list[PairResult]:
    results = []
    for i in range(1, pairs + 1):
        a, b = root / f"pair{i}" / "a", root / f"pair{i}" / "b"
        for d in (a, b):
            d.parent.mkdir(parents=True, exist_ok=True)
        sa = _run(preset, a, run_args, a.parent / "a.log")
        sb = _run(preset, b, run_args, b.parent / "b.log")
        result = judge_pair(i, a, b, (sa, sb))
        print(_line(result), file=sys.stderr, flush=True)
        results.append(result)
    return results


def evaluate_pairs(root: Path) -> list[PairResult]:
    """The pairs kept under `root` (pair1/a, pair1/b, ...), judged again; nothing runs."""
    dirs = sorted((p for p in root.glob("pair*") if p.name[4:].isdigit()),
                  key=lambda p: int(p.name[4:]))
    done = [p for p in dirs if any((p / "a").glob("*.json")) and any((p / "b").glob("*.json"))]
    if not done:
        raise InputError(f"--evaluate {root}: no finished pair (pairN/a and pairN/b with "
                         "results) in it")
    return [judge_pair(int(p.name[4:]), p / "a", p / "b", (math.nan, math.nan)) for p in done]


def _line(r: PairResult) -> str:
    took = (f"runs took {r.seconds[0]:.0f} s and {r.seconds[1]:.0f} s"
            if all(math.isfinite(s) for s in r.seconds) else "judged again, not run")
    return (f"pair {r.pair}: compare exit {r.compare_exit}, {r.regressions} regression(s) and "
            f"{r.improvements} improvement(s) among {r.cells} cells; {r.flipped} of "
            f"{r.significant} significant orderings flipped ({r.flip_share:.1%}); {took}")


def verdict(results: list[PairResult], max_flips: float = MAX_FLIPS) -> tuple[bool, str]:
    sig = sum(r.significant for r in results)
    flipped = sum(r.flipped for r in results)
    share = flipped / sig if sig else 0.0
    exits = sum(r.compare_exit == 0 for r in results)
    ok = exits == len(results) and share <= max_flips
    return ok, (f"A/A: compare exited 0 in {exits} of {len(results)} pair(s); "
                f"{sum(r.regressions + r.improvements for r in results)} cell(s) flagged in "
                f"all; {flipped} of {sig} significant orderings flipped ({share:.1%}, limit "
                f"{max_flips:.0%}): {'PASS' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit.aa", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--pairs", type=positive_int, default=1,
                        help="A/A pairs to run (default 1)")
    parser.add_argument("--run-args", default="--no-gradcheck", metavar="ARGS",
                        help="extra arguments for each `nnparity run`, one quoted string "
                             "(default: --no-gradcheck; agreement does not change timings)")
    parser.add_argument("--max-flips", type=finite_float, default=MAX_FLIPS,
                        help="largest share of flipped significant orderings that passes")
    parser.add_argument("--keep", metavar="DIR", help="keep the runs under DIR")
    parser.add_argument("--evaluate", metavar="DIR",
                        help="judge the pairs kept under DIR again (no run)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    try:
        if not 0.0 <= args.max_flips <= 1.0:
            raise InputError(f"--max-flips {args.max_flips:g}: a share between 0 and 1")
        if args.evaluate:
            if args.keep:
                raise InputError("--evaluate runs nothing: --keep does not apply")
            results = evaluate_pairs(Path(args.evaluate))
            return _finish(results, args)
        if args.keep and Path(args.keep).exists() and (
                not Path(args.keep).is_dir() or any(Path(args.keep).iterdir())):
            raise InputError(f"--keep {args.keep}: exists and is not an empty directory")
        try:
            run_args = shlex.split(args.run_args)
        except ValueError as exc:  # an unbalanced quote
            raise InputError(f"--run-args {args.run_args!r}: {exc}") from None
        root = Path(args.keep).resolve() if args.keep else Path(
            tempfile.mkdtemp(prefix="nnparity-aa-"))
        try:
            results = run_pairs(args.preset, args.pairs, run_args, root)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    except InputError as exc:
        print(f"aa: error: {exc}", file=sys.stderr)
        return 2
    return _finish(results, args)


def _finish(results: list[PairResult], args: argparse.Namespace) -> int:
    ok, summary = verdict(results, args.max_flips)
    if args.json:
        print(json.dumps({"pairs": [asdict(r) | {"flip_share": r.flip_share, "seconds": [
            s if math.isfinite(s) else None for s in r.seconds]} for r in results],
                          "pass": ok, "summary": summary}, indent=1))
    else:
        for r in results:
            print(_line(r))
        print(summary)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
