"""How a number reads in every table and report: one rule for a missing value.

A value that is None or NaN (pandas' NA too) prints as `missing` ("n/a" in the
reports, "-" where a table marks an empty cell); any other value is formatted
with its spec. Must not import a framework.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


def number(value: Any, spec: str, suffix: str = "", *, missing: str = "n/a") -> str:
    """`format(value, spec) + suffix`, or `missing` when there is no value."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return missing
    return format(value, spec) + suffix
