"""The quotable numbers of a study, computed from its raw data alone.

Per cell and length: the fitted decay per step of log10 ||dL/dh_t|| and the
horizon; per cell the log10 of ||dL/dh_1|| / ||dL/dh_T||; per activation and
depth the first-to-last layer weight-gradient ratio; per cell and length the
held-out MSE and whether it beats `SUCCESS_MSE`; per study the worst relative
difference between backends. Medians are over seeds, bands are min..max.
Pure NumPy over the dicts that `run` writes; nothing is measured here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.study.config import HORIZON_FRACTION, SUCCESS_MSE


def decay_slope(curve: np.ndarray) -> float:
    """Least-squares slope of log10 ||dL/dh_t|| against steps back from the last step
    (decades per step; negative: the gradient vanishes going back in time)."""
    back = np.arange(len(curve))
    logs = np.log10(np.maximum(curve[::-1], np.finfo(float).tiny))
    return float(np.polyfit(back, logs, 1)[0])


def horizon(curve: np.ndarray) -> int | None:
    """Steps back at which the norm first falls below HORIZON_FRACTION of the last
    step's; None when it never does within the sequence."""
    below = np.nonzero(curve[::-1] < HORIZON_FRACTION * curve[-1])[0]
    return int(below[0]) if len(below) else None


def time_summary(data: dict) -> list[dict[str, Any]]:
    """Per (cell, length, state, layer): median curve, slope, horizon, log10 first/last."""
    out = []
    keys = sorted({(r["cell"], r["length"]) for r in data["time"]},
                  key=lambda k: (data["config"]["cells"].index(k[0]), k[1]))
    for cell, length in keys:
        rows = [r for r in data["time"] if r["cell"] == cell and r["length"] == length]
        for state in ("init", "trained"):
            for layer in sorted(rows[0]["curves"][state]):
                curves = np.array([r["curves"][state][layer] for r in rows])
                median = np.median(curves, axis=0)
                ratios = np.log10(np.maximum(curves[:, 0], np.finfo(float).tiny) / curves[:, -1])
                out.append({
                    "cell": cell, "length": length, "state": state, "layer": layer,
                    "seeds": len(rows),
                    "slope": decay_slope(median),
                    "horizon": horizon(median),
                    "log10_first_last": float(np.median(ratios)),
                    "log10_first_last_band": [float(ratios.min()), float(ratios.max())],
                })
    return out


def orders_of_magnitude(time_rows: list[dict], state: str = "init") -> list[dict[str, Any]]:
    """Per length: log10(dh_1/dh_T) of each gated cell minus the vanilla RNN's (last layer)."""
    out = []
    by = {(r["cell"], r["length"]): r for r in time_rows
          if r["state"] == state and r["layer"] == max(x["layer"] for x in time_rows)}
    for length in sorted({k[1] for k in by}):
        if ("rnn", length) not in by:
            continue
        base = by[("rnn", length)]["log10_first_last"]
        for cell in ("lstm", "gru"):
            if (cell, length) in by:
                out.append({"length": length, "cell": cell, "state": state,
                            "orders": by[(cell, length)]["log10_first_last"] - base})
    return out


def depth_summary(data: dict) -> list[dict[str, Any]]:
    """Per (activation, depth, state): first-to-last layer weight-gradient ratio (median
    and band over seeds) and the mean saturated / dead share over hidden layers."""
    out = []
    cfg = data["config"]
    for act in cfg["activations"]:
        for d in cfg["depths"]:
            rows = [r for r in data["depth"] if r["activation"] == act and r["depth"] == d]
            if not rows:
                continue
            for state in ("init", "trained"):
                ratios = np.array([r[state]["grad_norms"][0] / r[state]["grad_norms"][-1]
                                   for r in rows])
                units = [u for r in rows for u in r[state]["units"]]
                out.append({
                    "activation": act, "depth": d, "state": state, "seeds": len(rows),
                    "ratio": float(np.median(ratios)),
                    "ratio_band": [float(ratios.min()), float(ratios.max())],
                    "saturated": float(np.mean([u["saturated"] for u in units])),
                    "dead": float(np.mean([u["dead"] for u in units])) if act == "relu" else None,
                    "test_r2": float(np.median([r["test_r2"] for r in rows])),
                })
    return out


def learn_summary(data: dict) -> list[dict[str, Any]]:
    """Per (cell, length) on the training backend: test MSE over seeds and success."""
    out = []
    cfg = data["config"]
    for cell in cfg["cells"]:
        backend = data["train_backend"][cell]
        for length in cfg["lengths"]:
            mses = np.array([r["test_mse"] for r in data["learn"] if r["cell"] == cell
                             and r["length"] == length and r["backend"] == backend])
            if not len(mses):
                continue
            out.append({
                "cell": cell, "length": length, "backend": backend, "seeds": len(mses),
                "mse": float(np.median(mses)), "mse_band": [float(mses.min()), float(mses.max())],
                "successes": int(np.sum(mses < SUCCESS_MSE)),
                "success": bool(np.median(mses) < SUCCESS_MSE),
            })
    return out


def learns_up_to(learn_rows: list[dict]) -> dict[str, int | None]:
    """Per cell, the longest length up to which every length is a success (None: not even
    the shortest)."""
    out: dict[str, int | None] = {}
    for cell in dict.fromkeys(r["cell"] for r in learn_rows):
        best = None
        for r in sorted((r for r in learn_rows if r["cell"] == cell), key=lambda r: r["length"]):
            if not r["success"]:
                break
            best = r["length"]
        out[cell] = best
    return out


def _rel(value: np.ndarray, ref: np.ndarray) -> float:
    value, ref = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(value - ref) / np.abs(ref)))


def agreement(data: dict) -> dict[str, Any]:
    """Worst pointwise relative difference from the NumPy float64 reference, per study
    and dtype (time: every step of every curve; depth: every layer's norm), and per
    cell the spread of the repeated training runs' test MSE across backends."""
    out: dict[str, Any] = {"time": {}, "depth": {}, "learn": {}}
    ref = {(r["cell"], r["length"], r["seed"]): r for r in data["time"]}
    for r in data["time_agreement"]:
        base = ref[(r["cell"], r["length"], r["seed"])]
        for state, layers in r["curves"].items():
            for layer, curve in layers.items():
                err = _rel(curve, base["curves"][state][layer])
                key = f"{r['backend']} {r['dtype']}"
                out["time"][key] = max(out["time"].get(key, 0.0), err)
    dref = {(r["activation"], r["depth"], r["seed"]): r for r in data["depth"]}
    for r in data["depth_agreement"]:
        base = dref[(r["activation"], r["depth"], r["seed"])]
        for state, norms in r["grad_norms"].items():
            err = _rel(norms, base[state]["grad_norms"])
            key = f"{r['backend']} {r['dtype']}"
            out["depth"][key] = max(out["depth"].get(key, 0.0), err)
    cfg = data["config"]
    for cell in cfg["cells"]:
        for length in cfg["repeat_lengths"]:
            rows = [r for r in data["learn"] if r["cell"] == cell and r["length"] == length
                    and r["seed"] == cfg["seeds"][0]]
            if len(rows) < 2:
                continue
            chosen = next(r for r in rows if r["backend"] == data["train_backend"][cell])
            out["learn"][f"{cell} T={length}"] = {
                "mse": {r["backend"]: r["test_mse"] for r in rows},
                "worst": max(abs(r["test_mse"] - chosen["test_mse"]) / chosen["test_mse"]
                             for r in rows),
                "same_verdict": len({r["test_mse"] < SUCCESS_MSE for r in rows}) == 1,
            }
    return out


def summarize(data: dict) -> dict[str, Any]:
    time_rows = time_summary(data)
    learn_rows = learn_summary(data)
    return {
        "time": time_rows,
        "orders_of_magnitude": orders_of_magnitude(time_rows, "init")
        + orders_of_magnitude(time_rows, "trained"),
        "depth": depth_summary(data),
        "learn": learn_rows,
        "learns_up_to": learns_up_to(learn_rows),
        "agreement": agreement(data),
    }
