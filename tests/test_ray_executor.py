"""`nnparity run --executor ray` on a local two-node Ray cluster (tiny preset, NumPy only).

One cluster for the module (Ray's own test utility; each node has the
`nnparity_slot` resource and an `nnparity-machine` label and a 100 MB object
store), shut down in the fixture's finaliser. The driver connects once, with
the project as its working_dir (what the executor does itself when it is not
already connected), so both runs share Ray's worker processes. The node-loss
test runs last: it removes the second node. Skipped when Ray is not installed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

from bench import cli  # noqa: E402
from bench.commands import run as runner  # noqa: E402
from bench.distributed.ray_executor import EXCLUDES, LABEL, SLOT  # noqa: E402
from bench.results.paths import ROOT  # noqa: E402
from bench.results.read import load_run  # noqa: E402

NODE = {"num_cpus": 1, "object_store_memory": 100 * 1024**2, "include_dashboard": False}
TASKS = "mlp_regression,cnn_classification"


def _node(name: str) -> dict:
    return {**NODE, "resources": {SLOT: 1}, "labels": {LABEL: name}}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """The same selection run locally, started before the cluster so the two overlap."""
    out = tmp_path_factory.mktemp("local") / "run"
    args = ["--preset", "tiny", "--backends", "numpy", "--tasks", TASKS, "--no-gradcheck",
            "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    yield proc, out
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def cluster(local_run):
    c = Cluster(initialize_head=True, head_node_args=_node("alpha"))
    try:
        c.beta = c.add_node(**_node("beta"))
        ray.init(address=c.address, log_to_driver=False,
                 runtime_env={"working_dir": str(ROOT), "excludes": EXCLUDES})
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def _args(out: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    return parser.parse_args(["--preset", "tiny", "--backends", "numpy", "--tasks", TASKS,
                              "--no-gradcheck", "--out", str(out), *extra])


def _run(monkeypatch, out: Path, on_event=None, *extra: str) -> tuple[int, list]:
    """`nnparity run --executor ray` in-process, with a hook recording the events."""
    events: list = []

    def hook(kind, group, data):
        events.append((kind, group.name, data))
        if on_event:
            on_event(kind, group, data)

    real = runner.executor_for

    def with_hook(args):
        ex = real(args)
        ex.on_event = hook
        return ex

    monkeypatch.setattr(runner, "executor_for", with_hook)
    rc = runner.main(_args(out, "--executor", "ray", *extra))
    monkeypatch.setattr(runner, "executor_for", real)
    return rc, events


def _cells(run: Path) -> dict[str, str]:
    df = load_run(run)
    return dict(zip(df["cell"], df["status"], strict=True))


def test_every_group_runs_once_on_a_node_with_a_slot_and_matches_a_local_run(
        local_run, cluster, tmp_path, monkeypatch):
    rc, events = _run(monkeypatch, tmp_path / "ray")
    assert rc == 0
    started = [(name, data) for kind, name, data in events if kind == "start"]
    assert sorted(n for n, _ in started) == ["numpy_cnn_classification", "numpy_mlp_regression"]
    for name, data in started:
        assert data["name"] in ("alpha", "beta") and data["resources"][SLOT] == 1
        assert data["ran_on"] == data["id"]  # Ray ran it where the driver pinned it
        doc = json.loads((tmp_path / "ray" / f"{name}.json").read_text())
        assert doc["machine_info"]["nnparity"]["ray_node"]["ran_on"] == data["id"]
    proc, local_out = local_run
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    remote, local = _cells(tmp_path / "ray"), _cells(local_out)
    assert set(remote) == set(local)
    assert set(remote.values()) == {"ok"}


def test_unknown_machine_is_exit_2_with_one_line(cluster, tmp_path, capsys):
    rc = cli.main(["run", "--executor", "ray", "--machines", "gamma", "--preset", "tiny",
                   "--backends", "numpy", "--tasks", "mlp_regression",
                   "--out", str(tmp_path / "none")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "unknown machine 'gamma'" in err[-1] and "alpha, beta" in err[-1]


def test_a_lost_node_costs_only_its_group(cluster, tmp_path, monkeypatch):
    """Runs last: removes node beta on its group's first cell. That group keeps the
    cells it finished; the other group completes on alpha."""
    killed = []

    def kill_beta(kind, group, data):
        if kind == "cell" and data["name"] == "beta" and not killed:
            killed.append(group.name)
            cluster.remove_node(cluster.beta, allow_graceful=False)

    # a longer budget per cell keeps beta's group running while the node is removed
    rc, events = _run(monkeypatch, tmp_path / "run", kill_beta, "--budget", "0.5")
    # the lost group's unfinished cells are error cells, so the run exits 1 (a check
    # failed) after writing every record
    assert rc == 1 and len(killed) == 1
    for name in ("numpy_cnn_classification", "numpy_mlp_regression"):
        doc = json.loads((tmp_path / "run" / f"{name}.json").read_text())
        statuses = [b["extra_info"]["status"] for b in doc["benchmarks"]]
        errors = [b["extra_info"]["error"] for b in doc["benchmarks"]
                  if b["extra_info"]["status"] != "ok"]
        if name in killed:
            assert "ok" in statuses  # the cell finished before the loss is kept
            assert errors and all("lost on Ray node beta" in e for e in errors)
        else:
            assert set(statuses) == {"ok"}
    ids = [b["extra_info"]["cell"] for f in (tmp_path / "run").glob("*.json")
           for b in json.loads(f.read_text())["benchmarks"]]
    assert len(ids) == 10  # 2 groups x (calibration + 4 phases): every cell exactly once
    assert len(set(ids)) == 9  # each group calibrated numpy on its own node
