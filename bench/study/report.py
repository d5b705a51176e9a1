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
from bench.study.config import (
    BASELINE_MSE,
    HORIZON_FRACTION,
    SATURATION,
    SUCCESS_MSE,
    setup_label,
    setup_parts,
)
from bench.study.summary import mse_at, summarize, training_runs

FIGURES = ("time_norms.png", "learn_curves.png", "learn_mse.png", "paper_adding.png",
           "depth_ratio.png")
DPI = 100
#: the sentence every "learns within" statement is written in (tests parse it back)
LEARN_SENTENCE = ("- `{setup}` {phrase} within {budget} steps at T={length} on {backend}: "
                  "{wins} of {n} seeds ({seeds}) reach held-out MSE < {threshold} at step "
                  "{budget} (median {mse}; seeds {lo} .. {hi}).")
PHRASES = {"learns": "learns", "does not learn": "does not learn",
           "not resolved": "is not resolved (some seeds only)"}


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    write_text_atomic(path, buf.getvalue())


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "legend.fontsize": 8})
    return plt


def _state_name(setup: str, layer: str) -> str:
    """What a curve's state is: an LSTM's layer holds (h, c), `<layer> h` the h half."""
    if setup_parts(setup)[0] != "lstm":
        return "h"
    return "h only" if layer.endswith(" h") else "(h, c)"


# ------------------------------------------------------------------ figures
def plot_time(data: dict, s: dict, path: Path) -> None:
    """One panel per (length, setup): ||dL/dh_t|| at init and trained, median over seeds,
    band min..max, every seed a thin line; the spectral radius of W_hh in the title."""
    plt = _plt()
    cfg = data["config"]
    lengths, setups = cfg["time_lengths"], list(cfg["setups"])
    radius = {(r["setup"], r["length"]): r["radius"] for r in s["time"]}
    ncols = min(3, len(setups))
    per_length = -(-len(setups) // ncols)
    fig, axes = plt.subplots(per_length * len(lengths), ncols, squeeze=False,
                             figsize=(4.6 * ncols, 3.5 * per_length * len(lengths)))
    used = {(i * per_length + j // ncols, j % ncols)
            for i in range(len(lengths)) for j in range(len(setups))}
    for (row, col), ax in np.ndenumerate(axes):
        ax.set_visible((row, col) in used)
    for i, length in enumerate(lengths):
        for j, setup in enumerate(setups):
            ax = axes[i * per_length + j // ncols][j % ncols]
            rows = [r for r in data["time"] if r["setup"] == setup and r["length"] == length]
            pairs = [(st, ly) for st in ("init", "trained") for ly in
                     (sorted(rows[0]["curves"][st]) if rows else [])]
            for state, layer in pairs:
                curves = np.array([r["curves"][state][layer] for r in rows])
                t = np.arange(1, curves.shape[1] + 1)
                color = "C0" if state == "init" else "C1"
                style = "--" if layer.endswith(" h") else "-"
                for c in curves:
                    ax.plot(t, c, color=color, lw=0.5, alpha=0.4, ls=style)
                ax.plot(t, np.median(curves, axis=0), color=color, lw=2, ls=style,
                        label=f"{setup} T={length} {state}, {_state_name(setup, layer)}")
            ax.set_yscale("log")
            rho = radius.get((setup, length))
            ax.set_title(f"{setup}, T={length}, ρ(W_hh)={_fmt(rho, '.2f')}", fontsize=10)
            ax.set_xlabel("step t")
            if j % ncols == 0:
                ax.set_ylabel("||dL/dh_t|| (sample mean)")
            ax.legend(loc="lower right")
    fig.suptitle(f"Gradient through time: median of {len(cfg['seeds'])} seeds (thick), "
                 "each seed (thin)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _curve_panel(ax, runs: list[dict], setups: list[str], length: int) -> None:
    for k, setup in enumerate(setups):
        rows = [r for r in runs if r["setup"] == setup and r["length"] == length]
        if not rows:
            continue
        steps = rows[0]["steps"]
        mses = np.array([r["mse"] for r in rows])
        for m in mses:
            ax.plot(steps, m, color=f"C{k}", lw=0.5, alpha=0.5)
        ax.plot(steps, np.median(mses, axis=0), color=f"C{k}", lw=2,
                label=f"{setup}, T={length} ({len(rows)} seeds)")
        ax.fill_between(steps, mses.min(axis=0), mses.max(axis=0), color=f"C{k}", alpha=0.12)
    ax.axhline(BASELINE_MSE, color="grey", ls="--", lw=1, label="always 1.0 (1/6)")
    ax.axhline(SUCCESS_MSE, color="black", ls=":", lw=1, label=f"success < {SUCCESS_MSE}")
    ax.set_yscale("log")
    ax.set_xlabel("training steps")
    ax.set_title(f"T={length}")
    ax.legend(loc="lower left")


def plot_learn_curves(data: dict, path: Path) -> None:
    """Held-out MSE against training steps, one panel per length: every setup's seeds
    (thin), median (thick) and band, on the training backend."""
    plt = _plt()
    cfg = data["config"]
    runs = training_runs(data)
    lengths = sorted({r["length"] for r in runs if r["setup"] in cfg["setups"]
                      and r["length"] in cfg["lengths"]})
    ncols = min(2, len(lengths))
    nrows = -(-len(lengths) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.8 * nrows), sharey=True,
                             squeeze=False)
    for ax in axes.flat[len(lengths):]:
        ax.set_visible(False)
    for ax, length in zip(axes.flat, lengths, strict=False):
        _curve_panel(ax, runs, list(cfg["setups"]), length)
    for row in axes:
        row[0].set_ylabel("held-out MSE")
    fig.suptitle("Adding problem: learning curves (Adam lr "
                 f"{cfg['learn_lr']}, batch {cfg['batch_size']}, hidden {cfg['hidden']})")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_learn(data: dict, path: Path) -> None:
    """Held-out MSE at each budget against T: every seed a point, the median a line; the
    other backends' repeated runs (seed 0) as crosses where their steps reach the budget."""
    plt = _plt()
    cfg = data["config"]
    runs = training_runs(data)
    repeats = [r for r in data["learn"] if r not in runs]
    budgets = cfg["budgets"]
    fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets) + 2.5, 4.8),
                             sharey=True, squeeze=False)
    for ax, budget in zip(axes[0], budgets, strict=True):
        for k, setup in enumerate(cfg["setups"]):
            rows = [r for r in runs if r["setup"] == setup and r["length"] in cfg["lengths"]]
            lengths = sorted({r["length"] for r in rows})
            for j, length in enumerate(lengths):
                ys = [mse_at(r, budget) for r in rows if r["length"] == length]
                ax.plot([length * (1 + 0.03 * (k - 2.5))] * len(ys), ys, "o", color=f"C{k}",
                        ms=4, alpha=0.7, label=f"{setup}, each seed" if j == 0 else None)
            ax.plot(lengths, [np.median([mse_at(r, budget) for r in rows if r["length"] == t])
                              for t in lengths], "-", color=f"C{k}", lw=1.5)
            reps = [r for r in repeats if r["setup"] == setup and r["steps"][-1] >= budget
                    and r["length"] in cfg["lengths"]]
            if reps:
                ax.plot([r["length"] for r in reps], [mse_at(r, budget) for r in reps], "x",
                        color=f"C{k}", ms=9, label=f"{setup}, other backends (seed "
                        f"{cfg['seeds'][0]})")
        ax.axhline(BASELINE_MSE, color="grey", ls="--", lw=1)
        ax.axhline(SUCCESS_MSE, color="black", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_title(f"after {budget} steps")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    axes[0][0].set_ylabel("held-out MSE")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_paper(data: dict, path: Path) -> None:
    """Le et al. 2015's adding problem at its lengths, the paper's setups only."""
    plt = _plt()
    cfg = data["config"]
    runs = training_runs(data)
    lengths = list(cfg["paper_lengths"])
    fig, axes = plt.subplots(1, len(lengths), figsize=(max(8.0, 6 * len(lengths)), 4.8),
                             squeeze=False)
    for ax, length in zip(axes[0], lengths, strict=True):
        _curve_panel(ax, runs, list(cfg["paper_setups"]), length)
    axes[0][0].set_ylabel("held-out MSE")
    fig.suptitle("Le et al. 2015's adding problem, scaled (deviations: REPORT.md)")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_depth(summary: list[dict], path: Path) -> None:
    """Per activation against depth: the gradient ratio (init and trained), the product of
    mean |σ'|, and the held-out R^2 (init and trained), each with its seed band."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    panels = (("ratio", "||dL/dW_first|| / ||dL/dW_last||", True),
              ("deriv_product", "product over layers of mean |σ'|", True),
              ("test_r2", "held-out R^2", False))
    for ax, (key, label, log) in zip(axes, panels, strict=True):
        for k, act in enumerate(dict.fromkeys(r["activation"] for r in summary)):
            for state, style in (("init", "--"), ("trained", "-")):
                rows = [r for r in summary if r["activation"] == act and r["state"] == state]
                d = [r["depth"] for r in rows]
                ax.plot(d, [r[key] for r in rows], "o" + style, color=f"C{k}",
                        label=f"{act}, {state}")
                ax.fill_between(d, [r[f"{key}_band"][0] for r in rows],
                                [r[f"{key}_band"][1] for r in rows], color=f"C{k}", alpha=0.15)
        ax.set_xscale("log", base=2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("hidden layers")
        ax.set_title(label)
        ax.legend()
    fig.suptitle("Gradient through depth (diabetes MLP): dashed at init, solid after training")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return number(x, spec, missing="-")


def _band(b: list[float] | None, spec: str = ".3g") -> str:
    return "-" if b is None else f"{b[0]:{spec}} .. {b[1]:{spec}}"


def _seeds(seeds: list[int]) -> str:
    return ", ".join(str(k) for k in seeds)


# ------------------------------------------------------------------ sections
def _header(data: dict) -> list[str]:
    env = data.get("environment", {})
    return [
        "# nnparity study: gradient flow through time and depth, in every backend",
        "",
        f"Machine: {env.get('cpu', '?')}, {env.get('cores', '?')} cores; "
        f"{env.get('jobs', '?')} worker process(es), one thread each; commit "
        f"`{str(env.get('git_commit', '?'))[:12]}`; {env.get('date', '?')}; "
        f"study took {env.get('seconds', '?')} s. Backends: {', '.join(data['backends'])}.",
        f"Regenerate this report from the raw data: `nnparity study --report DIR`; rerun the "
        f"study: `nnparity study --preset {env.get('preset', 'default')}`.",
        "",
        "**How to read it.** Every interval is min .. max over the seeds named. A difference "
        "between two setups is claimed only where their two seed intervals do not overlap; "
        "otherwise it is reported as *not resolved*. A setup *learns within B steps at T* "
        f"when every seed's held-out MSE at step B is below {SUCCESS_MSE}, *does not learn* "
        "when none is, and is *not resolved* otherwise; these verdicts are of the budget as "
        "much as of the cell.",
        "",
    ]


def _setup(cfg: dict) -> list[str]:
    return [
        "## Setup", "",
        f"- Recurrent task: the adding problem, {cfg['rnn_layers']} recurrent layer(s) of "
        f"{cfg['hidden']} units + dense, Adam lr {cfg['learn_lr']}, batch {cfg['batch_size']}, "
        f"{cfg['n_samples']} samples (20% held out), seeds {list(cfg['seeds'])}, training in "
        f"float32 for {cfg['learn_steps']} steps, the held-out MSE every {cfg['eval_every']} "
        f"steps; budgets read off the curves: {', '.join(map(str, cfg['budgets']))} steps.",
        "- Setups (initialisation from the canonical NumPy parameters, `tasks/params.py`, so "
        "every backend starts from the same values): "
        + "; ".join(f"`{s}` = {setup_label(s)}" for s in dict.fromkeys(
            [*cfg["setups"], *cfg["paper_setups"]]))
        + ". Uniform: W_hh ~ U(±1/sqrt(H)); orthogonal: each gate's block orthogonal; "
        "identity: W_hh = I and recurrent biases 0 with a ReLU activation (the IRNN of Le "
        "et al. 2015; the other vanilla setups are tanh). ρ(W_hh): spectral radius at "
        "init (gated cells: the largest over gate blocks).",
        f"- ||dL/dh_t||: the norm of each held-out sample's own loss gradient w.r.t. the "
        f"recurrent state at step t (every path: output and later steps), averaged over "
        f"{cfg['eval_batch']} samples, in float64 by the NumPy reference at the initial "
        f"parameters and after {cfg['learn_steps']} steps. The state is h_t for rnn and gru; "
        "for lstm it is (h_t, c_t) (rows `(h, c)`), and the h_t half alone is shown too "
        "(rows `h only`). Other backends get it from zero probes added to the state "
        "(`Program.hidden_state_grads`).",
        f"- Slope: least-squares slope of log10 ||dL/dh_t|| against steps back (decades per "
        f"step). Horizon: steps back at which the median norm falls below {HORIZON_FRACTION:g} "
        "of its last-step value (- = never within T).",
        f"- MLPs: diabetes, width {cfg['mlp_hidden']}, depths {list(cfg['depths'])}, "
        f"Glorot-uniform init; gradients of the full training set's MSE in float64 at init "
        f"and after {cfg['depth_steps']} Adam steps (lr {cfg['depth_lr']}, NumPy float32). "
        "Ratio = ||dL/dW|| of the first hidden layer over that of the output layer. "
        "σ' product: product over hidden layers of the mean |activation derivative| "
        f"(sigmoid's σ' <= 1/4). Saturated: share of (sample, unit) pairs whose sigmoid/tanh "
        f"derivative is below {SATURATION:.0%} of its maximum (relu: share of inactive "
        "pairs); dead: relu units inactive on every training sample.",
        "",
    ]


def _backends(data: dict) -> list[str]:
    cfg = data["config"]
    lines = ["## Training backend", "",
             "A short float32 training run per cell and backend (T="
             f"{cfg['speed_length']}): milliseconds per step after two warm-up steps, and "
             "the seconds of building the program and those warm-up steps (a compiler's "
             "start-up, paid by every training job). The chosen backend has the least "
             f"start-up + {cfg['learn_steps']} steps. Measured on the machine as it was; "
             "a loaded machine makes this choice noisy.", ""]
    if data["speed"]:
        backends = list(dict.fromkeys(r["backend"] for r in data["speed"]))
        lines += ["| cell | " + " | ".join(backends) + " | chosen |",
                  "|---" * (len(backends) + 2) + "|"]
        for cell in data["train_backend"]:
            rows = {r["backend"]: r for r in data["speed"] if r["cell"] == cell}
            lines.append(f"| {cell} | " + " | ".join(
                f"{rows[b]['seconds_per_step'] * 1e3:.1f} ms; "
                f"{_fmt(rows[b].get('warmup_seconds'), '.1f')} s" for b in backends)
                + f" | {data['train_backend'][cell]} |")
    else:
        lines.append("(not measured in this run: every cell trained on "
                     f"{next(iter(data['train_backend'].values()))}, chosen with "
                     "`--train-backend`)")
    return [*lines, ""]


def _agreement(data: dict, ag: dict) -> list[str]:
    cfg = data["config"]
    lines = ["## Do the backends agree?", "",
             "Worst pointwise relative difference from the NumPy float64 reference, at the "
             f"initial and trained parameters of seed {cfg['seeds'][0]}, every setup (time: "
             "every step of every curve; depth: every layer's weight-gradient norm):", "",
             "| backend | dtype | gradient through time | gradient through depth |",
             "|---|---|---|---|"]
    for key in sorted(set(ag["time"]) | set(ag["depth"])):
        b, dt = key.split()
        lines.append(f"| {b} | {dt} | {_fmt(ag['time'].get(key), '.1e')} | "
                     f"{_fmt(ag['depth'].get(key), '.1e')} |")
    if ag["learn"]:
        lines += ["", f"Training repeated on every backend (float32, seed {cfg['seeds'][0]}, "
                  f"the first {cfg['repeat_steps']} steps): held-out MSE at the last of them, "
                  "and the worst relative difference of the whole learning curve from the "
                  "training backend's (float32 trajectories drift apart by rounding):", "",
                  "| run | " + " | ".join(data["backends"]) + " | worst | same verdict |",
                  "|---" * (len(data["backends"]) + 3) + "|"]
        for key, v in ag["learn"].items():
            lines.append(f"| {key} | " + " | ".join(_fmt(v["mse"].get(b), '.4f')
                                                   for b in data["backends"])
                         + f" | {v['worst']:.1%} | {'yes' if v['same_verdict'] else 'no'} |")
    return [*lines, ""]


def learn_statements(rows: list[dict]) -> list[str]:
    """One sentence per (setup, length, budget), in LEARN_SENTENCE."""
    return [LEARN_SENTENCE.format(
        setup=r["setup"], phrase=PHRASES[r["verdict"]], budget=r["budget"],
        length=r["length"], backend=r["backend"], wins=r["successes"], n=len(r["seeds"]),
        seeds=_seeds(r["seeds"]), threshold=SUCCESS_MSE, mse=f"{r['mse']:.4f}",
        lo=f"{r['mse_band'][0]:.4f}", hi=f"{r['mse_band'][1]:.4f}") for r in rows]


def _steps_to_success(r: dict, last: int) -> str:
    hits = [h for h in r["steps_to_success"] if h is not None]
    never = len(r["steps_to_success"]) - len(hits)
    if not hits:
        return f"none within {last}"
    text = f"median {np.median(hits):.0f}; {_band(r['steps_to_success_band'], '.0f')}"
    return text + (f"; {never} never within {last}" if never else "")


def _comparison_lines(comps: list[dict], what: str, spec: str) -> list[str]:
    lines = []
    for c in comps:
        head = (f"- `{c['setup']}` vs `{c['reference']}` at T={c['length']}"
                + (f" after {c['budget']} steps" if "budget" in c else f", {c['state']}")
                + f": {what} {_band(c['band'], spec)} vs {_band(c['reference_band'], spec)}")
        if c.get("zero_seeds"):
            verdict = (f"not comparable: the gradient at step 1 is exactly 0 in "
                       f"{c['zero_seeds']} seed run(s) (below the smallest float64), so a log "
                       "ratio there is a floor, not a measurement")
        elif "orders" in c:
            verdict = (f"`{c['setup']}` exceeds by {c['orders']:.1f} orders (per-seed "
                       f"differences {_band(c['orders_band'], '.1f')})"
                       if c["resolved"] and c["orders"] > 0 else
                       f"`{c['setup']}` falls short by {-c['orders']:.1f} orders (per-seed "
                       f"differences {_band(c['orders_band'], '.1f')})"
                       if c["resolved"] else "not resolved (the intervals overlap; per-seed "
                       f"differences {_band(c['orders_band'], '.1f')})")
        elif c["both_at_baseline"]:
            above = [name for name, b in ((c["setup"], c["band"]),
                                          (c["reference"], c["reference_band"]))
                     if b[0] > 2 * BASELINE_MSE]
            verdict = ("both failed (every seed's MSE above half of the 0.167 baseline"
                       + (f"; {' and '.join(f'`{n}`' for n in above)} diverged: every seed "
                          "above twice the baseline of always predicting 1.0" if above else "")
                       + "); no difference is claimed between two failures")
        else:
            verdict = (f"`{c['better']}` lower (resolved; per-seed differences "
                       f"{_band(c['difference_band'], '.4f')})" if c["resolved"]
                       else "not resolved (the intervals overlap; per-seed differences "
                       f"{_band(c['difference_band'], '.4f')})")
        lines.append(f"{head}: {verdict}.")
    return lines


def _learning(data: dict, s: dict) -> list[str]:
    cfg = data["config"]
    main = [r for r in s["learn"] if r["length"] in cfg["lengths"] and r["setup"] in cfg["setups"]]
    lines = ["## Whether it learns: the adding problem", "",
             "![](learn_curves.png)", "", "![](learn_mse.png)", "",
             f"Baseline (always 1.0) MSE {BASELINE_MSE:.3f}; success: held-out MSE < "
             f"{SUCCESS_MSE} at the budget's step, per seed.", "",
             *learn_statements(main), "",
             "| setup | T | budget | held-out MSE median (seeds min .. max) | successes | "
             f"steps to MSE < {SUCCESS_MSE} |", "|---|---|---|---|---|---|"]
    for r in main:
        lines.append(f"| {r['setup']} | {r['length']} | {r['budget']} | {r['mse']:.4f} "
                     f"({_band(r['mse_band'], '.4f')}) | {r['successes']}/{len(r['seeds'])} | "
                     f"{_steps_to_success(r, cfg['learn_steps'])} |")
    comps = [c for c in s["learn_comparisons"] if c["length"] in cfg["lengths"]
             and c["budget"] == cfg["budgets"][-1]]
    lines += ["", f"Setups compared after {cfg['budgets'][-1]} steps (held-out MSE intervals "
              "over seeds):", "", *_comparison_lines(comps, "MSE", ".4f"), ""]
    return lines


#: Le et al. 2015 (arXiv:1504.00941), section 4.1, Figure 2, as this report's authors
#: recall it; the figure is curves, not a table, so its numbers are read-offs
PAPER = {
    "source": "Le, Jaitly & Hinton 2015, \"A Simple Way to Initialize Recurrent Networks of "
              "Rectified Linear Units\", section 4.1 (adding problem), Figure 2 (test MSE "
              "against training steps at T = 150, 200, 300, 400)",
    "setup": "100 hidden units; 100,000 training and 10,000 test sequences; SGD with gradient "
             "clipping, learning rate chosen from a small grid per model; IRNN = ReLU RNN "
             "with W_hh = I and zero biases",
    "results": {
        "rnn": "tanh RNN: stays at the 0.167 baseline (does not learn) at every length shown",
        "rnn-identity": "IRNN: reaches a test MSE near 0, converging about as fast as the LSTM",
        "lstm": "LSTM: reaches a test MSE near 0 at T=150 and 200",
    },
}


def _paper(data: dict, s: dict) -> list[str]:
    cfg = data["config"]
    rows = [r for r in s["learn"] if r["paper"] and r["length"] in cfg["paper_lengths"]]
    lines = ["## A published result reproduced: Le et al. 2015, the adding problem", "",
             "![](paper_adding.png)", "",
             f"Source: {PAPER['source']}. Their setup: {PAPER['setup']}. What they report, "
             "as recalled by this study's authors and not re-read for this run (the paper "
             "gives curves, no table of numbers, for this task; check its Figure 2 before "
             "citing these):", ""]
    lines += [f"- `{k}`: {v}" for k, v in PAPER["results"].items()]
    lines += ["", "Deviations here: hidden "
              f"{cfg['hidden']} (theirs 100); {int(cfg['n_samples'] * 0.8)} training sequences "
              f"(theirs 100,000); Adam lr {cfg['learn_lr']}, batch {cfg['batch_size']}, no "
              "clipping (theirs SGD with clipping); "
              f"{cfg['learn_steps']} steps (theirs: many more, see their Figure 2's step "
              "axis); lengths "
              f"{list(cfg['paper_lengths'])}; {len(cfg['seeds'])} seeds; trained on the "
              "fastest backend, the first "
              f"{cfg['repeat_steps']} steps repeated on every backend (see the agreement "
              "section).", "",
              "| setup | T | budget | ours: held-out MSE median (seeds) | successes | "
              "Le et al. 2015 |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setup']} | {r['length']} | {r['budget']} | {r['mse']:.4f} "
                     f"({_band(r['mse_band'], '.4f')}) | {r['successes']}/{len(r['seeds'])} | "
                     f"{PAPER['results'].get(r['setup'], '-').split(': ', 1)[-1]} |")
    lines += ["", *learn_statements(rows), ""]
    comps = [c for c in s["learn_comparisons"] if c["length"] in cfg["paper_lengths"]
             and c["budget"] == cfg["budgets"][-1]]
    return [*lines, *_comparison_lines(comps, "MSE", ".4f"), ""]


def _through_time(data: dict, s: dict) -> list[str]:
    lines = ["## Gradient through time", "", "![](time_norms.png)", "",
             "| setup | T | params | state | ρ(W_hh) at init | slope (decades/step) | "
             "horizon (steps) | log10 dh_1/dh_T (median; seeds) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in s["time"]:
        lines.append(f"| {r['setup']} | {r['length']} | {r['state']} | {r['layer']}: "
                     f"{_state_name(r['setup'], r['layer'])} | {_fmt(r['radius'], '.3f')} | "
                     f"{r['slope']:.3f} | {_fmt(r['horizon'], 'd')} | "
                     f"{r['log10_first_last']:.1f} ({_band(r['log10_first_last_band'], '.1f')})"
                     + (f"; exactly 0 at step 1 in {r['zero_seeds']} of {len(r['seeds'])} seeds"
                        if r.get("zero_seeds") else "") + " |")
    lines += ["", "log10 ||dL/dh_1|| / ||dL/dh_T|| compared between setups (the lstm's state "
              "(h, c); per-seed differences paired by seed):", "",
              *_comparison_lines(s["time_comparisons"], "log10 ratio", ".1f"), ""]
    return lines


def _through_depth(s: dict) -> list[str]:
    lines = ["## Gradient through depth", "", "![](depth_ratio.png)", "",
             "| activation | depth | params | first/last ratio (median; seeds) | σ' product "
             "(median; seeds) | saturated | dead relu | held-out R^2 at these params "
             "(median; seeds) |", "|---|---|---|---|---|---|---|---|"]
    for r in s["depth"]:
        lines.append(f"| {r['activation']} | {r['depth']} | {r['state']} | {r['ratio']:.3g} "
                     f"({_band(r['ratio_band'])}) | {r['deriv_product']:.3g} "
                     f"({_band(r['deriv_product_band'])}) | {r['saturated']:.1%} | "
                     f"{_fmt(r['dead'], '.1%')} | {r['test_r2']:.3f} "
                     f"({_band(r['test_r2_band'], '.3f')}) |")
    lines += ["", "Three effects are separated: derivative shrinkage (the σ' product: sigmoid's "
              "σ' is at most 1/4, so each layer scales the backward signal by a quarter or "
              "less unless its weights amplify it, with no unit saturated), saturation "
              "(derivatives near 0) and dead relu units. Read with the ratio:", ""]
    for f in s["depth_findings"]:
        if f["shrinkage_not_saturation"]:
            lines.append(f"- {f['activation']}: at depth {f['to_depth']} the gradient ratio is "
                         f"{_band(f['deep_ratio_band'])} with {f['deep_saturated']:.1%} "
                         "saturated units: derivative shrinkage (σ' product "
                         f"{_band(f['deep_deriv_product_band'])}), not saturation.")
        if f["r2_falls"] and f["gradient_within_decade"]:
            text = (f"held-out R^2 falls from {_band(f['r2_band'], '.3f')} at depth "
                    f"{f['from_depth']} to {_band(f['deep_r2_band'], '.3f')} at depth "
                    f"{f['to_depth']} while its gradient ratio stays within a decade of 1 "
                    f"({_band(f['deep_ratio_band'])}): that loss of accuracy is not a "
                    "vanishing-gradient problem.")
        elif f["r2_falls"]:
            text = (f"held-out R^2 falls from {_band(f['r2_band'], '.3f')} to "
                    f"{_band(f['deep_r2_band'], '.3f')} (depth {f['from_depth']} to "
                    f"{f['to_depth']}) and its gradient ratio leaves the decade around 1 "
                    f"({_band(f['deep_ratio_band'])}): consistent with a gradient problem.")
        else:
            text = (f"held-out R^2 at depth {f['from_depth']} {_band(f['r2_band'], '.3f')} vs "
                    f"{f['to_depth']} {_band(f['deep_r2_band'], '.3f')}: no resolved fall "
                    "with depth.")
        lines.append(f"- {f['activation']}: {text}")
    return [*lines, ""]


def markdown(data: dict, s: dict[str, Any]) -> str:
    lines = [*_header(data), *_setup(data["config"]), *_backends(data),
             *_agreement(data, s["agreement"]), *_learning(data, s), *_paper(data, s),
             *_through_time(data, s), *_through_depth(s),
             "Raw data: `study.json` (everything), `time.csv`, `depth.csv`, `learn.csv` (the "
             "learning curves); the numbers above: `summary.json`.", ""]
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
    plot_time(data, s, directory / FIGURES[0])
    plot_learn_curves(data, directory / FIGURES[1])
    plot_learn(data, directory / FIGURES[2])
    plot_paper(data, directory / FIGURES[3])
    plot_depth(s["depth"], directory / FIGURES[4])
    write_text_atomic(directory / "summary.json", json.dumps(s, indent=1) + "\n")
    path = directory / "REPORT.md"
    write_text_atomic(path, markdown(data, s))
    return path
