"""`import tasks, impls, bench` (and the CLI) must not import any framework."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("torch", "jax", "jaxlib", "tensorflow", "keras")


def test_package_import_pulls_in_no_framework():
    code = (
        "import sys, tasks, impls, bench, bench.cli\n"
        "bench.cli.build_parser()\n"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
