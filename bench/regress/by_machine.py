"""`nnparity compare` over runs that span several machines: cells matched per machine.

When either side holds more than one machine (a Ray run, a merged set of CI
shards), a cell is compared only with the same cell measured on the same
machine (fingerprint): each machine's cells go through `compare_runs` on their
own, and the tables are joined with the machine in front of each cell id.
A machine present on one side only is never matched against another machine:
a baseline machine the current run lacks puts each of its cells in the table as
missing (so the gate fails unless --allow-missing: two runs that share no
machine compared nothing, which is not a pass); a machine only in the current
run is a warning. Reads only; prints and writes nothing.
"""

from __future__ import annotations

import pandas as pd

from bench.regress.compare import Comparison, compare_runs, sort_table
from bench.results.machines import fingerprints, load_machines, split_machines
from bench.results.read import RunInfo
from bench.results.schema import CALIBRATION
from bench.results.stats import NOISE_BAND, Verdict


def spans_machines(*paths: str) -> bool:
    return any(len(fingerprints(p)) > 1 for p in paths)


def compare_by_machine(base: str, current: str, factor: float, alpha: float,
                       confidence: float, noise: float = NOISE_BAND) -> Comparison:
    b_all, c_all = load_machines([base]), load_machines([current])
    b_parts, c_parts = split_machines(b_all), split_machines(c_all)
    tables, warnings = [], []
    common = [m for m in b_parts if m in c_parts]
    # each machine's cells are one family (Holm); the machines share alpha (Bonferroni),
    # so the exit code's "some cell regressed somewhere" keeps a family-wise error <= alpha
    each = alpha / max(1, len(common))
    if len(common) > 1:
        warnings.append(f"{len(common)} machines: each machine's cells are judged as one "
                        f"family at alpha {each:.3g} (alpha / machines)")
    for fp in common:
        b, c = b_parts[fp].copy(), c_parts[fp].copy()
        b.attrs = {"run": RunInfo(base, fp, commit=b_all.attrs["runs"][base])}
        c.attrs = {"run": RunInfo(current, fp, commit=c_all.attrs["runs"][current])}
        one = compare_runs(b, c, factor, each, confidence, noise)
        tables.append(one.table.assign(cell=f"[{fp}] " + one.table["cell"]))
        warnings += [f"machine {fp}: {w}" for w in one.warnings]
    for fp in [m for m in b_parts if m not in c_parts]:
        gone = b_parts[fp][b_parts[fp]["phase"] != CALIBRATION]
        warnings.append(f"machine {fp} is only in the baseline: its {len(gone)} cells are "
                        "missing from the current run")
        tables.append(pd.DataFrame({
            "cell": f"[{fp}] " + gone["cell"], "verdict": Verdict.MISSING.value,
            "base_median_s": gone["median"], "base_rounds": gone["rounds"],
            "current_rounds": 0, "note": "machine not in the current run"}))
    for fp in [m for m in c_parts if m not in b_parts]:
        warnings.append(f"machine {fp} is only in the current run: its cells are not compared")
    columns = ["cell", "verdict", "ratio", "ci_low", "ci_high", "p_value", "p_adjusted",
               "base_median_s",
               "current_median_s", "base_rounds", "current_rounds", "note"]
    tables = [t for t in tables if len(t)]
    table = (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()).reindex(
        columns=list(dict.fromkeys([*columns, *(c for t in tables for c in t.columns)])))
    return Comparison(sort_table(table), RunInfo(base, "several", commit=b_all.attrs["runs"][base]),
                      RunInfo(current, "several", commit=c_all.attrs["runs"][current]),
                      factor, alpha, confidence, False, tuple(warnings), noise=noise)
