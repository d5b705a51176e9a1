"""Results from other machines are untrusted input (issue 22): the second fault audit.

One test (or a parametrised family) per numbered failure of the issue: traversal and
NUL task names in merged reports (1, 2), values the validator let through that
crashed readers (3), huge integers and deep nesting (4), Markdown injection (5),
gates that compared nothing (6), two machines in one run directory (7), concurrent
writers of history and baselines (8), history's rule options (9), tracebacks on bad
paths and arguments (10), environment variables checked up front (13), size limits
(12) and the study that keeps what it finished (14). Every bad input ends in exit 2
with one line naming the file and field, and nothing is written outside the output
directory."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_faults import cli_exit, harness_doc, write_doc

from bench.options import OutputError
from bench.results import write as records


def machine_doc(backend: str, fingerprint: str, seed: int = 0, **nnparity) -> dict:
    """`harness_doc` measured on another machine (its own fingerprint and CPU)."""
    doc = harness_doc(backend, seed=seed)
    doc["machine_info"]["nnparity"].update(fingerprint=fingerprint, cpu=f"cpu-{fingerprint}",
                                          **nnparity)
    return doc


def two_machines(tmp_path: Path, edit=None) -> list[Path]:
    """Two run directories, one per machine; `edit(doc)` changes both documents."""
    runs = []
    for i, fp in enumerate(("machineA", "machineB")):
        doc = machine_doc("numpy", fp, seed=i)
        if edit:
            edit(doc)
        runs.append(write_doc(tmp_path / f"run{i}" / "numpy_mlp_regression.json", doc).parent)
    return runs


def _tree(root: Path, skip: Path) -> set[Path]:
    return {p for p in root.rglob("*") if skip != p and skip not in p.parents}


# -- 1, 2. figure names from results: one sanitiser, a writer that stays in its root ---------

@pytest.mark.parametrize("task", ["../" * 30 + "tmp/nnparity-x22/evil",
                                  "ok\x00evil", "/../../victim"])
def test_a_merged_report_writes_nothing_outside_its_directory(task, tmp_path, capsys) -> None:
    (tmp_path / "out").mkdir()

    def hostile(doc):
        for bench in doc["benchmarks"]:
            bench["extra_info"]["task"] = task

    runs = two_machines(tmp_path, hostile)
    out = tmp_path / "out" / "report"
    before = _tree(tmp_path, out)
    assert cli_exit(["report", *map(str, runs), "--out", str(out)]) == 0, capsys.readouterr()
    assert _tree(tmp_path, out) == before
    assert not Path("/tmp/nnparity-x22").exists()
    assert not (tmp_path / "out" / "victim.png").exists()
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures and all(re.fullmatch(r"[A-Za-z0-9_=-]+\.png", f) for f in figures), figures


def test_the_atomic_writer_refuses_a_path_outside_its_root(tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for bad in (root / ".." / "x.png", root / "a" / ".." / ".." / "y" / "x.png"):
        with pytest.raises(OutputError, match="outside"):
            records.write_atomic(bad, lambda fh: fh.write(b"x"), root=root)
    (root / "link").symlink_to(tmp_path)  # a planted directory link
    with pytest.raises(OutputError, match="outside"):
        records.write_atomic(root / "link" / "x.png", lambda fh: fh.write(b"x"), root=root)
    with pytest.raises(OutputError, match="null"):
        records.write_atomic(root / "a\x00b.png", lambda fh: fh.write(b"x"), root=root)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["link", "root"]
    records.write_atomic(root / "sub" / "ok.png", lambda fh: fh.write(b"x"), root=root)
    assert (root / "sub" / "ok.png").read_bytes() == b"x"
    assert records.safe_name("../../a\x00b/..") == "a_b"
