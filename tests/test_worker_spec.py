"""One worker spec for the local runner and the Ray node (bench/timing/watch.py).

The Ray path once built its own spec and left out `precisions` and
`precision_errors`: under `--executor ray --precisions fp32,bf16` strict cells
lost their precision error and the machine block its precisions. Both paths are
run here up to the worker's start (the worker is replaced by a stub that reads
the spec it was given), so no Ray cluster and no framework are needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.distributed import node, ray_executor
from bench.timing import runner
from bench.timing.executor import Progress, RunContext
from bench.timing.matrix import PLANS, Selection, build_groups, task_configs
from bench.timing.watch import relay, run_through

PATHS = ("stream", "pytest_json", "result")  # where the files lie differs by machine
#: what only the local runner's rounds add (Ray runs one round per group; the run block
#: is for a worker that must write the group file itself when its runner dies)
ROUND_KEYS = ("round", "orders", "previous_rounds", "run_block")


def _context(tmp_path: Path, precisions: tuple[str, ...]) -> tuple[RunContext, object]:
    cfgs = task_configs("mlp_regression", "tiny", {})
    described = {"numpy": {"installed": True, "variants": ["reference"], "devices": ["cpu"],
                           "supports": {c.label: ["reference"] for c in cfgs},
                           "precision_support": {}}}
    sel = Selection(tasks=("mlp_regression",), backends=("numpy",), variants=None,
                    devices=("cpu",), dtypes=("float32",), phases=("step",), preset="tiny",
                    precisions=precisions)
    (group,) = build_groups(sel, described)
    (tmp_path / "out").mkdir()
    (tmp_path / "work").mkdir()
    ctx = RunContext(sel, PLANS["tiny"], tmp_path / "out", tmp_path / "work", threads=3,
                     threads_set=True, seed=7, timeout=60.0, gradcheck=True)
    return ctx, group


def _stub_worker(monkeypatch, module, seen: list[dict]) -> None:
    """Replace `follow` in `module` by a worker that reads its spec and streams nothing."""

    def follow(spec, log, stream, timeout, **_):
        seen.append(json.loads(Path(spec).read_text(encoding="utf-8")))
        yield from ()
        return ""

    monkeypatch.setattr(module, "follow", follow)


@pytest.mark.parametrize("precisions", [("fp32", "bf16"), ("fp32",)])
def test_the_ray_node_tells_its_worker_what_the_local_runner_does(monkeypatch, tmp_path,
                                                                  precisions):
    ctx, group = _context(tmp_path, precisions)
    local, remote = [], []
    _stub_worker(monkeypatch, runner, local)
    _stub_worker(monkeypatch, node, remote)

    outcome = runner.LocalExecutor().run([group], ctx, Progress(group.size))
    assert outcome.failed == () and not outcome.interrupted
    local_doc = json.loads((ctx.out / f"{group.name}.json").read_text(encoding="utf-8"))
    messages = list(node.run_group_on_node(ray_executor.worker_spec(ctx, group), ctx.timeout,
                                           node.code_digest(), "c0ffee", {"name": "n1"}))
    assert [m[0] for m in messages] == ["start", "done"]
    remote_doc = messages[-1][1]

    (local_spec,), (remote_spec,) = local, remote
    assert {k: v for k, v in remote_spec.items() if k not in PATHS} == \
        {k: v for k, v in local_spec.items() if k not in PATHS + ROUND_KEYS}
    assert local_spec["round"] == 0 and local_spec["previous_rounds"] == []
    reduced = precisions != ("fp32",)
    assert local_spec["precision_errors"] is reduced
    assert local_spec["precisions"] == (list(precisions) if reduced else None)
    for doc in (local_doc, remote_doc):
        assert doc["machine_info"]["nnparity"].get("precisions") == local_spec["precisions"]


def test_the_node_leaves_threads_to_its_machine_unless_they_were_set(tmp_path):
    ctx, group = _context(tmp_path, ("fp32",))
    assert ray_executor.worker_spec(ctx, group).threads == 3
    unset = RunContext(**{**ctx.__dict__, "threads_set": False})
    assert ray_executor.worker_spec(unset, group).threads is None


def test_relay_returns_the_error_and_closes_the_stream_however_it_ends():
    closed = []

    def cells():
        try:
            yield {"cell": "a"}
            yield {"cell": "b"}
            return "worker exited with code 1"
        finally:
            closed.append(True)

    seen = []
    assert run_through(relay(cells(), seen.append)) == "worker exited with code 1"
    assert seen == [{"cell": "a"}, {"cell": "b"}] and closed == [True]

    def boom(entry):
        raise KeyboardInterrupt  # Ctrl-C while an entry is handled: the worker is killed

    with pytest.raises(KeyboardInterrupt):
        run_through(relay(cells(), boom))
    assert closed == [True, True]
