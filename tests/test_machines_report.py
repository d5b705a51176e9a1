"""The merged report over several machines carries the one-machine report's verdicts,
machine by machine: the ranked summary with ties, intervals and "~" on every ratio, the
variant gaps with their causes, and the unstable cells in the headline. Fabricated runs
(seeded samples, no framework)."""

from __future__ import annotations

import re

import numpy as np

from bench import cli
from bench.report.machines import tidy_machines
from bench.report.markdown import summary_table
from bench.results import write as records
from bench.results.machines import load_machines
from bench.timing.matrix import Selection, build_groups, task_configs

MACHINES = {
    "aaaaaaaaaaaa": {"cpu": "Test EPYC 9654", "cores": 96, "gpu": ""},
    "bbbbbbbbbbbb": {"cpu": "Test Xeon 8480", "cores": 56, "gpu": ""},
}
VARIANTS = {"numpy": ["reference"], "torch": ["eager", "nn"]}


def _write_run(path, fingerprint: str, *, speed: dict[str, float], noisy: str = "",
               commit: str = "c0ffee") -> None:
    """One machine's MLP run (quick preset): numpy and two torch variants. `speed[impl]`
    divides the cell's time; `noisy` names an impl whose samples spread 60%."""
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    sel = Selection(tasks=("mlp_regression",), backends=tuple(VARIANTS), variants=None,
                    devices=("cpu",), dtypes=("float32",),
                    phases=("forward", "backward", "step"), preset="quick")
    labels = [c.label for c in task_configs("mlp_regression", "quick", {})]
    described = {b: {"installed": True, "variants": v, "devices": ["cpu"],
                     "supports": {lab: v for lab in labels}} for b, v in VARIANTS.items()}
    machine = {"fingerprint": fingerprint, "threads": 2, "git_commit": commit,
               **MACHINES[fingerprint]}
    for group in build_groups(sel, described):
        stream = path / f"{group.name}.jsonl"
        for device in group.calibrate_devices:
            cal = records.calibration_record(group.backend, device, "quick", 2, variant="x",
                                             gflops=40.0, gemm_size=512)
            records.append_stream(stream, records.benchmark_entry(cal, [0.01] * 5))
        for cell in group.cells:
            impl = f"{cell.backend}/{cell.variant}"
            base = 1e-3 * cell.batch_size / 64 / speed[impl]
            spread = 0.6 if impl == noisy else 0.01
            rec = records.record_for(cell, "quick", 2, flops=10**6)
            records.append_stream(stream, records.benchmark_entry(
                rec, list(base * (1 + spread * rng.random(15)))))
        records.finish_group(group, "quick", path / f"{group.name}.json", path / "none",
                             stream, records.default_machine_info(machine), "", 2)
        stream.unlink()


def _runs(tmp_path, commit="c0ffee"):
    # M1: numpy and torch/eager tie; torch/nn 2x slower than eager (a gap, no known cause)
    _write_run(tmp_path / "a", "aaaaaaaaaaaa", commit=commit,
               speed={"numpy/reference": 1.0, "torch/eager": 1.0, "torch/nn": 0.5})
    # M2: torch/eager 3x faster than numpy; torch/nn within 1.2x of eager; numpy noisy
    _write_run(tmp_path / "b", "bbbbbbbbbbbb", commit=commit, noisy="numpy/reference",
               speed={"numpy/reference": 2.0, "torch/eager": 6.0, "torch/nn": 5.0})
    return [tmp_path / "a", tmp_path / "b"]


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start):text.index(end, text.index(start) + len(start))]


def test_the_merged_report_has_each_machines_verdicts(tmp_path, capsys):
    out = tmp_path / "merged"
    assert cli.main(["report", *map(str, _runs(tmp_path)), "--out", str(out),
                     "--no-plots"]) == 0, capsys.readouterr().err
    text = (out / "REPORT.md").read_text()
    head = text.split("\n\n")[1]
    # the headline counts the unstable cells of every machine: M2's numpy cells, no others
    df = tidy_machines(load_machines(_runs(tmp_path)))
    timed = df[df["interval"].notna()]
    unstable = timed[timed["unstable"] != ""]
    assert len(unstable) > 0 and set(unstable["label"]) == {"M2"}
    assert set(unstable["backend"]) == {"numpy"}
    assert f"**{len(unstable)} of {len(timed)} timed cells unstable**" in head
    assert "2 machines" in head
    # M1's variant gap (torch/nn 2x eager) without a measured cause, named at the top
    assert re.search(r"^M1: \*\*\d+ of \d+ variant gaps beyond 1.5x have no measured cause",
                     text, re.M)
    assert not re.search(r"^M2: ", text, re.M)

    verdicts = _section(text, "## Verdicts by machine", "## Calibration")
    assert "The \"~\" rule" in verdicts  # the rule is stated where the marks are
    m1 = _section(verdicts, "### M1: Test EPYC 9654", "### M2")
    m2 = verdicts[verdicts.index("### M2: Test Xeon 8480"):]
    # the per-machine summaries are the one-machine summary_table of that machine
    for label, part in (("M1", m1), ("M2", m2)):
        assert summary_table(df[df["label"] == label]) in part
    # M1: numpy and torch/eager tie (both rank 1, "=", "~"); M2: torch first, numpy 2nd
    m1_rows = [r for r in m1.splitlines() if r.startswith("| mlp_regression")]
    assert m1_rows and all("=1." in r and "~" in r for r in m1_rows[:3]), m1_rows
    m2_rows = [r for r in m2.splitlines() if r.startswith("| mlp_regression")]
    assert m2_rows and all("**1. torch/eager" in r and "| 2. numpy/reference" in r
                           for r in m2_rows[:3]), m2_rows
    # the variant gaps: on M1 torch/nn vs eager, 2x with its interval, unexplained
    gap = [r for r in m1.splitlines() if "nn vs eager" in r]
    assert gap and all(re.search(r"\| 2\.00x \[[\d.]+, [\d.]+\] \| \*\*unexplained", r)
                       for r in gap), gap
    assert "No variant is more than 1.5x slower" in m2


def test_every_machine_ratio_has_its_interval_and_the_noise_mark(tmp_path):
    out = tmp_path / "merged"
    assert cli.main(["report", *map(str, _runs(tmp_path)), "--out", str(out),
                     "--no-plots"]) == 0
    text = (out / "REPORT.md").read_text()
    timing = _section(text, "## Timings by task and machine", "## Throughput")
    assert "| M2 vs M1 |" in timing
    ratios = {}
    for line in timing.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0] in ("forward", "backward", "step"):
            ratios.setdefault(cells[1].split(" ")[0], []).append(cells[4])
    # M2 runs numpy 2x, torch/eager 6x, torch/nn 10x faster than M1; every ratio with CI
    for impl, expected in (("numpy/reference", 2.0), ("torch/eager", 6.0),
                           ("torch/nn", 10.0)):
        assert ratios[impl], impl
        for text_ in ratios[impl]:
            m = re.fullmatch(r"(~?)([\d.]+)x \[([\d.]+), ([\d.]+)\]", text_)
            assert m, text_
            assert m.group(1) == "" and abs(float(m.group(2)) / expected - 1) < 0.35, text_
            assert float(m.group(3)) <= float(m.group(2)) <= float(m.group(4))


def test_a_dirty_run_is_marked_in_the_merged_report(tmp_path):
    out = tmp_path / "merged"
    assert cli.main(["report", *map(str, _runs(tmp_path, commit="c0ffee+dirty")),
                     "--out", str(out), "--no-plots"]) == 0
    assert "**Measured from a modified tree** (commit c0ffee+dirty)" in \
        (out / "REPORT.md").read_text()
