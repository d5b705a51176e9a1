"""Tests for `nnparity compare` on synthetic pytest-benchmark JSON (no framework needed)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench import cli
from bench.regress import compare, continuous
from bench.results.stats import Verdict, compare_samples

CELLS = (
    "mlp_regression/numpy/reference/cpu/float64/bs32/step",
    "mlp_regression/torch/eager/cpu/float32/bs32/step",
    "rnn_sequence[cell=lstm]/jax/jit/cpu/float32/bs64/forward",
)


def fake_benchmark(name: str, samples: list[float], **extra: object) -> dict:
    """One pytest-benchmark entry in the harness's raw format; `name` spells its dimensions."""
    data = np.asarray(samples, dtype=float)
    q1, q3 = np.percentile(data, [25, 75]) if data.size else (0.0, 0.0)
    task, backend, variant, device, dtype, bs, phase = name.split("/")
    cell = str(extra.pop("cell", name))
    info = {"cell": cell, "task": task.split("[")[0], "preset": "quick", "knobs": {},
            "backend": backend, "variant": variant, "device": device, "dtype": dtype,
            # calibration cells have no batch size (the harness writes null)
            "batch_size": int(bs[2:]) if phase != "calibration" else None, "phase": phase,
            # a cell without samples is an error cell, as the harness writes it
            "status": "ok" if data.size else "error", "gradcheck": {"passed": True}}
    info.update(extra)
    stats = {"min": float(data.min()) if data.size else 0.0, "median": float(np.median(data))
             if data.size else 0.0, "iqr": float(q3 - q1), "q1": float(q1), "q3": float(q3),
             "rounds": int(data.size), "data": data.tolist()}
    return {"name": cell, "fullname": cell, "group": task, "stats": stats, "extra_info": info}


def write_run(
    path: Path,
    cells: dict[str, list[float]],
    fingerprint: str = "machine-a",
    gflops: float = 100.0,
    commit: str = "aaaa",
    date: str = "2025-01-01T00:00:00",
) -> Path:
    """Fabricate a run directory with one results file (and a calibration cell)."""
    benches = [fake_benchmark(c, s) for c, s in cells.items()]
    for backend in ("numpy", "torch", "jax"):
        cal = f"gemm/{backend}/calib/cpu/float32/bs0/calibration"
        benches.append(fake_benchmark(cal, [1e-3] * 5, task="gemm", gflops=gflops,
                                      cell=f"gemm/{backend}/cpu/float32/calibration"))
    doc = {"machine_info": {"node": "x", "nnparity": {
               "fingerprint": fingerprint, "cpu": "fake", "gpu": "", "threads": 2,
               "frameworks": {}, "git_commit": commit, "date": date}},
           "commit_info": {"id": commit}, "datetime": date, "version": "5.1.0",
           "benchmarks": benches}
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps(doc))
    return path


def noisy(median: float, n: int = 15, seed: int = 0, spread: float = 0.03) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(median * (1.0 + spread * rng.standard_normal(n)))


def run_cli(*argv: str) -> int:
    """`nnparity compare ARGV` in this process, through the CLI's bad-input handling."""
    return cli.main(["compare", *argv])


@pytest.fixture
def base_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "base", {c: noisy(0.01 * (i + 1), seed=i)
                                         for i, c in enumerate(CELLS)})


def scaled(base: Path, out: Path, factor: float, **kw: object) -> Path:
    df = compare.load_run(base)
    cells = {r.cell: list(r.samples * factor) for r in df.itertuples()
             if r.phase != "calibration"}
    return write_run(out, cells, **kw)


def test_stats_clear_regression_noise_and_improvement() -> None:
    base = noisy(1.0, seed=1)
    assert compare_samples(base, noisy(2.0, seed=2)).verdict is Verdict.REGRESSION
    assert compare_samples(base, noisy(1.0, seed=3)).verdict is Verdict.UNCHANGED
    assert compare_samples(base, noisy(0.5, seed=4)).verdict is Verdict.IMPROVEMENT
    change = compare_samples(base, noisy(2.0, seed=2))
    assert change.ci_low < change.ratio < change.ci_high
    assert 1.8 < change.ratio < 2.2 and change.p_value < 1e-4


def test_big_ratio_with_too_few_samples_is_not_flagged() -> None:
    # 3 rounds a side cannot reach p < 0.01 with a two-sided U test
    change = compare_samples([1.0, 1.1, 0.9], [3.0, 3.3, 2.7])
    assert change.ratio == pytest.approx(3.0)
    assert change.verdict is Verdict.UNCHANGED


def test_large_noise_hides_a_ratio_above_factor() -> None:
    rng = np.random.default_rng(7)
    base = rng.lognormal(0.0, 1.0, 8)
    change = compare_samples(base, base * 1.3 * rng.lognormal(0.0, 1.0, 8))
    assert change.p_value > 0.01 and change.verdict is Verdict.UNCHANGED


def test_load_run_keeps_raw_samples(base_dir: Path) -> None:
    df = compare.load_run(base_dir)
    assert set(CELLS) < set(df["cell"])
    row = df.set_index("cell").loc[CELLS[1]]
    assert row["rounds"] == 15 and len(row["samples"]) == 15
    assert row["median"] == pytest.approx(np.median(noisy(0.02, seed=1)))
    assert df.attrs["run"].fingerprint == "machine-a"


def test_run_against_itself_and_two_percent_slower_passes(
    base_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(str(base_dir), str(base_dir)) == 0
    assert run_cli(str(base_dir), str(scaled(base_dir, tmp_path / "slow2", 1.02))) == 0
    assert "0 regression" in capsys.readouterr().out


def test_twice_slower_fails(base_dir: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    slow = scaled(base_dir, tmp_path / "slow", 2.0)
    assert run_cli(str(base_dir), str(slow)) == 1
    out = capsys.readouterr().out
    assert f"{len(CELLS)} regression" in out
    assert run_cli(str(slow), str(base_dir)) == 0  # the reverse is an improvement
    assert f"{len(CELLS)} improvement" in capsys.readouterr().out


def test_only_the_slow_cell_is_flagged(base_dir: Path, tmp_path: Path) -> None:
    df = compare.load_run(base_dir).set_index("cell")
    cells = {c: list(df.loc[c, "samples"]) for c in CELLS}
    cells[CELLS[2]] = noisy(0.03 * 1.5, seed=42)
    cur = compare.load_run(write_run(tmp_path / "cur", cells))
    cmp = compare.compare_runs(compare.load_run(base_dir), cur)
    verdicts = cmp.table.set_index("cell")["verdict"]
    assert verdicts[CELLS[2]] == "regression"
    assert (verdicts.drop(CELLS[2]) == "unchanged").all()


def test_new_and_missing_cells_are_listed(base_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    df = compare.load_run(base_dir).set_index("cell")
    cells = {c: list(df.loc[c, "samples"]) for c in CELLS[:2]}
    cells["cnn_classification/tensorflow/graph/cpu/float32/bs32/step"] = noisy(0.1)
    cur = write_run(tmp_path / "cur", cells)
    # a cell the baseline timed is gone: the gate fails unless told to accept it (issue 9)
    assert run_cli(str(base_dir), str(cur), "--json") == 1
    capsys.readouterr()
    assert run_cli(str(base_dir), str(cur), "--json", "--allow-missing") == 0
    doc = json.loads(capsys.readouterr().out)
    by_cell = {c["cell"]: c["verdict"] for c in doc["cells"]}
    assert by_cell[CELLS[2]] == "missing"
    assert by_cell["cnn_classification/tensorflow/graph/cpu/float32/bs32/step"] == "new"
    assert doc["counts"]["missing"] == 1 and doc["counts"]["new"] == 1
    assert not doc["regressed"]


def test_errored_cell_is_reported_not_flagged(base_dir: Path, tmp_path: Path) -> None:
    cur = scaled(base_dir, tmp_path / "cur", 1.0)
    doc = json.loads((cur / "results.json").read_text())
    doc["benchmarks"][0]["extra_info"].update(status="error", error="OOM")
    doc["benchmarks"][0]["stats"]["data"] = []
    (cur / "results.json").write_text(json.dumps(doc))
    cmp = compare.compare_runs(compare.load_run(base_dir), compare.load_run(cur))
    row = cmp.table.set_index("cell").loc[CELLS[0]]
    assert row["verdict"] == "error" and "OOM" in row["note"]
    assert not cmp.regressed


def test_mismatched_machines_warn_and_normalise(base_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # a machine with twice the GEMM rate runs everything twice as fast: no change
    fast = scaled(base_dir, tmp_path / "fast", 0.5, fingerprint="machine-b", gflops=200.0)
    assert run_cli(str(base_dir), str(fast)) == 0
    captured = capsys.readouterr()
    assert "different machines" in captured.err
    assert f"{len(CELLS)} unchanged" in captured.out
    # same faster machine, but the code got 2x slower relative to it: a regression
    slow = scaled(base_dir, tmp_path / "slow", 1.0, fingerprint="machine-b", gflops=200.0)
    cmp = compare.compare_runs(compare.load_run(base_dir), compare.load_run(slow))
    assert cmp.normalised and cmp.count(Verdict.REGRESSION) == len(CELLS)
    assert cmp.table["ratio"].between(1.9, 2.1).all()


def test_same_machine_is_not_normalised(base_dir: Path, tmp_path: Path) -> None:
    cur = scaled(base_dir, tmp_path / "cur", 1.0, gflops=50.0)
    cmp = compare.compare_runs(compare.load_run(base_dir), compare.load_run(cur))
    assert not cmp.normalised and not cmp.warnings
    assert cmp.table["ratio"].eq(1.0).all()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-benchmark", "missing", "empty"])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    base_dir: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = scaled(base_dir, tmp_path / "bad", 1.0)
    results = bad / "results.json"
    text = results.read_text()
    if damage == "truncated":
        results.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        results.write_bytes(b"\x00\xff\xfe binary")
    elif damage == "not-benchmark":
        results.write_text(json.dumps({"hello": 1}))
    elif damage == "missing":
        results.unlink()
        bad = bad / "nope"
    else:
        results.unlink()
    report = tmp_path / "report.md"
    report.write_text("previous report")
    assert run_cli(str(base_dir), str(bad), "--markdown", "--out", str(report)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "Traceback" not in err
    assert report.read_text() == "previous report"


def test_other_json_beside_the_results_is_ignored(base_dir: Path) -> None:
    (base_dir / "github-benchmark.json").write_text(json.dumps([{"name": "x", "value": 1}]))
    (base_dir / "summary.json").write_text(json.dumps({"cells": 3}))
    assert set(CELLS) < set(compare.load_run(base_dir)["cell"])
    (base_dir / "results.json").unlink()
    with pytest.raises(compare.LoadError, match="none of its"):
        compare.load_run(base_dir)


def test_bad_factor_exits_2(base_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(str(base_dir), str(base_dir), "--factor", "0.8") == 2
    assert "--factor" in capsys.readouterr().err


def test_markdown_and_out_file(base_dir: Path, tmp_path: Path) -> None:
    slow = scaled(base_dir, tmp_path / "slow", 2.0)
    out = tmp_path / "reports" / "cmp.md"
    assert run_cli(str(base_dir), str(slow), "--markdown", "--out", str(out)) == 1
    text = out.read_text()
    assert text.startswith("## nnparity compare") and "| **regression** |" in text
    assert not list(out.parent.glob(".*tmp"))


def test_merge_runs_pools_samples(base_dir: Path, tmp_path: Path) -> None:
    other = scaled(base_dir, tmp_path / "other", 1.0)
    merged = compare.merge_runs([compare.load_run(base_dir), compare.load_run(other)])
    row = merged.set_index("cell").loc[CELLS[0]]
    assert row["rounds"] == 30


# --- nnparity continuous, against a throwaway repo whose "harness" fabricates results ---

FAKE_CLI = '''
import json, os, pathlib, random, re, sys, zlib
args = sys.argv[1:]
if "--help" in args:  # continuous asks a revision's `run --help` whether it has rounds
    print("usage: nnparity run [--preset PRESET] [--out OUT] [-k EXPR] [--no-gradcheck]")
    sys.exit(0)
out = pathlib.Path(args[args.index("--out") + 1])
speed = float(pathlib.Path("speed.txt").read_text())
speed *= 1.0 + float(os.environ.get("NNPARITY_FAKE_DELAY", "0"))
log = pathlib.Path(os.environ["NNPARITY_FAKE_LOG"])
with open(log, "a") as fh:
    fh.write(pathlib.Path.cwd().name + " " + " ".join(args) + "\\n")
call = len(log.read_text().splitlines())
# a process that lands slow for its whole life: these calls (1-based) run 2x slower
if str(call) in os.environ.get("NNPARITY_FAKE_SLOW_CALLS", "").split(","):
    speed *= 2.0
if os.environ.get("NNPARITY_FAKE_FAIL") and pathlib.Path.cwd().name == "head":
    print("boom: the harness crashed")
    sys.exit(3)
keep = lambda cell: True
if "-k" in args:  # the (term and term) or (...) form that continuous writes
    terms = [t.split(" and ") for t in re.findall(r"\\(([^()]*)\\)", args[args.index("-k") + 1])]
    keep = lambda cell: any(all(w in cell for w in t) for t in terms)
rng = random.Random(zlib.crc32(str(out).encode()))
benches = []
for cell in ("mlp/numpy/ref/cpu/float64/bs8/step", "rnn/numpy/ref/cpu/float64/bs8/step"):
    if not keep(cell):
        continue
    data = [0.01 * speed * (1 + 0.03 * rng.gauss(0, 1)) for _ in range(8)]
    task, backend, variant, device, dtype, bs, phase = cell.split("/")
    # every field the results format requires (bench/results/validate.py checks them)
    benches.append({"name": cell, "stats": {"data": data, "rounds": len(data)},
                    "extra_info": {"cell": cell, "task": task, "preset": "quick", "knobs": {},
                                   "backend": backend, "variant": variant, "device": device,
                                   "dtype": dtype, "batch_size": int(bs[2:]), "phase": phase,
                                   "status": "ok", "gradcheck": {"passed": True}}})
doc = {"machine_info": {"nnparity": {"fingerprint": "fake", "cpu": "fake", "gpu": "",
                                     "threads": 2, "frameworks": {}, "git_commit": "",
                                     "date": ""}},
       "benchmarks": benches}
(out / "ts").mkdir(parents=True)
(out / "ts" / "results.json").write_text(json.dumps(doc))
'''


def _git(repo: Path, *argv: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    *argv], check=True, capture_output=True)


@pytest.fixture
def fake_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three commits: speed 1.0, then 1.01 (noise-level), then 2.0 (a regression)."""
    repo = tmp_path / "repo"
    (repo / "bench").mkdir(parents=True)
    (repo / "bench" / "__init__.py").write_text("")
    (repo / "bench" / "cli.py").write_text(FAKE_CLI)
    _git(repo, "init", "-q")
    for speed in ("1.0", "1.01", "2.0"):
        (repo / "speed.txt").write_text(speed)
        _git(repo, "add", ".")
        _git(repo, "commit", "-q", "-m", f"speed {speed}")
    monkeypatch.setenv("NNPARITY_FAKE_LOG", str(tmp_path / "calls.log"))
    return repo


def run_continuous(repo: Path, *argv: str) -> int:
    """`nnparity continuous` in-process; its exit code (argparse's own exit included)."""
    try:
        return cli.main(["continuous", *argv, "--repo", str(repo)])
    except SystemExit as exc:  # a bad option value, refused by the parser
        return int(exc.code)


def test_continuous_interleaves_and_flags_a_real_slowdown(fake_repo: Path,
                                                          tmp_path: Path) -> None:
    assert run_continuous(fake_repo, "HEAD~1", "HEAD", "--repeat", "3", "--confirm", "0",
                          "--run-args", "--tasks mlp") == 1
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["base", "head"] * 3
    assert all("run --preset quick --out" in c and c.endswith("--tasks mlp") for c in calls)
    # only the head's agreement is the gate's question: the base side skips the check,
    # and the head checks it in its first round only
    checked = ["--no-gradcheck" not in c.split() for c in calls]
    assert checked == [False, True] + [False, False] * 2
    worktrees = subprocess.run(["git", "-C", str(fake_repo), "worktree", "list"],
                               capture_output=True, text=True, check=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # temporary worktrees removed


def _screen_ratio(note: str, outcome: str) -> float:
    """The first pass's ratio from a confirmed/not confirmed note."""
    match = re.fullmatch(rf"{outcome}; screen ([0-9.]+)x, p [0-9.e+-]+", note)
    assert match, note
    return float(match.group(1))


def test_continuous_confirms_a_flag_in_fresh_rounds(fake_repo: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A real 2x slow-down is flagged, re-timed with -k for those cells, and stands."""
    assert run_continuous(fake_repo, "HEAD~1", "HEAD", "--repeat", "3", "--confirm", "3",
                          "--run-args", "--tasks mlp", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["confirm_rounds"] == 3 and doc["counts"]["regression"] == 2
    assert all(_screen_ratio(c["note"], "confirmed") > 1.5 for c in doc["cells"])
    assert all(c["base_rounds"] == 24 for c in doc["cells"])  # the re-timing's 3 x 8 samples
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["base", "head"] * 6
    retimed = calls[6:]
    assert all(c.endswith("--no-gradcheck") and "--tasks mlp -k (" in c for c in retimed)
    assert all(c.split().count("--no-gradcheck") == 1 for c in retimed)


def test_continuous_a_slow_process_in_the_screen_is_not_confirmed(
        fake_repo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Both head processes of the screen land slow (calls 2 and 4): an A/A run that the
    screen alone fails. The fresh rounds do not repeat it, so the gate passes."""
    monkeypatch.setenv("NNPARITY_FAKE_SLOW_CALLS", "2,4")
    assert run_continuous(fake_repo, "HEAD", "HEAD", "--confirm", "0") == 1
    capsys.readouterr()
    Path(os.environ["NNPARITY_FAKE_LOG"]).unlink()
    assert run_continuous(fake_repo, "HEAD", "HEAD", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"]["regression"] == 0 and doc["counts"]["unchanged"] == 2
    assert all(_screen_ratio(c["note"], "not confirmed") > 1.5 for c in doc["cells"])
    assert all(0.9 < c["ratio"] < 1.1 for c in doc["cells"])  # the re-timing's numbers


def test_keyword_for_selects_exactly_the_flagged_ids() -> None:
    from bench.timing.matrix import keyword_for, keyword_matcher

    ids = ["quick/rnn_sequence[cell=lstm]/torch/eager/cpu/float32/bs64/step",
           "quick/mlp_regression[activation=tanh]/jax/jit/cpu/float32/bs16/forward"]
    others = ["quick/rnn_sequence[cell=gru]/torch/eager/cpu/float32/bs64/step",
              "quick/rnn_sequence[cell=lstm]/torch/eager/cpu/float32/bs64/forward",
              "quick/mlp_regression[activation=relu]/jax/jit/cpu/float32/bs16/forward"]
    match = keyword_matcher(keyword_for(ids))
    assert all(match(i) for i in ids) and not any(match(o) for o in others)


def test_continuous_a_a_and_noise_level_change_pass(fake_repo: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run_continuous(fake_repo, "HEAD", "HEAD", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"]["unchanged"] == 2 and doc["cells"][0]["base_rounds"] == 16
    assert run_continuous(fake_repo, "HEAD~2", "HEAD~1") == 0


def test_continuous_head_env_injects_a_slowdown(fake_repo: Path, tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    assert run_continuous(fake_repo, "HEAD", "HEAD", "--factor", "1.5",
                          "--head-env", "NNPARITY_FAKE_DELAY=1.0", "--keep", str(keep)) == 1
    # 2 rounds a side, then the 2 flagged cells re-timed in 5 more a side (the default)
    assert len(list(keep.rglob("results.json"))) == 4 + 10
    assert run_continuous(fake_repo, "HEAD", "--keep", str(keep)) == 2  # not empty: refused


@pytest.mark.parametrize("argv", [("no-such-ref",), ("HEAD", "--repeat", "0"),
                                  ("HEAD", "--confirm", "-1")])
def test_continuous_bad_input_exits_2(fake_repo: Path, argv: tuple[str, ...],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run_continuous(fake_repo, *argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_continuous_failed_run_exits_2_and_cleans_up(fake_repo: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NNPARITY_FAKE_FAIL", "1")
    assert run_continuous(fake_repo, "HEAD~1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "head run at HEAD" in err and "exit 3" in err and "boom" in err
    worktrees = subprocess.run(["git", "-C", str(fake_repo), "worktree", "list"],
                               capture_output=True, text=True, check=True).stdout
    assert len(worktrees.strip().splitlines()) == 1


def test_rounds_must_agree_before_a_pooled_difference_counts():
    """Two processes per side: one slow head round alone is not a regression."""
    rng = np.random.default_rng(7)
    base = [1.0 + 0.01 * rng.standard_normal(30), 1.0 + 0.01 * rng.standard_normal(30)]
    # one head round 3x slower, the other like the base: pooled ratio and U test say "slower"
    mixed = [3.0 + 0.01 * rng.standard_normal(30), 3.0 + 0.01 * rng.standard_normal(30),
             1.0 + 0.01 * rng.standard_normal(30)]
    pooled = compare_samples(np.concatenate(base), np.concatenate(mixed), 1.5, 0.01)
    assert pooled.verdict is Verdict.REGRESSION
    by_round = compare_samples(np.concatenate(base), np.concatenate(mixed), 1.5, 0.01,
                               base_rounds=[np.median(r) for r in base],
                               current_rounds=[np.median(r) for r in mixed])
    assert by_round.verdict is Verdict.UNCHANGED
    slow = [2.0 * r for r in base]
    both = compare_samples(np.concatenate(base), np.concatenate(slow), 1.5, 0.01,
                           base_rounds=[np.median(r) for r in base],
                           current_rounds=[np.median(r) for r in slow])
    assert both.verdict is Verdict.REGRESSION


def test_confirm_keeps_a_flag_it_could_not_retime_and_drops_one_that_did_not_repeat(
        tmp_path: Path) -> None:
    """Screen: a 2x regression in cells 0 and 1, an improvement in cell 2. The re-timing
    errors in cell 0 (the flag stands, with the reason), shows cell 1 at 1.0x (dropped),
    and repeats the improvement in cell 2 (stands, with the re-timing's numbers)."""
    slow = {c: noisy(0.01 * (4 if i == 2 else 1), seed=i) for i, c in enumerate(CELLS)}
    fast = {c: noisy(0.01 * (1 if i == 2 else 2), seed=10 + i) for i, c in enumerate(CELLS)}
    screen = compare.compare_runs(compare.load_run(write_run(tmp_path / "b", slow)),
                                  compare.load_run(write_run(tmp_path / "h", fast)))
    assert [screen.table.set_index("cell").loc[c, "verdict"] for c in CELLS] == [
        "regression", "regression", "improvement"]
    again_base = {CELLS[0]: [], CELLS[1]: noisy(0.01, seed=20), CELLS[2]: noisy(0.04, seed=21)}
    again_head = {CELLS[0]: [], CELLS[1]: noisy(0.01, seed=22), CELLS[2]: noisy(0.01, seed=23)}
    check = compare.compare_runs(compare.load_run(write_run(tmp_path / "b2", again_base)),
                                 compare.load_run(write_run(tmp_path / "h2", again_head)))
    merged = continuous.confirm(screen, check, rounds=3)
    rows = merged.table.set_index("cell")
    assert rows.loc[CELLS[0], "verdict"] == "regression"
    assert rows.loc[CELLS[0], "note"].startswith("not re-timed (no samples in baseline")
    assert rows.loc[CELLS[1], "verdict"] == "unchanged"
    assert 0.9 < rows.loc[CELLS[1], "ratio"] < 1.1
    assert rows.loc[CELLS[2], "verdict"] == "improvement"
    assert _screen_ratio(rows.loc[CELLS[2], "note"], "confirmed") < 0.5
    assert merged.regressed and merged.confirm_rounds == 3
    assert "re-timed in 3 more interleaved rounds" in compare.format_text(merged)


def test_confirm_only_regressions_sets_unconfirmed_improvements_back(tmp_path: Path) -> None:
    """`--confirm-only regressions`: the screen's improvement is not re-timed, so it
    does not stand (a verdict stands only when confirmed); its regression is kept for
    the confirmation to judge."""
    slow = {c: noisy(0.01 * (4 if i == 2 else 1), seed=i) for i, c in enumerate(CELLS)}
    fast = {c: noisy(0.01 * (1 if i == 2 else 2), seed=10 + i) for i, c in enumerate(CELLS)}
    screen = compare.compare_runs(compare.load_run(write_run(tmp_path / "b", slow)),
                                  compare.load_run(write_run(tmp_path / "h", fast)))
    kept = continuous._unconfirmed(screen, "improvement")
    rows = kept.table.set_index("cell")
    assert [rows.loc[c, "verdict"] for c in CELLS] == ["regression", "regression", "unchanged"]
    assert "not re-timed (--confirm-only regressions)" in rows.loc[CELLS[2], "note"]
    assert "screen: improvement 0.2" in rows.loc[CELLS[2], "note"]
    assert kept.regressed
