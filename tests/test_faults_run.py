"""Fault injection on `nnparity run` (issue 11): two runs into one directory, a full
disk, signals to the runner (SIGHUP, two Ctrl-C 50 ms apart, kill -9), a backend that
hangs or raises at import, a corrupt describe cache. Every finished cell is kept and
no torn or empty file is left. Runs use the NumPy backend on the tiny preset; every
wait is on an event (a progress line, a process exit), with generous deadlines."""

from __future__ import annotations

import errno
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.commands import run as run_command
from bench.options import InputError
from bench.results import write as records
from bench.results.check import check_file
from bench.results.read import load_run
from bench.timing import runner

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--preset", "tiny", "--backends", "numpy", "--phases", "step", "--no-gradcheck"]
DEADLINE = 240.0


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


#: runs `bench.cli` with SIGINT, SIGTERM and SIGHUP set to argv[1] ("DFL" or "IGN") and
#: kept across exec, so a runner's signal dispositions do not depend on how the test
#: suite itself was started (under `nohup` or as a background job, both arrive ignored)
_WITH_SIGNALS = ("import os, signal, sys\n"
                 "how = getattr(signal, 'SIG_' + sys.argv[1])\n"
                 "for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):\n"
                 "    signal.signal(s, how)\n"
                 "os.execv(sys.executable, [sys.executable, '-m', 'bench.cli', *sys.argv[2:]])\n")


def start_run(out: Path, *args: str, delay: float = 0.0, signals: str = "DFL",
              **env: str) -> subprocess.Popen:
    """A runner whose numpy cells each take `delay` more seconds per call, started with
    the stop signals at their defaults (as from a terminal) or, with signals="IGN",
    ignored (as under nohup)."""
    if delay:
        env["NNPARITY_TEST_DELAY"] = f"numpy:{delay}"
    return subprocess.Popen([sys.executable, "-c", _WITH_SIGNALS, signals, "run", *TINY, *args,
                             "--out", str(out)], cwd=ROOT, env=_env(**env),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)


def wait_for_line(proc: subprocess.Popen, needle: str) -> list[str]:
    """Read the runner's stderr until a line holds `needle`; the lines read so far."""
    lines: list[str] = []
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    proc.kill()
    raise AssertionError(f"no line with {needle!r}: {''.join(lines)}")


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=DEADLINE)
    return proc.returncode, err


def wait_pid_gone(pid: int, timeout: float = 60.0) -> bool:
    """Wait for a process that is not our child to exit (pidfd where there is one)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not Path(f"/proc/{pid}").exists():
                return True
            time.sleep(0.1)
        return False
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def children_of(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def assert_clean(out: Path) -> None:
    """No temporary, empty or torn file anywhere in the run directory."""
    for path in out.rglob("*"):
        if path.is_file() and path.name != ".nnparity.lock":
            assert not path.name.endswith(".tmp"), path
            assert path.stat().st_size > 0, path
            assert path.suffix != ".jsonl", path  # streams are gone once a group is written


def progress_cells(lines: list[str]) -> set[str]:
    """The cells the runner's progress lines report finished without error."""
    found = (re.search(r"ETA \d+:\d+\s+(\S+)", line) for line in lines if "ERROR" not in line)
    return {m.group(1) for m in found if m}


def ok_cells(out: Path) -> set[str]:
    run = load_run(out)  # validates every file
    return set(run[run["status"] == "ok"]["cell"])


# -- 1. two runs, one directory -------------------------------------------------------------

def test_a_second_run_into_a_busy_directory_exits_2_naming_the_holder(tmp_path) -> None:
    out = tmp_path / "run"
    first = start_run(out, "--tasks", "mlp_regression", delay=0.05)
    wait_for_line(first, "[1/")
    second = subprocess.run([sys.executable, "-m", "bench.cli", "run", *TINY, "--tasks",
                             "cnn_classification", "--out", str(out)], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=DEADLINE)
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0], second.stderr
    code, err = finish(first)
    assert code == 0, err
    assert {Path(p).name for p in out.glob("*.json")} == {"numpy_mlp_regression.json"}
    assert ok_cells(out) and all("mlp_regression" in c or c.startswith("gemm")
                                 for c in ok_cells(out))
    # and once it is done, a new run must not merge with its files
    again = subprocess.run([sys.executable, "-m", "bench.cli", "run", *TINY, "--tasks",
                            "cnn_classification", "--out", str(out)], cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=DEADLINE)
    assert again.returncode == 2 and "earlier run" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_the_lock_is_per_directory_and_the_default_directory_is_unique(tmp_path,
                                                                       monkeypatch) -> None:
    held = runner.RunDirectory(str(tmp_path / "a"))
    with pytest.raises(InputError, match=f"in use by nnparity run pid {os.getpid()}"):
        runner.RunDirectory(str(tmp_path / "a"))
    monkeypatch.setattr(runner, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(runner.time, "strftime", lambda fmt, *a: "20250101-000000")
    first, second = runner.RunDirectory(None), runner.RunDirectory(None)  # "same second"
    assert first.path != second.path and first.path.parent == second.path.parent
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        runner.RunDirectory(str(tmp_path / "file"))
    del held


# -- 2. a full disk -------------------------------------------------------------------------

@pytest.fixture
def keep_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_an_injected_enospc_stops_cleanly_and_keeps_written_groups(tmp_path, monkeypatch,
                                                                   capsys,
                                                                   keep_signals) -> None:
    real = records.write_group_file
    calls = []

    def second_fails(path, doc):
        calls.append(path)
        if len(calls) == 2:  # the disk fills while the second group's file is written
            def torn(fh):
                fh.write(b'{"benchmarks": [')
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            records.write_atomic(path, torn)
        real(path, doc)

    monkeypatch.setattr(records, "write_group_file", second_fails)
    out = tmp_path / "run"
    parser = run_command.argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args([*TINY, "--tasks", "mlp_regression,cnn_classification",
                              "--out", str(out)])
    assert run_command.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "No space left on device" in err[-1] and "1 of 2 groups kept" in err[-1]
    assert [p.name for p in out.glob("*.json")] == ["numpy_mlp_regression.json"]
    assert ok_cells(out)
    assert_clean(out)


def _tmpfs_works() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"],
        capture_output=True).returncode == 0


@pytest.mark.skipif(not _tmpfs_works(), reason="needs unshare to mount a tiny tmpfs")
def test_a_tiny_tmpfs_stops_cleanly_and_keeps_written_groups(tmp_path) -> None:
    mnt, copy = tmp_path / "mnt", tmp_path / "copy"
    mnt.mkdir()
    # 96 KiB holds two groups' files (each written beside its scratch copies), not three
    cmd = (f"mount -t tmpfs -o size=96k tmpfs {mnt} && {sys.executable} -m bench.cli run "
           f"{' '.join(TINY)} --tasks mlp_regression,cnn_classification,rnn_sequence "
           f"--min-rounds 300 --out {mnt}/run; code=$?; cp -a {mnt}/run {copy}; exit $code")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", cmd],
                          cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=DEADLINE)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "No space left on device" in last and "Traceback" not in proc.stderr
    kept = sorted(p.name for p in copy.glob("*.json"))
    assert kept and f"{len(kept)} of 3 groups kept" in last
    assert ok_cells(copy)
    assert_clean(copy)


# -- 3 and 9. signals -----------------------------------------------------------------------

@pytest.mark.parametrize("signals", [(signal.SIGHUP,), (signal.SIGINT, signal.SIGINT)],
                         ids=["sighup", "two-ctrl-c-50ms-apart"])
def test_a_signal_to_the_runner_keeps_every_finished_cell(tmp_path, signals) -> None:
    out = tmp_path / "run"
    proc = start_run(out, "--tasks", "mlp_regression", "--phases", "forward,backward",
                     "--min-rounds", "20", delay=0.02)
    seen = wait_for_line(proc, "[2/")  # calibration and one timed cell of four are finished
    for i, sig in enumerate(signals):
        if i:
            time.sleep(0.05)  # the probe itself: a second Ctrl-C 50 ms after the first
        proc.send_signal(sig)
    code, err = finish(proc)
    assert code == 130, "".join(seen) + err
    assert "interrupted" in err and "Traceback" not in err
    finished = progress_cells(seen)
    assert len(finished) >= 2 and finished <= ok_cells(out), err
    assert_clean(out)


def test_a_hangup_that_nohup_ignores_stays_ignored(tmp_path) -> None:
    # `nohup nnparity run &`: the user asked for the run to outlive the terminal
    out = tmp_path / "run"
    proc = start_run(out, "--tasks", "mlp_regression", "--phases", "forward,backward",
                     "--min-rounds", "20", delay=0.02, signals="IGN")
    seen = wait_for_line(proc, "[2/")
    proc.send_signal(signal.SIGHUP)
    code, err = finish(proc)
    assert code == 0, "".join(seen) + err
    assert "interrupted" not in err and "every cell ran" in err
    finished = progress_cells(seen + err.splitlines())
    assert len(finished) == 4 and finished == ok_cells(out)  # calibration and three cells
    assert_clean(out)


def test_kill_9_of_the_runner_ends_its_worker_which_saves_the_group(tmp_path) -> None:
    out = tmp_path / "run"
    proc = start_run(out, "--tasks", "mlp_regression", "--min-rounds", "40", delay=0.05)
    seen = wait_for_line(proc, "[1/")
    workers = children_of(proc.pid)
    assert workers, "no worker process"
    proc.kill()
    proc.wait(timeout=DEADLINE)
    for pid in workers:
        assert wait_pid_gone(pid, 60.0), f"worker {pid} outlived its runner"
    finished = progress_cells(seen)
    doc = json.loads((out / "numpy_mlp_regression.json").read_text())
    status = {b["extra_info"]["cell"]: b["extra_info"] for b in doc["benchmarks"]}
    assert finished and all(status[c]["status"] == "ok" for c in finished)
    # every other cell is accounted for: finished after the kill while the worker wound
    # down, or recorded as cut off by the runner's death (how many of each depends on
    # when the worker notices; on a busy machine it may finish them all first)
    lost = {c: (e["status"], e.get("error", "")) for c, e in status.items()
            if not (e["status"] == "ok" or "runner died" in e.get("error", ""))}
    assert not lost, lost
    # the worker wrote the file as the runner would have: with its run block, and valid
    assert doc["nnparity_run"]["rounds"] == 1 and doc["nnparity_run"]["rounds_run"] == 1
    assert check_file(out / "numpy_mlp_regression.json")[0] == []


@pytest.mark.parametrize("rounds", [1, 2])
def test_a_worker_whose_runner_died_writes_a_valid_group_file_with_its_run_block(
        tmp_path, capsys, rounds) -> None:
    """`worker_main._rescue` on a spec the runner wrote: every earlier round merged,
    the cut-off round's unreached cells recorded, the run block the runner handed over."""
    import argparse
    from dataclasses import replace

    from bench.commands import validate
    from bench.timing import worker_main
    from bench.timing.matrix import PLANS, Cell, Group, TaskConfig, group_to_dict

    cfg = TaskConfig("mlp_regression", (), (), 4, (4,), "tiny")
    cells = tuple(Cell(cfg, "numpy", "reference", "cpu", "float32", 4, phase)
                  for phase in ("forward", "backward", "step"))
    group = Group("numpy", "mlp_regression", cells, ())
    run = runner.GroupRun(group, replace(PLANS["quick"], rounds=rounds))
    work, out = tmp_path / ".work", tmp_path / "run"
    work.mkdir()
    out.mkdir()
    for r in range(rounds):  # every round but the last finished; the last timed one cell
        run.parts.append(group)
        stream = runner.round_files(work, group, r).stream
        for cell in cells if r < rounds - 1 else cells[:1]:
            rec = records.record_for(cell, "tiny", 1)
            records.append_stream(stream, records.benchmark_entry(rec, [1e-3, 2e-3, 3e-3]))
    files = runner.round_files(work, group, rounds - 1)
    spec = files.spec
    spec.write_text(json.dumps({
        "group": group_to_dict(group), "preset": "tiny", "threads": 1, "seed": 0,
        "stream": str(files.stream), "pytest_json": str(files.pytest_json),
        "result": str(out / f"{group.name}.json"), "round": rounds - 1,
        "orders": [[c.id for c in cells]] * rounds,
        "previous_rounds": [[str(p) for p in runner.round_files(work, group, k)[:2]]
                            for k in range(rounds - 1)],
        "run_block": runner.run_block(run, 7)}))
    worker_main._rescue(str(spec), "runner died before this cell finished")
    doc = json.loads((out / f"{group.name}.json").read_text())
    block = doc["nnparity_run"]
    assert (block["rounds"], block["rounds_run"], block["order_seed"]) == (rounds, rounds, 7)
    assert validate.main(argparse.Namespace(run_dir=str(out))) == 0, capsys.readouterr().out
    status = {b["extra_info"]["cell"]: b["extra_info"] for b in doc["benchmarks"]}
    assert status[cells[0].id]["status"] == "ok"
    first = next(b for b in doc["benchmarks"] if b["extra_info"]["cell"] == cells[0].id)
    assert len(first["stats"]["data"]) == 3 * rounds  # every round's samples
    assert len(status[cells[0].id]["median_ci"]) == 2  # an interval, as the runner records
    for cell in cells[1:]:
        assert status[cell.id]["status"] == "error"
        assert "runner died" in status[cell.id]["error"]


# -- 7. a backend that hangs or raises at import ----------------------------------------------

def _fake_torch(tmp_path: Path, body: str) -> Path:
    site = tmp_path / "site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text(body)
    return site


def test_a_backend_that_hangs_at_import_is_bounded_by_timeout(tmp_path) -> None:
    site = _fake_torch(tmp_path, "import time\ntime.sleep(600)\n")
    out = tmp_path / "run"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--preset", "tiny",
                           "--backends", "torch", "--tasks", "mlp_regression", "--phases",
                           "step", "--timeout", "5", "--out", str(out)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"},
                          capture_output=True, text=True, timeout=DEADLINE)
    assert time.monotonic() - start < 120, proc.stderr
    assert "describing torch" in proc.stderr and "timed out after 5s" in proc.stderr
    doc = json.loads((out / "torch_mlp_regression.json").read_text())
    assert all("timed out" in b["extra_info"]["error"] for b in doc["benchmarks"])


def test_a_backend_that_raises_at_import_records_its_real_error(tmp_path) -> None:
    site = _fake_torch(tmp_path, "raise RuntimeError('planted import failure')\n")
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--preset", "tiny",
                           "--backends", "torch", "--tasks", "mlp_regression", "--phases",
                           "step", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=DEADLINE)
    doc = json.loads((out / "torch_mlp_regression.json").read_text())
    assert all("planted import failure" in b["extra_info"]["error"]
               for b in doc["benchmarks"]), proc.stderr
    # the same failure inside a run worker (describe passed from a cache, then the
    # framework broke): each cell records the real error, not "cell did not run"
    from bench.timing.matrix import Cell, Group, TaskConfig, group_to_dict

    cfg = TaskConfig("mlp_regression", (), (), 4, (4,), "tiny")
    group = Group("torch", "mlp_regression",
                  (Cell(cfg, "torch", "eager", "cpu", "float32", 4, "step"),), ("cpu",))
    spec = tmp_path / "group.spec"
    stream = tmp_path / "group.jsonl"
    spec.write_text(json.dumps({"group": group_to_dict(group), "preset": "tiny", "threads": 1,
                                "seed": 0, "stream": str(stream),
                                "pytest_json": str(tmp_path / "out.json"),
                                "gradcheck": False}))
    subprocess.run([sys.executable, "-m", "bench.timing.worker_main", "run", str(spec)],
                   cwd=ROOT, env=env, capture_output=True, timeout=DEADLINE)
    entries = records.read_stream(stream)
    assert len(entries) == 2
    assert all("backend failed to load: RuntimeError: planted import failure"
               in e["extra_info"]["error"] for e in entries)


def test_a_corrupt_describe_cache_is_ignored_and_rebuilt(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(runner, "DESCRIBE_CACHE", tmp_path / "cache")
    parser = run_command.argparse.ArgumentParser()
    run_command.add_arguments(parser)
    sel = run_command.selection_from_args(parser.parse_args(TINY + ["--tasks", "mlp_regression"]))
    first = runner.describe(sel, tmp_path, 1)
    files = list((tmp_path / "cache").glob("*.json"))
    assert first["numpy"]["installed"] and len(files) == 1
    for junk in ("{not json", "null", '{"installed": true}', "[" * 100_000):
        files[0].write_text(junk)
        again = runner.describe(sel, tmp_path, 1)
        assert again["numpy"] == first["numpy"]
        assert json.loads(files[0].read_text()) == first["numpy"]


def test_ctrl_c_in_a_later_round_keeps_what_the_earlier_rounds_timed(tmp_path) -> None:
    out = tmp_path / "run"
    proc = start_run(out, "--tasks", "mlp_regression", "--phases", "forward,backward",
                     "--min-rounds", "20", "--rounds", "2", "--extra-rounds", "0", delay=0.02)
    # calibration and the three cells (step, forward, backward) of round 1, then the
    # first cell of round 2
    seen = wait_for_line(proc, "[5/")
    proc.send_signal(signal.SIGINT)
    code, err = finish(proc)
    assert code == 130, "".join(seen) + err
    run = load_run(out)
    timed = run[run["phase"] != "calibration"]
    # every cell keeps its samples; those round 2 never reached have one round only
    assert (timed["status"] == "ok").all(), timed[["cell", "status", "error"]]
    rounds = sorted(len(s) for s in timed["round_sizes"])
    assert len(rounds) == 3 and rounds[0] == 1 and rounds[-1] == 2, rounds
    assert_clean(out)
