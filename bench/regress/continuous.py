"""A/B-timing two git revisions in one job, then comparing them: the library of
`nnparity continuous BASE [HEAD]` (its command is bench/commands/continuous.py).

In the spirit of `asv continuous`: both revisions are checked out into
temporary git worktrees and the timing harness runs in each as a subprocess
(`python -m bench.cli run --preset quick --out DIR ...`, with the worktree as
cwd and first on PYTHONPATH, so each side times its own code). Runs alternate
base, head, base, head ... for `--repeat` rounds, so slow drifts of a shared
runner (thermal, noisy neighbours) hit both sides alike; each side's samples
are pooled per cell and compared with bench/regress/compare.py's rule. The
interleaved runs are the rounds here: a revision whose `run` has `--rounds`
(its `nnparity run --help` says so) runs each group in one worker process
(`--rounds 1 --extra-rounds 0`, unless --run-args chooses), so the job costs
what it did before runs had rounds.

That first pass is a screen. A process can land in a slow state for its whole
life (thread placement, a neighbour's burst, a framework's per-process
autotuning), and with two processes a side, a few of ~190 cells of an A/A run
land slow on one side in every round by chance (seen on this project's CI:
3 to 14 false regressions per A/A run, mostly TensorFlow cells). So every cell
the screen flags is re-timed on its own, in `--confirm` more interleaved
rounds per side (fresh processes, selected with `-k`), and the rule is applied
again to those new samples alone; a verdict stands only if it repeats. Under
no change the two passes are independent, so their false-alarm rates multiply,
while a real slow-down shows in both. The default of 5 rounds a side is the
least for which the every-round condition is itself a test at the 1% level:
with no change, all 5 head rounds land beyond all 5 base rounds with
probability 1/252 in one direction (a one-round-per-process U test, p 0.008
two-sided). With 3 a side that chance is 1/20, and a cell whose processes
flip between a fast and a slow state still gets through now and then.

With `--framework A,B` the two sides are one revision under two versions of
one framework, each side's runs using its own virtual environment's
interpreter (bench/regress/framework_ab.py makes and caches them); the
schedule, the confirmation and the rule are the same.

This module must not import a framework or time anything itself; it never
touches the caller's working tree or branches (worktrees are detached and
removed afterwards, even on failure).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from bench.options import InputError
from bench.regress.compare import Comparison, compare_runs, emit, sort_table
from bench.results.read import RunInfo, load_run, merge_runs
from bench.results.schema import CALIBRATION
from bench.results.stats import Verdict
from bench.timing.matrix import keyword_for

#: verdicts the confirmation pass re-times
FLAGGED = (Verdict.REGRESSION.value, Verdict.IMPROVEMENT.value)


class ContinuousError(InputError):
    """A revision cannot be checked out or its benchmark run failed (exit 2)."""


@dataclass(frozen=True)
class Side:
    """One revision under test."""

    name: str  # "base" or "head"
    ref: str
    sha: str
    worktree: Path
    env: tuple[tuple[str, str], ...] = ()  # extra environment for this side's runs only
    python: str = ""  # this side's interpreter (a framework version's venv); "" = --python


#: the base side only times: its agreement is not the gate's question (the head's
#: is, and a head run's failed check fails the gate), so its runs skip the per-cell
#: agreement check (about 70 s of a 390 s quick run on two cores). The head checks
#: it in its first round only: the same code gives the same verdicts in every round.
NO_CHECK = "--no-gradcheck"


def _git(repo: Path, *argv: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
        raise ContinuousError(f"git {' '.join(argv)}: {msg}")
    return proc.stdout.strip()


def resolve(repo: Path, ref: str) -> str:
    """The commit sha of `ref`, or a one-line error naming it."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except ContinuousError:
        raise ContinuousError(f"{ref!r}: not a commit in {repo}") from None


#: `continuous` interleaves whole runs (base, head, base, head ...), so each of its
#: runs times every group in one worker process, as before runs had rounds: the
#: interleaved runs are its rounds, and the job costs what it did
ONE_ROUND = ["--rounds", "1", "--extra-rounds", "0"]


def _one_round(side: Side, run_args: list[str], python: str = "") -> list[str]:
    """ONE_ROUND for a revision whose `run` knows --extra-rounds (an older one does not,
    and runs one process per group anyway), unless the caller chose rounds."""
    if any(a.startswith(("--rounds", "--extra-rounds")) for a in run_args):
        return []
    return ONE_ROUND if knows_rounds(side, side.python or python or sys.executable) else []


#: seconds the `run --help` probe may take (an interpreter start and the parser's imports)
PROBE_TIMEOUT_S = 120.0


def knows_rounds(side: Side, python: str) -> bool:
    """Whether this side's `nnparity run` takes `--extra-rounds`, asked of the revision
    itself: its own `python -m bench.cli run --help`, run as its runs are (the worktree
    as cwd and first on PYTHONPATH, its interpreter and environment), so the answer does
    not depend on where a revision keeps its runner. A revision whose help cannot be
    read is taken as one without rounds (its run fails later, with its own message)."""
    return _help_mentions(str(side.worktree), python, side.env, "--extra-rounds")


@functools.lru_cache(maxsize=32)
def _help_mentions(worktree: str, python: str, env: tuple[tuple[str, str], ...],
                   option: str) -> bool:
    try:
        proc = subprocess.run([python, "-m", "bench.cli", "run", "--help"], cwd=worktree,
                              env=_side_env(worktree, env), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])",
                                               proc.stdout) is not None


def _side_env(worktree: str, extra: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The environment of a side's processes: ours, its worktree first on PYTHONPATH,
    and its own extra variables."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (worktree, env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def run_command(python: str, preset: str, out: Path, run_args: list[str]) -> list[str]:
    """The harness invocation for one side and round (the contract with `nnparity run`,
    bench/commands/run.py)."""
    return [python, "-m", "bench.cli", "run", "--preset", preset, "--out", str(out), *run_args]


def schedule(repeat: int) -> list[tuple[int, str]]:
    """(round, side) in execution order: base, head, base, head, ..."""
    return [(r, side) for r in range(repeat) for side in ("base", "head")]


#: `nnparity run` exits 1 when cells failed agreement or errored, after writing every
#: record; such a round's samples are still compared, and the reason is reported.
RUN_CHECK_FAILED = 1


def _run_side(side: Side, cmd: list[str], out: Path, log: Path) -> tuple[float, str]:
    """Run one side's round; (seconds, "" or why the run exited 1 with its records kept)."""
    env = _side_env(str(side.worktree), side.env)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=side.worktree, env=env, stdout=fh,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return seconds, ""
    lines = log.read_text(errors="replace").strip().splitlines()
    last = lines[-1] if lines else "no output"
    if proc.returncode == RUN_CHECK_FAILED and any(out.rglob("*.json")):
        return seconds, last  # records written: compare them, and say why it failed
    raise ContinuousError(f"{side.name} run at {side.ref} ({side.sha[:10]}) failed with "
                          f"exit {proc.returncode}: {last}")


def run_ab(sides: dict[str, Side], results: Path, repeat: int, python: str, preset: str,
           run_args: list[str], keep: bool = False, stage: str = "",
           failures: dict[str, list[str]] | None = None) -> dict[str, list[Path]]:
    """Run the interleaved schedule; returns each side's per-round result directories.

    With `keep`, a failure names the run's log (otherwise it is deleted with the results).
    A round whose run exited 1 with its records written (cells that failed agreement
    or errored) is kept, and its reason appended to `failures[side]`.
    """
    dirs: dict[str, list[Path]] = {"base": [], "head": []}
    plan = schedule(repeat)
    for i, (rnd, name) in enumerate(plan, 1):
        side = sides[name]
        out = results / name / f"round{rnd + 1}"
        log = results / name / f"round{rnd + 1}.log"
        unchecked = (name == "base" or rnd > 0) and NO_CHECK not in run_args
        args = [*run_args, *_one_round(side, run_args, python)]
        cmd = run_command(side.python or python, preset, out,
                          [NO_CHECK, *args] if unchecked else args)
        print(f"{stage}[{i}/{len(plan)}] {name} {side.ref} ({side.sha[:10]}) round {rnd + 1}: "
              f"{shlex.join(cmd[1:])}", file=sys.stderr, flush=True)
        try:
            seconds, failed = _run_side(side, cmd, out, log)
        except ContinuousError as exc:
            raise ContinuousError(f"{exc} (log: {log})" if keep else str(exc)) from None
        print(f"{stage}[{i}/{len(plan)}] done in {seconds:.1f} s"
              + (f"; run exited 1: {failed}" if failed else ""), file=sys.stderr, flush=True)
        if failed and failures is not None:
            failures.setdefault(name, []).append(f"{stage}round {rnd + 1}: {failed}")
        dirs[name].append(out)
    return dirs


def _pooled(name: str, side: Side, dirs: list[Path],
            cells: set[str] | None = None) -> pd.DataFrame:
    run = merge_runs([load_run(d) for d in dirs])
    info: RunInfo = run.attrs["run"]
    attrs = dict(run.attrs)
    attrs["run"] = RunInfo(f"{name} {side.ref} ({len(dirs)} rounds)", info.fingerprint,
                           info.cpu, info.gpu, info.commit or side.sha, info.date)
    if cells is not None:  # a -k selection may bring neighbours along: keep only these
        run = run[run["cell"].isin(cells) | (run["phase"] == CALIBRATION)]
    run.attrs = attrs
    return run


def confirm(screen: Comparison, check: Comparison, rounds: int) -> Comparison:
    """Merge a re-timing of the flagged cells (`check`) into the screen's comparison.

    A flagged cell keeps its verdict only when the re-timing gives the same one;
    its row then shows the re-timing's numbers (independent of the selection,
    unlike the screen's), with the screen's ratio and p in the note. A flagged
    cell the re-timing could not measure keeps the screen's verdict and says why.
    """
    table = screen.table.copy()
    again = check.table.set_index("cell")
    numbers = ["ratio", "ci_low", "ci_high", "p_value", "p_adjusted", "base_median_s",
               "current_median_s", "base_rounds", "current_rounds"]
    for i, row in table.iterrows():
        if row["verdict"] not in FLAGGED:
            continue
        was = f"screen {row['ratio']:.3f}x, p {row['p_value']:.2g}"
        redo = again.loc[row["cell"]] if row["cell"] in again.index else None
        if redo is None or redo["verdict"] in (Verdict.ERROR.value, Verdict.NEW.value,
                                               Verdict.MISSING.value):
            why = "not in the re-timing" if redo is None else (redo["note"] or redo["verdict"])
            table.at[i, "note"] = f"not re-timed ({why}); {was}"
            continue
        for key in numbers:
            table.at[i, key] = redo[key]
        if redo["verdict"] == row["verdict"]:
            table.at[i, "note"] = f"confirmed; {was}"
        else:
            table.at[i, "verdict"] = Verdict.UNCHANGED.value
            table.at[i, "note"] = f"not confirmed; {was}"
    return Comparison(sort_table(table), screen.base, screen.current, screen.factor,
                      screen.alpha, screen.confidence, screen.normalised,
                      screen.warnings + check.warnings, confirm_rounds=rounds,
                      environment=screen.environment, noise=screen.noise)


def _unconfirmed(cmp: Comparison, verdict: str) -> Comparison:
    """The screen's `verdict` rows set back to unchanged: a verdict stands only when
    confirmed, and `--confirm-only regressions` does not re-time these (a CI gate
    asks about slow-downs; re-timing noise that looks faster costs it minutes)."""
    table = cmp.table.copy()
    rows = table["verdict"] == verdict
    for i in table.index[rows]:
        table.at[i, "note"] = (f"screen: {verdict} {table.at[i, 'ratio']:.3f}x, p "
                               f"{table.at[i, 'p_value']:.2g}; not re-timed (--confirm-only "
                               "regressions)")
    table.loc[rows, "verdict"] = Verdict.UNCHANGED.value
    return replace(cmp, table=sort_table(table))


def _env_pairs(items: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ContinuousError(f"--head-env {item!r}: expected KEY=VALUE")
        pairs.append((key, value))
    return tuple(pairs)


def _framework_sides(args: argparse.Namespace, repo: Path, tmp: Path) -> dict[str, Side]:
    """Both sides at one revision (BASE_REF, default HEAD), each in its own venv."""
    from bench.regress.framework_ab import ensure_venv, parse_frameworks

    reqs = parse_frameworks(args.framework)
    ref = args.base or "HEAD"
    sha = resolve(repo, ref)
    tree = tmp / "tree"
    _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), sha)
    cache = Path(args.venv_cache).expanduser().resolve()
    head_env = _env_pairs(args.head_env)
    sides = {}
    for name, req in zip(("base", "head"), reqs, strict=True):
        py = ensure_venv(req, tree, cache, args.python,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
        sides[name] = Side(name, f"{req.spec} at {ref}", sha, tree,
                           head_env if name == "head" else (), python=py)
    return sides


def _framework_run_args(args: argparse.Namespace, run_args: list[str]) -> list[str]:
    """Time only the framework under test, unless the user chose backends."""
    from bench.regress.framework_ab import parse_frameworks

    backend = parse_frameworks(args.framework)[0].backend
    if backend and not any(a.startswith(("--backends", "--backend")) for a in run_args):
        return [*run_args, "--backends", backend]
    return run_args


def continuous(args: argparse.Namespace) -> int:
    start_dir = Path(args.repo or ".").resolve()
    repo = Path(_git(start_dir, "rev-parse", "--show-toplevel"))
    if args.framework:
        return _continuous(args, repo, {})
    shas = {"base": resolve(repo, args.base), "head": resolve(repo, args.head)}
    return _continuous(args, repo, shas)


def _continuous(args: argparse.Namespace, repo: Path, shas: dict[str, str]) -> int:
    head_env = _env_pairs(args.head_env)
    if args.keep and Path(args.keep).exists() and any(Path(args.keep).iterdir()):
        # stale rounds in it would be pooled with this job's samples
        raise ContinuousError(f"--keep {args.keep}: exists and is not empty")
    tmp = Path(tempfile.mkdtemp(prefix="nnparity-continuous-"))
    results = Path(args.keep).resolve() if args.keep else tmp / "results"
    sides: dict[str, Side] = {}
    try:
        run_args = shlex.split(args.run_args)
        if args.framework:
            sides = _framework_sides(args, repo, tmp)
            run_args = _framework_run_args(args, run_args)
        for name, ref in (("base", args.base), ("head", args.head)) if not args.framework else ():
            tree = tmp / name
            _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), shas[name])
            sides[name] = Side(name, ref, shas[name], tree, head_env if name == "head" else ())
        failures: dict[str, list[str]] = {}
        dirs = run_ab(sides, results, args.repeat, args.python, args.preset, run_args,
                      keep=bool(args.keep), failures=failures)
        base = _pooled("base", sides["base"], dirs["base"])
        head = _pooled("head", sides["head"], dirs["head"])
        cmp = compare_runs(base, head, args.factor, args.alpha, args.confidence, args.noise)
        wanted_verdicts = FLAGGED if args.confirm_only == "both" else (
            Verdict.REGRESSION.value,)
        if args.confirm and args.confirm_only != "both":
            cmp = _unconfirmed(cmp, Verdict.IMPROVEMENT.value)
        flagged = sorted(cmp.table.loc[cmp.table["verdict"].isin(wanted_verdicts), "cell"])
        if flagged and args.confirm:
            print(f"confirming {len(flagged)} flagged cell(s) in {args.confirm} more "
                  f"interleaved rounds per side", file=sys.stderr, flush=True)
            extra = ["-k", keyword_for(flagged), "--no-gradcheck"]
            again = run_ab(sides, results / "confirm", args.confirm, args.python,
                           args.preset, [*run_args, *extra], keep=bool(args.keep),
                           stage="confirm ", failures=failures)
            wanted = set(flagged)
            check = compare_runs(_pooled("base", sides["base"], again["base"], wanted),
                                 _pooled("head", sides["head"], again["head"], wanted),
                                 args.factor, args.alpha, args.confidence, args.noise)
            cmp = confirm(cmp, check, args.confirm)
    finally:
        trees = {side.worktree for side in sides.values()} | {tmp / "tree"}
        for tree in trees:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force",
                            str(tree)], capture_output=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.keep:
        print(f"raw results kept in {results}", file=sys.stderr)
    notes = [f"{side} run exited 1 ({why})" for side, whys in failures.items() for why in whys]
    cmp = replace(cmp, warnings=(*cmp.warnings, *notes))
    code = emit(cmp, args)
    if failures.get("head"):
        # the revision under test has cells that failed agreement or errored: the gate
        # fails whatever the timings say; the base's own failures are only reported
        print(f"continuous: the head side's run failed its checks "
              f"({len(failures['head'])} round(s)): {failures['head'][0]}", file=sys.stderr)
        return 1
    return code


