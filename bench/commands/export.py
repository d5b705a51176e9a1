"""The `nnparity export` command: one task's parameters, batch and float64 reference
gradients in one .npz (bench/agreement/export.py builds and writes them), so anyone
can check our reference with their own framework code. The output is checked before
the work and written atomically; `.npz` is appended when the name lacks it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.agreement.export import export_arrays, write_npz_atomic
from bench.commands.common import check_out_file
from bench.options import add_task_options, knob_overrides, seed_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_task_options(parser, many=False)
    parser.add_argument("--seed", type=seed_int, default=None, help="parameter and data seed")
    parser.add_argument("--out", required=True, help="the .npz file to write")


def main(args: argparse.Namespace) -> int:
    check_out_file(args.out)
    arrays = export_arrays(args.task, args.preset or "tiny", knob_overrides(args), args.seed)
    out = Path(args.out)
    if out.suffix != ".npz":
        out = out.with_suffix(out.suffix + ".npz")  # np.savez would append it anyway
    write_npz_atomic(out, arrays)
    n = sum(1 for k in arrays if k.startswith("param/"))
    print(f"wrote {out}: {n} parameter tensors, loss {float(arrays['loss']):.6g}")
    return 0
