"""The Ray driver's bookkeeping (`RayScheduler`) fed by hand: no Ray, no worker, no framework.

What tests/test_ray_executor.py checks on a real two-node cluster (each group
once on a node with a slot, a lost node costs only its group) is checked here
message by message, with plain objects standing for Ray's task handles.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.distributed.node import Message
from bench.distributed.ray_executor import SLOT, Node, RayScheduler
from bench.results.write import benchmark_entry, record_for
from bench.timing.executor import RunContext
from bench.timing.matrix import PLANS, Selection, build_groups, task_configs
from bench.timing.watch import group_file

TASKS = ("mlp_regression", "cnn_classification")


def _node(name: str, gpu: bool = False, slot: bool = True) -> Node:
    resources = {SLOT: 1.0} if slot else {}
    return Node(f"id-{name}", name, {**resources, **({"GPU": 1.0} if gpu else {})}, {})


class Progress:
    def __init__(self) -> None:
        self.entries: list[dict] = []

    def advance(self, entry: dict) -> None:
        self.entries.append(entry)


@pytest.fixture
def run(tmp_path: Path):
    """(scheduler, its groups, the progress it feeds, the events it emits, a submit that
    hands out handles "h0", "h1", ... and records (handle, group, node))."""
    described = {"numpy": {"installed": True, "variants": ["reference"], "devices": ["cpu"],
                           "supports": {c.label: ["reference"] for t in TASKS
                                        for c in task_configs(t, "tiny", {})}}}
    sel = Selection(tasks=TASKS, backends=("numpy",), variants=None, devices=("cpu",),
                    dtypes=("float32",), phases=("step",), preset="tiny")
    groups = build_groups(sel, described)
    assert len(groups) == 2
    for name in ("out", "work"):
        (tmp_path / name).mkdir()
    ctx = RunContext(sel, PLANS["tiny"], tmp_path / "out", tmp_path / "work", threads=2,
                     threads_set=False, seed=0, timeout=60.0, gradcheck=False)
    progress, events, sent = Progress(), [], []
    books = RayScheduler(groups, ctx, progress, "c0ffee",
                         lambda kind, group, data: events.append((kind, group.name, data)))

    def submit(group, node):
        handle = f"h{len(sent)}"
        sent.append((handle, group.name, node.name))
        return handle

    return books, groups, progress, events, submit, sent


def _doc(books: RayScheduler, name: str) -> dict:
    return json.loads(group_file(books.ctx.out, name).read_text(encoding="utf-8"))


def _statuses(doc: dict) -> list[str]:
    return [b["extra_info"]["status"] for b in doc["benchmarks"]]


def _ok_entry(cell, threads=2) -> dict:
    return benchmark_entry(record_for(cell, "tiny", threads, status="ok"), [1e-3, 2e-3])


def test_one_group_a_node_at_a_time_and_a_done_group_keeps_the_nodes_document(run):
    books, groups, progress, events, submit, sent = run
    first, second = groups
    books.schedule([_node("alpha")], submit)
    assert sent == [("h0", first.name, "alpha")] and list(books.pending) == [second]
    books.schedule([_node("alpha")], submit)  # alpha is busy: the second group waits
    assert len(sent) == 1

    books.handle("h0", Message(Message.START, {"name": "alpha", "cpu": "x"}))
    cell = first.cells[0]
    books.handle("h0", Message(Message.CELL, _ok_entry(cell)))
    assert [e["extra_info"]["cell"] for e in progress.entries] == [cell.id]
    doc = {"machine_info": {"nnparity": {"from": "the node"}}, "benchmarks": []}
    books.handle("h0", Message(Message.DONE, doc, ""))
    books.ended("h0")  # the stream ends after DONE: nothing more is written
    assert _doc(books, first.name) == doc
    assert [k for k, _, _ in events] == ["start", "cell", "done"]

    books.schedule([_node("alpha")], submit)  # alpha is free again
    assert sent[-1] == ("h1", second.name, "alpha") and not books.pending
    books.handle("h1", Message(*tuple(Message(Message.DONE, doc, ""))))  # as a plain tuple
    books.ended("h1")
    assert not books.active and books.outcome().failed == ()
    assert books.finished == 2


def test_a_group_lost_before_it_started_goes_to_another_node_once(run):
    books, groups, _, _, submit, sent = run
    first = groups[0]
    books.schedule([_node("alpha")], submit)
    books.lost("h0", "NodeDiedError")
    assert books.pending[0] == first and not group_file(books.ctx.out, first.name).exists()
    books.schedule([_node("beta")], submit)
    assert sent[1] == ("h1", first.name, "beta")
    books.lost("h1", "NodeDiedError")  # a second loss: recorded, not retried again
    doc = _doc(books, first.name)
    assert set(_statuses(doc)) == {"error"}
    errors = {b["extra_info"]["error"] for b in doc["benchmarks"]}
    assert errors == {"lost on Ray node beta: NodeDiedError"}
    assert books.failed == [f"{first.name} on beta: lost on Ray node beta: NodeDiedError"]


def test_a_group_lost_while_running_keeps_its_streamed_cells(run):
    books, groups, _, _, submit, _ = run
    first = groups[0]
    books.schedule([_node("alpha"), _node("beta")], submit)
    books.handle("h0", Message(Message.START, {"name": "alpha", "fingerprint": "fp-alpha"}))
    books.handle("h0", Message(Message.CELL, _ok_entry(first.cells[0])))
    books.lost("h0", "ActorDiedError")
    doc = _doc(books, first.name)
    by_cell = {b["extra_info"]["cell"]: b["extra_info"] for b in doc["benchmarks"]}
    assert by_cell[first.cells[0].id]["status"] == "ok"
    rest = [info for cid, info in by_cell.items() if cid != first.cells[0].id]
    assert rest and all(i["error"] == "lost on Ray node alpha: ActorDiedError" for i in rest)
    # the machine block is the node's as it described itself, with the driver's commit
    ours = doc["machine_info"]["nnparity"]
    assert ours["fingerprint"] == "fp-alpha" and ours["git_commit"] == "c0ffee"
    assert ours["ray_node"]["name"] == "alpha"
    assert not books.pending and list(books.running) == ["h1"]


def test_a_refusing_node_is_never_asked_again(run):
    books, groups, _, _, submit, sent = run
    first, second = groups
    books.schedule([_node("alpha")], submit)
    books.handle("h0", Message(Message.START, {"name": "alpha"}))
    books.handle("h0", Message(Message.REFUSED, "node alpha runs other code"))
    books.ended("h0")
    assert set(_statuses(_doc(books, first.name))) == {"error"}
    # alpha refused, so the only live node cannot take the second group at all
    books.schedule([_node("alpha")], submit)
    assert len(sent) == 1 and not books.active
    errors = {b["extra_info"]["error"] for b in _doc(books, second.name)["benchmarks"]}
    assert errors == {f"no live Ray node can run this group (lost, refused or lacking {SLOT})"}
    assert [line.split(":")[0] for line in books.failed] == [f"{first.name} on alpha",
                                                              f"{second.name} on "]


def test_a_task_that_ends_without_done_is_an_error_and_cuda_needs_a_gpu(run):
    books, groups, _, _, submit, sent = run
    books.schedule([_node("alpha", slot=False)], submit)  # no slot: nothing can run
    assert not sent and not books.active
    assert len(books.failed) == 2
    assert _node("g", gpu=True).can_run(groups[0]) and _node("c").can_run(groups[0])
    cuda = replace(groups[0], cells=tuple(replace(c, device="cuda") for c in groups[0].cells))
    assert _node("g", gpu=True).can_run(cuda) and not _node("c").can_run(cuda)
    assert "lacking nnparity_slot and a GPU" in RayScheduler._unrunnable(cuda)
    assert "GPU" not in RayScheduler._unrunnable(groups[0])


def test_an_ended_stream_without_its_document_closes_the_group(run):
    books, groups, _, _, submit, _ = run
    books.schedule([_node("alpha"), _node("beta")], submit)
    books.handle("h0", Message(Message.START, {"name": "alpha"}))
    books.ended("h0")
    assert books.failed == [f"{groups[0].name} on alpha: the task on alpha ended without "
                            "its results"]


def test_interrupt_closes_every_running_group_and_says_so(run, capsys):
    books, groups, _, _, submit, _ = run
    books.schedule([_node("alpha"), _node("beta")], submit)
    books.handle("h0", Message(Message.START, {"name": "alpha"}))
    outcome = books.interrupt()
    assert outcome.interrupted and len(outcome.failed) == 2
    for group in groups:
        assert set(_statuses(_doc(books, group.name))) == {"error"}
    assert "interrupted: 0 of 2 groups finished" in capsys.readouterr().err


def test_a_group_whose_document_arrived_is_not_closed_again(run, capsys):
    """The node dies, or Ctrl-C comes, after DONE but before the stream ends: the node's
    complete document stands and the group counts once, without an error."""
    books, groups, _, _, submit, _ = run
    books.schedule([_node("alpha"), _node("beta")], submit)
    doc = {"machine_info": {"nnparity": {}}, "benchmarks": []}
    books.handle("h0", Message(Message.DONE, doc, ""))
    books.handle("h1", Message(Message.DONE, doc, ""))
    books.lost("h0", "NodeDiedError")
    outcome = books.interrupt()
    assert outcome.failed == () and books.finished == 2
    for group in groups:
        assert _doc(books, group.name) == doc
    assert "interrupted: 2 of 2 groups finished" in capsys.readouterr().err


def test_the_nodes_own_messages_drive_the_books(run, monkeypatch):
    """What a node sends (bench/distributed/node.py, its worker stubbed to stream one
    cell) is what the books read: one cell streamed to the driver, then the node's
    document; a node with other code refuses before anything runs."""
    from bench.distributed import node, ray_executor

    books, groups, progress, events, submit, _ = run
    first, second = groups
    streamed = _ok_entry(first.cells[0])

    def follow(spec, log, stream, timeout, **_):
        Path(stream).write_text(json.dumps(streamed) + "\n", encoding="utf-8")
        yield streamed
        return ""

    monkeypatch.setattr(node, "follow", follow)
    books.schedule([_node("alpha"), _node("beta")], submit)
    for handle, group, digest in (("h0", first, node.code_digest()), ("h1", second, "other")):
        spec = ray_executor.worker_spec(books.ctx, group)
        for message in node.run_group_on_node(spec, 60.0, digest, "c0ffee", {"name": "n"}):
            assert isinstance(message, Message)
            books.handle(handle, message)
        books.ended(handle)
    assert [e["extra_info"]["cell"] for e in progress.entries] == [first.cells[0].id]
    done = _doc(books, first.name)
    assert done["machine_info"]["nnparity"]["git_commit"] == "c0ffee"
    assert _statuses(done)[0] == "ok" and set(_statuses(done)[1:]) == {"error"}  # not reached
    assert books.refused == {"id-beta"} and not books.active
    (line,) = books.failed
    assert line.startswith(f"{second.name} on beta: node n runs other code")
    assert set(_statuses(_doc(books, second.name))) == {"error"}
