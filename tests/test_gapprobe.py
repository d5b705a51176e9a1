"""`python -m bench.timing.gapprobe`: variants of one backend timed interleaved in one
process (tiny preset; torch only, skipped without it)."""

from __future__ import annotations

import importlib.util

import pytest

from bench.timing import gapprobe


def test_table_gives_ratios_to_the_first_variant_from_per_round_ratios():
    rounds = {"a": [0.010, 0.020, 0.010], "b": [0.030, 0.020, 0.040]}  # medians 10, 30 ms
    text = gapprobe.table(rounds)
    row = next(line for line in text.splitlines() if line.startswith("| b "))
    # per-round ratios 3, 1, 4: their median and range
    assert "| 3.00x | 1.00-4.00 |" in row
    assert "| 30.000 |" in row  # median of b in ms
    assert "| 1.00x | 1.00-1.00 |" in next(ln for ln in text.splitlines() if ln.startswith("| a "))
    # the fastest calls' ratios: 2, 4, 1 per round, beside the medians'
    fast = {"a": [0.005, 0.005, 0.010], "b": [0.010, 0.020, 0.010]}
    row = next(ln for ln in gapprobe.table(rounds, fast).splitlines() if ln.startswith("| b "))
    assert row.endswith("| 3.00x | 1.00-4.00 | 10.000 | 2.00x | 1.00-4.00 |")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed")
def test_probe_times_every_variant_in_each_round_and_prints_a_row_each(capsys):
    rc = gapprobe.main(["--backend", "torch", "--task", "mlp_regression", "--preset", "tiny",
                        "--phase", "backward", "--variants", "eager,nn", "--rounds", "3",
                        "--calls", "2", "--warmup", "1", "--batch", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "backward" in out and "batch 3" in out
    assert [ln.split("|")[1].strip() for ln in out.splitlines() if ln.startswith("| ")][1:] \
        == ["eager", "nn"]


@pytest.mark.parametrize("argv", [
    ["--backend", "nope", "--task", "mlp_regression", "--variants", "x"],
    ["--backend", "torch", "--task", "nope", "--variants", "eager"],
    ["--backend", "torch", "--task", "mlp_regression", "--preset", "tiny", "--variants", "zz"],
    ["--backend", "torch", "--task", "mlp_regression", "--preset", "tiny", "--variants", ","],
    ["--backend", "torch", "--task", "mlp_regression", "--preset", "tiny", "--knob", "nope=1",
     "--variants", "eager"],
])
def test_bad_input_is_one_line_and_exit_2(argv, capsys):
    if "torch" in argv and importlib.util.find_spec("torch") is None:
        pytest.skip("torch not installed")
    assert gapprobe.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
