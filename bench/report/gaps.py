"""Variant gaps: within one framework and cell, a variant more than 1.5x slower than
that framework's fastest variant must carry a measured, stated cause.

A gap that large usually measures the harness (a quadratic backward in a Python
loop, a layout a compiler is slow in), not the framework, until someone has
measured why. `KNOWN_CAUSES` holds the causes that were measured (each with where
the measurement is written down); `variant_gaps` lists every gap of a run with its
cause or none, and the report prints them all, unexplained ones marked, never
silence. The rule applies to steady phases at each config's main batch size; a
gap counts when its ratio of medians exceeds `GAP_FACTOR` and its 95% interval
lies outside the noise band (the "~" rule of bench/results/stats.py).

A library module of `report`: no command, no file access, no framework.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import pandas as pd

from bench.results.read import main_batch
from bench.results.schema import STEADY_PHASES, STRICT_PRECISION
from bench.results.stats import ratio_interval, within_noise

GAP_FACTOR = 1.5


@dataclass(frozen=True)
class Cause:
    """Why `variants` of `backend` are slower than the framework's fastest variant on
    configs matching `config` (fnmatch pattern) in `phases`, and where it was measured."""

    backend: str
    variants: tuple[str, ...]
    config: str
    phases: tuple[str, ...]
    text: str
    source: str = "docs/design.md §5, Known gaps between variants"

    def covers(self, backend: str, variant: str, config: str, phase: str) -> bool:
        return (backend == self.backend and variant in self.variants and phase in self.phases
                and fnmatch.fnmatchcase(config, self.config))


#: measured causes (CPU; docs/design.md §5 has the numbers and the method)
KNOWN_CAUSES: tuple[Cause, ...] = (
    Cause("tensorflow", ("xla", "keras_xla"), "cnn_classification*", ("backward", "step"),
          "XLA:CPU's max-pool gradient (select-and-scatter) costs 11-25 ms against 2.4 ms "
          "for TensorFlow's own kernel, and its convolutions are 2-4x slower than oneDNN's"),
    Cause("torch", ("compile",), "cnn_classification*", ("backward", "step"),
          "inductor's generated ReLU + max-pool-with-indices training kernel costs ~18 ms of "
          "a 25 ms conv-ReLU-pool forward and backward (eager: 13-14 ms in all)"),
    Cause("torch", ("eager", "nn"), "cnn_classification*", ("forward",),
          "eager and nn run NCHW as users' tensors are; torch's NCHW max-pool CPU kernel is "
          "10-20x slower than the channels-last one inductor picks for compile"),
    Cause("tensorflow", ("xla", "keras_xla"), "cnn_classification*", ("forward",),
          "XLA:CPU's first convolution (3 input channels) costs 8.5 ms against 1.8 ms for "
          "TensorFlow's oneDNN kernel (4.6x); the other layers run within 0.9-1.1x"),
    Cause("tensorflow", ("function", "keras", "keras_layers"), "rnn_sequence*", ("forward",),
          "TensorFlow's graph executor runs the loop's 15-30 ops of each of the 100 steps one "
          "kernel at a time, XLA compiles the loop: at batch 1, nearly all dispatch, forward "
          "costs 2.7-4.5 ms against 0.23-0.47 ms under XLA (loss and gradients, where "
          "oneDNN's matmuls beat XLA:CPU's, these variants are the fastest)"),
    Cause("torch", ("compile",), "mlp_regression[[]*activation=tanh*", ("forward",),
          "inductor's generated tanh kernel (at::vec's Vectorized<float>::tanh) costs "
          "101 us for a 256x256 tensor against 16 us for eager aten::tanh, three layers; "
          "relu and sigmoid forwards stay within 1.5x"),
    Cause("jax", ("scan_unroll",), "rnn_sequence*", ("backward", "step"),
          "the one difference from jit is lax.scan(unroll=8), and XLA:CPU's backward of the "
          "8x unrolled loop measured 1.4-2.4x flax's where the rolled loop (jit) measured "
          "0.96-1.18x (standard LSTM and GRU, three runs); their forwards measured 0.9-1.2x"),
    Cause("torch", ("eager", "compile"), "rnn_sequence*", STEADY_PHASES,
          "a Python loop of per-step ops against ATen's fused recurrent kernel (nn/native); "
          "eager runs at a hand-written unbind loop's speed (0.97x, standard LSTM)"),
)


def cause_for(backend: str, variant: str, config: str, phase: str) -> Cause | None:
    return next((c for c in KNOWN_CAUSES if c.covers(backend, variant, config, phase)), None)


def variant_gaps(df: pd.DataFrame) -> pd.DataFrame:
    """Every gap beyond `GAP_FACTOR` in a tidy run table (`markdown.tidy`): config,
    phase, device, dtype, backend, variant, fastest variant, ratio and its interval,
    and the cause ("" where none was measured)."""
    columns = ["config", "phase", "device", "dtype", "backend", "variant", "fastest",
               "ratio", "low", "high", "cause"]
    need = {"interval", "batch_size", "config", "precision_mode"}
    if df.empty or not need <= set(df.columns):
        return pd.DataFrame(columns=columns)
    ok = df[(df["status"] == "ok") & df["phase"].isin(STEADY_PHASES) & df["interval"].notna()]
    rows = []
    for (config, backend, phase, device, dtype, mode), part in ok.groupby(
            ["config", "backend", "phase", "device", "dtype", "precision_mode"], sort=False):
        main = part[part["batch_size"] == main_batch(df[df["config"] == config])]
        if len(main) < 2:
            continue
        best = main.loc[main["median"].idxmin()]
        for r in main.itertuples():
            if r.variant == best["variant"]:
                continue
            ratio, low, high = ratio_interval(r.interval, best["interval"])
            if not ratio > GAP_FACTOR or within_noise(low, high):
                continue
            cause = cause_for(backend, r.variant, config, phase)
            label = dtype + ("" if mode == STRICT_PRECISION else f"+{mode}")
            rows.append([config, phase, device, label, backend, r.variant, best["variant"],
                         ratio, low, high, cause.text if cause else ""])
    return pd.DataFrame(rows, columns=columns)


def unexplained(gaps: pd.DataFrame) -> pd.DataFrame:
    """The gaps no measured cause covers: the report marks each and counts them in its
    headline (never silence), until a measured cause is added to `KNOWN_CAUSES`."""
    return gaps[gaps["cause"] == ""] if len(gaps) else gaps
