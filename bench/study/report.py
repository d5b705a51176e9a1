"""REPORT.md and its figures for a study directory, rebuilt from `study.json` alone.

Reads only the raw data `run` wrote (no framework, no measurement), computes
the summary with `summary`, and writes the Markdown, three PNG figures and
`summary.json` atomically. Running it twice on the same data gives the same files.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from bench.options import InputError
from bench.results.text import number
from bench.results.write import write_text_atomic
from bench.study.config import BASELINE_MSE, HORIZON_FRACTION, SATURATION, SUCCESS_MSE
from bench.study.summary import summarize

FIGURES = ("time_norms.png", "depth_ratio.png", "learn_mse.png")


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata={"Software": None})
    write_text_atomic(path, buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_time(data: dict, path: Path) -> None:
    plt = _plt()
    cfg = data["config"]
    lengths, cells = cfg["time_lengths"], cfg["cells"]
    fig, axes = plt.subplots(len(lengths), len(cells), figsize=(4 * len(cells), 3 * len(lengths)),
                             squeeze=False, sharey="row")
    for i, length in enumerate(lengths):
        for j, cell in enumerate(cells):
            ax = axes[i][j]
            rows = [r for r in data["time"] if r["cell"] == cell and r["length"] == length]
            for state, color in (("init", "C0"), ("trained", "C1")):
                for layer in sorted(rows[0]["curves"][state]) if rows else []:
                    curves = np.array([r["curves"][state][layer] for r in rows])
                    t = np.arange(1, curves.shape[1] + 1)
                    ax.plot(t, np.median(curves, axis=0), color=color,
                            label=f"{state} {layer}")
                    ax.fill_between(t, curves.min(axis=0), curves.max(axis=0), color=color,
                                    alpha=0.25)
            ax.set_yscale("log")
            ax.set_title(f"{cell}, T={length}")
            ax.set_xlabel("step t")
            if j == 0:
                ax.set_ylabel("||dL/dh_t|| (batch mean)")
            ax.legend(fontsize=7)
    fig.suptitle(f"Gradient through time: median over {len(cfg['seeds'])} seeds, band min..max")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_depth(summary: list[dict], path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
    for ax, state in zip(axes, ("init", "trained"), strict=True):
        for k, act in enumerate(dict.fromkeys(r["activation"] for r in summary)):
            rows = [r for r in summary if r["activation"] == act and r["state"] == state]
            d = [r["depth"] for r in rows]
            ax.plot(d, [r["ratio"] for r in rows], "o-", color=f"C{k}", label=act)
            ax.fill_between(d, [r["ratio_band"][0] for r in rows],
                            [r["ratio_band"][1] for r in rows], color=f"C{k}", alpha=0.25)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(f"at {state}")
        ax.set_xlabel("hidden layers")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("||dL/dW_first|| / ||dL/dW_last||")
    fig.suptitle("Gradient through depth (diabetes MLP)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_learn(data: dict, summary: list[dict], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, cell in enumerate(data["config"]["cells"]):
        rows = [r for r in summary if r["cell"] == cell]
        t = [r["length"] for r in rows]
        ax.plot(t, [r["mse"] for r in rows], "o-", color=f"C{k}",
                label=f"{cell} ({rows[0]['backend'] if rows else '-'})")
        ax.fill_between(t, [r["mse_band"][0] for r in rows], [r["mse_band"][1] for r in rows],
                        color=f"C{k}", alpha=0.2)
        reps = [r for r in data["learn"] if r["cell"] == cell
                and r["backend"] != data["train_backend"][cell]]
        ax.plot([r["length"] for r in reps], [r["test_mse"] for r in reps], "x", color=f"C{k}",
                ms=8, label=f"{cell}, other backends" if reps else None)
    ax.axhline(BASELINE_MSE, color="grey", ls="--", label="always 1.0 (1/6)")
    ax.axhline(SUCCESS_MSE, color="black", ls=":", label=f"success < {SUCCESS_MSE}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("held-out MSE")
    ax.set_title(f"Adding problem after {data['config']['learn_steps']} steps")
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return number(x, spec, missing="-")


def markdown(data: dict, s: dict[str, Any]) -> str:
    cfg, env = data["config"], data.get("environment", {})
    lines = [
        "# nnparity study: gradient flow through time and depth, in every backend",
        "",
        f"Machine: {env.get('cpu', '?')}, {env.get('cores', '?')} cores; "
        f"{env.get('jobs', '?')} worker process(es), one thread each; commit "
        f"`{str(env.get('git_commit', '?'))[:12]}`; {env.get('date', '?')}; "
        f"study took {env.get('seconds', '?')} s. Backends: {', '.join(data['backends'])}.",
        f"Regenerate this report from the raw data: `nnparity study --report DIR`; rerun the "
        f"study: `nnparity study --preset {env.get('preset', 'default')}`.",
        "",
        "## Setup",
        "",
        f"- Recurrent task: the adding problem, {cfg['rnn_layers']} recurrent layer(s) of "
        f"{cfg['hidden']} units + dense, Adam lr {cfg['learn_lr']}, batch {cfg['batch_size']}, "
        f"{cfg['n_samples']} samples (20% held out), seeds {cfg['seeds']}, training in float32.",
        f"- ||dL/dh_t||: the norm of each held-out sample's own loss gradient w.r.t. the hidden "
        f"state h_t (every path: output and later steps), averaged over {cfg['eval_batch']} "
        f"samples, in float64 by the NumPy reference at the initial parameters and after the "
        f"{cfg['learn_steps']}-step budget. Other backends get it from zero probes added "
        "to h_t (`Program.hidden_state_grads`).",
        f"- Slope: least-squares slope of log10 ||dL/dh_t|| against steps back (decades per "
        f"step). Horizon: steps back at which the median norm falls below {HORIZON_FRACTION:g} "
        "of its last-step value (- = never within T).",
        f"- MLPs: diabetes, width {cfg['mlp_hidden']}, depths {cfg['depths']}, Glorot-uniform "
        f"init; gradients of the full training set's MSE in float64 at init and after "
        f"{cfg['depth_steps']} Adam steps (lr {cfg['depth_lr']}, NumPy float32). Ratio = "
        "||dL/dW|| of the first hidden layer over that of the output layer. Saturated: share "
        f"of (sample, unit) pairs whose sigmoid/tanh derivative is below {SATURATION:.0%} of "
        "its maximum (relu: share of inactive pairs); dead: relu units inactive on every "
        "training sample.",
        "",
        "## Training backend",
        "",
        "A short float32 training run per cell and backend "
        f"(T={cfg['speed_length']}, seconds per step after two warm-up steps):",
        "",
    ]
    if data["speed"]:
        backends = list(dict.fromkeys(r["backend"] for r in data["speed"]))
        lines += ["| cell | " + " | ".join(backends) + " | chosen |",
                  "|---" * (len(backends) + 2) + "|"]
        for cell in cfg["cells"]:
            ms = {r["backend"]: r["seconds_per_step"] * 1e3 for r in data["speed"]
                  if r["cell"] == cell}
            lines.append(f"| {cell} | " + " | ".join(f"{ms[b]:.1f} ms" for b in backends)
                         + f" | {data['train_backend'][cell]} |")
    else:
        lines.append(f"(not measured in this run: every cell trained on "
                     f"{data['train_backend'][cfg['cells'][0]]}, chosen with `--train-backend`)")
    ag = s["agreement"]
    lines += ["", "## Do the backends agree?", "",
              "Worst pointwise relative difference from the NumPy float64 reference, at the "
              f"initial and trained parameters of seed {cfg['seeds'][0]} (time: every step of "
              "every curve; depth: every layer's weight-gradient norm):", "",
              "| backend | dtype | gradient through time | gradient through depth |",
              "|---|---|---|---|"]
    for key in sorted(set(ag["time"]) | set(ag["depth"])):
        b, dt = key.split()
        lines.append(f"| {b} | {dt} | {_fmt(ag['time'].get(key), '.1e')} | "
                     f"{_fmt(ag['depth'].get(key), '.1e')} |")
    if ag["learn"]:
        lines += ["", "Training repeated on every backend (float32, seed "
                  f"{cfg['seeds'][0]}): held-out MSE, and the worst relative difference from "
                  "the training backend's run (float32 trajectories drift apart by rounding):",
                  "", "| run | " + " | ".join(data["backends"]) + " | worst | same verdict |",
                  "|---" * (len(data["backends"]) + 3) + "|"]
        for key, v in ag["learn"].items():
            lines.append(f"| {key} | " + " | ".join(_fmt(v["mse"].get(b), '.4f')
                                                   for b in data["backends"])
                         + f" | {v['worst']:.1%} | {'yes' if v['same_verdict'] else 'no'} |")
    lines += ["", "## Gradient through time", "", "![](time_norms.png)", "",
              "| cell | T | params | layer | slope (decades/step) | horizon (steps) | "
              "log10 dh_1/dh_T (median; band) |", "|---|---|---|---|---|---|---|"]
    for r in s["time"]:
        lines.append(f"| {r['cell']} | {r['length']} | {r['state']} | {r['layer']} | "
                     f"{r['slope']:.3f} | {_fmt(r['horizon'], 'd')} | "
                     f"{r['log10_first_last']:.1f} ({r['log10_first_last_band'][0]:.1f} .. "
                     f"{r['log10_first_last_band'][1]:.1f}) |")
    lines += ["", "Orders of magnitude by which ||dL/dh_1|| / ||dL/dh_T|| of the gated cells "
              "exceeds the vanilla RNN's:", "", "| T | params | lstm | gru |",
              "|---|---|---|---|"]
    oom = s["orders_of_magnitude"]
    for length, state in dict.fromkeys((r["length"], r["state"]) for r in oom):
        v = {r["cell"]: r["orders"] for r in oom if r["length"] == length and r["state"] == state}
        lines.append(f"| {length} | {state} | {_fmt(v.get('lstm'), '.1f')} | "
                     f"{_fmt(v.get('gru'), '.1f')} |")
    lines += ["", "## Gradient through depth", "", "![](depth_ratio.png)", "",
              "| activation | depth | params | first/last ratio (median; band) | saturated | "
              "dead relu | test R^2 |", "|---|---|---|---|---|---|---|"]
    for r in s["depth"]:
        lines.append(f"| {r['activation']} | {r['depth']} | {r['state']} | {r['ratio']:.3g} "
                     f"({r['ratio_band'][0]:.3g} .. {r['ratio_band'][1]:.3g}) | "
                     f"{r['saturated']:.1%} | {_fmt(r['dead'], '.1%')} | {r['test_r2']:.3f} |")
    lines += ["", "## Whether it learns: the adding problem", "", "![](learn_mse.png)", "",
              f"Budget {cfg['learn_steps']} steps; baseline (always 1.0) MSE {BASELINE_MSE:.3f};"
              f" success: median held-out MSE < {SUCCESS_MSE}.", "",
              "| cell | backend | " + " | ".join(f"T={t}" for t in cfg["lengths"])
              + " | learns up to |", "|---" * (len(cfg["lengths"]) + 3) + "|"]
    for cell in cfg["cells"]:
        rows = {r["length"]: r for r in s["learn"] if r["cell"] == cell}
        cells = [f"{rows[t]['mse']:.4f} {'✓' if rows[t]['success'] else '✗'} "
                 f"({rows[t]['successes']}/{rows[t]['seeds']})" if t in rows else "-"
                 for t in cfg["lengths"]]
        upto = s["learns_up_to"].get(cell)
        lines.append(f"| {cell} | {data['train_backend'][cell]} | " + " | ".join(cells)
                     + f" | {'T=' + str(upto) if upto else 'none'} |")
    lines += ["", "Raw data: `study.json` (everything), `time.csv`, `depth.csv`, `learn.csv`; "
              "the numbers above: `summary.json`.", ""]
    return "\n".join(lines)


#: what a study record must hold for the report (bench.study.run.run_study writes it)
RECORD_KEYS = ("config", "backends", "train_backend", "learn", "time", "depth")


def load_record(path: Path) -> dict:
    """`study.json`, or a one-line `InputError` naming it: unreadable, truncated, not an
    object, or missing what the report reads."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") \
            from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno} "
                         f"({exc.msg}); truncated or corrupt?") from None
    except (RecursionError, ValueError) as exc:
        raise InputError(f"{path}: not a study record ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a study record (the top level must be an object)")
    missing = [k for k in RECORD_KEYS if k not in data]
    if missing:
        raise InputError(f"{path}: not a complete study record (no {missing[0]!r})")
    return data


def write_report(directory: Path) -> Path:
    """REPORT.md, the figures and summary.json from `directory/study.json`."""
    source = directory / "study.json"
    data = load_record(source)
    try:
        s = summarize(data)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise InputError(f"{source}: not a study record this version reads "
                         f"({type(exc).__name__}: {str(exc)[:80]})") from None
    plot_time(data, directory / FIGURES[0])
    plot_depth(s["depth"], directory / FIGURES[1])
    plot_learn(data, s["learn"], directory / FIGURES[2])
    write_text_atomic(directory / "summary.json", json.dumps(s, indent=1) + "\n")
    path = directory / "REPORT.md"
    write_text_atomic(path, markdown(data, s))
    return path
