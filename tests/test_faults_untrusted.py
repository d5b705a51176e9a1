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


# -- 5. Markdown injection: every cell and line of untrusted text is escaped ------------------

HOSTILE = ("x|y\n# injected heading\n![t](http://evil.example/i.png) [l](http://e.example) "
           "<script>alert(1)</script><img src=x onerror=alert(1)> \\| `code|` end")


def hostile_doc(fingerprint: str, seed: int = 0) -> dict:
    """Hostile text in every field a report prints that the format lets be free text."""
    doc = machine_doc("numpy", fingerprint, seed=seed, gpu=HOSTILE,
                      frameworks={"numpy": HOSTILE, HOSTILE: "1"})
    doc["machine_info"]["nnparity"]["cpu"] = HOSTILE
    tag = HOSTILE.replace("/", "")  # a cell id has no "/": the rest of the text is kept
    for bench in doc["benchmarks"]:
        extra = bench["extra_info"]
        parts = extra["cell"].split("/")
        if extra["phase"] != "calibration":
            parts[3] = extra["variant"] = f"eager{tag}"
            extra["cell"] = "/".join(parts)
        if extra["status"] == "error":
            extra["error"] = HOSTILE
    return doc


def _cells(line: str) -> list[str]:
    """A Markdown table row split the way a GFM renderer splits it."""
    cells, cur, i = [], "", 0
    body = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            cur += body[i:i + 2]
            i += 2
            continue
        if body[i] == "|":
            cells.append(cur)
            cur = ""
        else:
            cur += body[i]
        i += 1
    return [*cells, cur]


def assert_inert(text: str, error_rows: int) -> None:
    lower = text.lower()
    for raw in ("<script", "<img", "![t]", "\n# injected", "\n#injected"):
        assert raw not in lower, raw
    assert not re.search(r"(?<!\\)\]\(http", text)  # no link or image can form
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    assert tables
    for table in tables:
        width = len(_cells(table[0]))
        assert all(len(_cells(row)) == width for row in table), table
    errors = text.split("## Errors", 1)[1].split("\n## ", 1)[0]
    assert sum(line.startswith("|") for line in errors.splitlines()) == 2 + error_rows
    assert "x\\|y" in text  # the hostile text is shown, escaped, not dropped


def test_hostile_text_cannot_break_a_single_run_report(tmp_path, capsys) -> None:
    run = write_doc(tmp_path / "run" / "numpy_x.json", hostile_doc("machineA")).parent
    assert cli_exit(["report", str(run), "--no-plots"]) == 0, capsys.readouterr()
    assert_inert((run / "REPORT.md").read_text(), error_rows=1)


def test_hostile_text_cannot_break_a_merged_report(tmp_path, capsys) -> None:
    runs = [write_doc(tmp_path / f"run{i}" / "numpy_x.json", hostile_doc(fp, i)).parent
            for i, fp in enumerate(("machineA", "machineB"))]
    out = tmp_path / "out"
    assert cli_exit(["report", *map(str, runs), "--out", str(out), "--no-plots"]) == 0, \
        capsys.readouterr()
    text = (out / "REPORT.md").read_text()
    assert_inert(text, error_rows=2)
    machines = text.split("## Machines", 1)[1].split("\n## ", 1)[0]
    assert sum(line.startswith("|") for line in machines.splitlines()) == 2 + 2


def test_compare_markdown_escapes_hostile_cells(tmp_path, capsys) -> None:
    base = write_doc(tmp_path / "a" / "numpy_x.json", hostile_doc("machineA")).parent
    assert cli_exit(["compare", str(base), str(base), "--markdown"]) == 0
    text = capsys.readouterr().out
    for raw in ("<script", "<img", "![t]"):
        assert raw not in text.lower(), raw
    assert not re.search(r"(?<!\\)\]\(http", text)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 4 and all(len(_cells(r)) == 7 for r in rows), rows
