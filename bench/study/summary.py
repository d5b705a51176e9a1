"""The quotable numbers of a study, computed from its raw data alone.

Per setup and length: the fitted decay per step of log10 ||dL/dh_t||, the horizon
and log10 ||dL/dh_1|| / ||dL/dh_T|| per seed; per pair of setups the per-seed
difference of that ratio; per setup, length and budget the held-out MSE of each
seed at that step, the steps to success and the verdict; per activation and depth
the first-to-last layer weight-gradient ratio beside the product of the layers'
mean |activation derivative|; per study the worst difference between backends.
Every interval is min..max over seeds. A comparison is *resolved* only where the
two seed intervals do not overlap; otherwise the report says it is not resolved.
Pure NumPy over the dicts that `run` writes; nothing is measured here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.study.config import BASELINE_MSE, HORIZON_FRACTION, SUCCESS_MSE

TINY = np.finfo(float).tiny
#: a held-out MSE above this (half the always-1.0 baseline) has learnt next to nothing
NEAR_BASELINE = BASELINE_MSE / 2
#: the pairs the report compares (setup, reference), where both were run
PAIRS = (("lstm", "rnn"), ("gru", "rnn"), ("gru", "lstm"), ("rnn-orthogonal", "rnn"),
         ("rnn-identity", "rnn"), ("lstm-fb0", "lstm"), ("lstm-orthogonal", "lstm"),
         ("gru-orthogonal", "gru"))


def decay_slope(curve: np.ndarray) -> float:
    """Least-squares slope of log10 ||dL/dh_t|| against steps back from the last step
    (decades per step; negative: the gradient vanishes going back in time)."""
    back = np.arange(len(curve))
    logs = np.log10(np.maximum(curve[::-1], TINY))
    return float(np.polyfit(back, logs, 1)[0])


def horizon(curve: np.ndarray) -> int | None:
    """Steps back at which the norm first falls below HORIZON_FRACTION of the last
    step's; None when it never does within the sequence."""
    below = np.nonzero(curve[::-1] < HORIZON_FRACTION * curve[-1])[0]
    return int(below[0]) if len(below) else None


def band(values) -> list[float]:
    """The interval min..max of a seed sample."""
    values = np.asarray(values, np.float64)
    return [float(values.min()), float(values.max())]


def resolved(a: list[float], b: list[float]) -> bool:
    """Whether two intervals are apart: the only case in which a difference is claimed."""
    return a[1] < b[0] or b[1] < a[0]


def learn_verdict(mses: list[float], threshold: float = SUCCESS_MSE) -> str:
    """The rule for "learns within B steps at T": every seed's held-out MSE at step B is
    below the threshold -> "learns"; none -> "does not learn"; else "not resolved"."""
    wins = sum(m < threshold for m in mses)
    return "learns" if wins == len(mses) else "does not learn" if wins == 0 \
        else "not resolved"


def last_layer(data: dict) -> str:
    return f"rnn{data['config']['rnn_layers'] - 1}"


# ----------------------------------------------------------------- through time
def time_summary(data: dict) -> list[dict[str, Any]]:
    """Per (setup, length, state, layer): slope and horizon of the median curve, and
    log10 first/last per seed with its median and band; the spectral radius of W_hh."""
    out = []
    cfg = data["config"]
    radius = {(r["setup"], r["length"], r["seed"]): r["radius"] for r in data["learn"]
              if r["backend"] == data["train_backend"][r["cell"]]}
    keys = sorted({(r["setup"], r["length"]) for r in data["time"]},
                  key=lambda k: (cfg["setups"].index(k[0]) if k[0] in cfg["setups"] else 99,
                                 k[1]))
    for setup, length in keys:
        rows = sorted((r for r in data["time"] if r["setup"] == setup and r["length"] == length),
                      key=lambda r: r["seed"])
        radii = [radius[(setup, length, r["seed"])] for r in rows
                 if (setup, length, r["seed"]) in radius]
        for state in ("init", "trained"):
            for layer in sorted(rows[0]["curves"][state]):
                curves = np.array([r["curves"][state][layer] for r in rows])
                median = np.median(curves, axis=0)
                ratios = np.log10(np.maximum(curves[:, 0], TINY) / curves[:, -1])
                out.append({
                    "setup": setup, "length": length, "state": state, "layer": layer,
                    "seeds": [r["seed"] for r in rows],
                    "slope": decay_slope(median),
                    "horizon": horizon(median),
                    "log10_first_last_by_seed": ratios.tolist(),
                    "log10_first_last": float(np.median(ratios)),
                    "log10_first_last_band": band(ratios),
                    # seeds whose gradient at step 1 underflowed to 0 (every ReLU unit
                    # inactive, for one): their log ratio is the floor, not a measurement
                    "zero_seeds": int(np.sum(curves[:, 0] <= TINY)),
                    "radius": float(np.median(radii)) if radii else None,
                    "radius_band": band(radii) if radii else None,
                })
    return out


def time_comparisons(time_rows: list[dict], layer: str) -> list[dict[str, Any]]:
    """Per pair, length and state: log10 first/last of the setup minus the reference's,
    per seed (paired by seed), and whether the two seed intervals are apart."""
    by = {(r["setup"], r["length"], r["state"]): r for r in time_rows if r["layer"] == layer}
    out = []
    for setup, ref in PAIRS:
        for (s, length, state), a in by.items():
            b = by.get((ref, length, state))
            if s != setup or b is None:
                continue
            seeds = sorted(set(a["seeds"]) & set(b["seeds"]))
            va = dict(zip(a["seeds"], a["log10_first_last_by_seed"], strict=True))
            vb = dict(zip(b["seeds"], b["log10_first_last_by_seed"], strict=True))
            diffs = [va[k] - vb[k] for k in seeds]
            out.append({
                "setup": setup, "reference": ref, "length": length, "state": state,
                "layer": layer, "seeds": seeds,
                "orders": float(np.median(diffs)), "orders_band": band(diffs),
                "band": a["log10_first_last_band"], "reference_band": b["log10_first_last_band"],
                "resolved": resolved(a["log10_first_last_band"], b["log10_first_last_band"]),
                "zero_seeds": int(a.get("zero_seeds", 0)) + int(b.get("zero_seeds", 0)),
            })
    return out


# ----------------------------------------------------------------- learning
def training_runs(data: dict) -> list[dict]:
    """The learn runs on their cell's training backend (the repeats excluded)."""
    return [r for r in data["learn"] if r["backend"] == data["train_backend"][r["cell"]]]


def mse_at(run: dict, step: int) -> float:
    return run["mse"][run["steps"].index(step)]


def steps_to_success(run: dict, threshold: float = SUCCESS_MSE) -> int | None:
    """The first evaluated step with held-out MSE below the threshold (None: never)."""
    return next((s for s, m in zip(run["steps"], run["mse"], strict=True) if m < threshold),
                None)


def learn_summary(data: dict) -> list[dict[str, Any]]:
    """Per (setup, length, budget) on the training backend: every seed's held-out MSE at
    the budget, its median and band, the verdict, and the steps to success."""
    cfg = data["config"]
    runs = training_runs(data)
    out = []
    keys = dict.fromkeys((r["setup"], r["length"]) for r in runs)
    for setup, length in sorted(keys, key=lambda k: (setup_order(cfg, k[0]), k[1])):
        rows = sorted((r for r in runs if r["setup"] == setup and r["length"] == length),
                      key=lambda r: r["seed"])
        hits = [steps_to_success(r) for r in rows]
        reached = [h for h in hits if h is not None]
        for budget in cfg["budgets"]:
            mses = [mse_at(r, budget) for r in rows]
            out.append({
                "setup": setup, "length": length, "budget": budget,
                "backend": rows[0]["backend"], "seeds": [r["seed"] for r in rows],
                "mse_by_seed": mses, "mse": float(np.median(mses)), "mse_band": band(mses),
                "successes": int(sum(m < SUCCESS_MSE for m in mses)),
                "verdict": learn_verdict(mses),
                "steps_to_success": hits,
                "steps_to_success_band": band(reached) if reached else None,
                "paper": setup in cfg["paper_setups"] and length in cfg["paper_lengths"],
            })
    return out


def setup_order(cfg: dict, setup: str) -> int:
    order = list(cfg["setups"]) + [s for s in cfg["paper_setups"] if s not in cfg["setups"]]
    return order.index(setup)


def learn_comparisons(learn_rows: list[dict]) -> list[dict[str, Any]]:
    """Per pair, length and budget: the two setups' held-out MSE intervals, the per-seed
    difference (paired by seed), whether the intervals are apart, and whether both are
    at the baseline (then no difference is claimed)."""
    by = {(r["setup"], r["length"], r["budget"]): r for r in learn_rows}
    out = []
    for setup, ref in PAIRS:
        for (s, length, budget), a in by.items():
            b = by.get((ref, length, budget))
            if s != setup or b is None:
                continue
            va = dict(zip(a["seeds"], a["mse_by_seed"], strict=True))
            vb = dict(zip(b["seeds"], b["mse_by_seed"], strict=True))
            diffs = [va[k] - vb[k] for k in sorted(set(va) & set(vb))]
            out.append({"setup": setup, "reference": ref, "length": length, "budget": budget,
                        "band": a["mse_band"], "reference_band": b["mse_band"],
                        "difference_band": band(diffs),
                        "resolved": resolved(a["mse_band"], b["mse_band"]),
                        # every seed of both within a factor 2 of the always-1.0 baseline:
                        # two failures, not compared
                        "both_at_baseline": min(a["mse_band"][0], b["mse_band"][0])
                        > NEAR_BASELINE,
                        "better": setup if a["mse_band"][1] < b["mse_band"][0] else ref})
    return out


# ----------------------------------------------------------------- through depth
def depth_summary(data: dict) -> list[dict[str, Any]]:
    """Per (activation, depth, state): first-to-last layer weight-gradient ratio, the
    product over hidden layers of mean |activation derivative| (median and band over
    seeds), the mean saturated / dead share, and the held-out R^2 at those parameters."""
    out = []
    cfg = data["config"]
    for act in cfg["activations"]:
        for d in cfg["depths"]:
            rows = [r for r in data["depth"] if r["activation"] == act and r["depth"] == d]
            if not rows:
                continue
            for state in ("init", "trained"):
                ratios = [r[state]["grad_norms"][0] / r[state]["grad_norms"][-1] for r in rows]
                products = [float(np.prod([u["mean_deriv"] for u in r[state]["units"]]))
                            for r in rows]
                units = [u for r in rows for u in r[state]["units"]]
                r2 = [r["init_r2"] if state == "init" else r["test_r2"] for r in rows]
                out.append({
                    "activation": act, "depth": d, "state": state, "seeds": len(rows),
                    "ratio": float(np.median(ratios)), "ratio_band": band(ratios),
                    "deriv_product": float(np.median(products)),
                    "deriv_product_band": band(products),
                    "saturated": float(np.mean([u["saturated"] for u in units])),
                    "dead": float(np.mean([u["dead"] for u in units])) if act == "relu" else None,
                    "test_r2": float(np.median(r2)), "test_r2_band": band(r2),
                })
    return out


def depth_findings(depth_rows: list[dict]) -> list[dict[str, Any]]:
    """Per activation, shallowest vs deepest after training: whether R^2 falls (the
    intervals apart) and whether the gradient ratio stays within a decade of 1 (then
    the loss of accuracy is not a vanishing-gradient problem)."""
    out = []
    for act in dict.fromkeys(r["activation"] for r in depth_rows):
        rows = sorted((r for r in depth_rows if r["activation"] == act
                       and r["state"] == "trained"), key=lambda r: r["depth"])
        if len(rows) < 2:
            continue
        first, last = rows[0], rows[-1]
        falls = first["test_r2_band"][0] > last["test_r2_band"][1]
        gradient_ok = 0.1 <= last["ratio_band"][0] and last["ratio_band"][1] <= 10.0
        out.append({"activation": act, "from_depth": first["depth"], "to_depth": last["depth"],
                    "r2_band": first["test_r2_band"], "deep_r2_band": last["test_r2_band"],
                    "deep_ratio_band": last["ratio_band"], "r2_falls": falls,
                    "gradient_within_decade": gradient_ok,
                    "deep_deriv_product_band": last["deriv_product_band"],
                    "deep_saturated": last["saturated"], "deep_dead": last["dead"],
                    # the ratio vanishes with (almost) no saturated or dead unit: the
                    # derivatives' size (sigmoid's σ' <= 1/4), not saturation, shrinks it
                    "shrinkage_not_saturation": last["ratio_band"][1] < 0.1
                    and last["saturated"] < 0.01 and not last["dead"]})
    return out


# ----------------------------------------------------------------- agreement
def _rel(value: np.ndarray, ref: np.ndarray) -> float:
    """The worst pointwise relative difference; where the reference is exactly 0 the
    value must be exactly 0 too (0 then, inf otherwise), never a silent NaN."""
    value, ref = np.asarray(value, np.float64), np.asarray(ref, np.float64)
    diff = np.abs(value - ref)
    zero = ref == 0
    rel = np.divide(diff, np.abs(ref), out=np.zeros_like(diff), where=~zero)
    rel[zero & (diff > 0)] = np.inf
    rel[~np.isfinite(value)] = np.inf
    return float(np.max(rel)) if rel.size else 0.0


def agreement(data: dict) -> dict[str, Any]:
    """Worst pointwise relative difference from the NumPy float64 reference, per study
    and dtype (time: every step of every curve; depth: every layer's norm), and per
    repeated run the worst relative difference of its learning curve from the training
    backend's over the repeated steps, with the verdict at the last of them."""
    out: dict[str, Any] = {"time": {}, "depth": {}, "learn": {}}
    ref = {(r["setup"], r["length"], r["seed"]): r for r in data["time"]}
    for r in data["time_agreement"]:
        base = ref[(r["setup"], r["length"], r["seed"])]
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
    runs = {(r["setup"], r["length"], r["seed"]): r for r in training_runs(data)}
    for r in data["learn"]:
        chosen = runs.get((r["setup"], r["length"], r["seed"]))
        if chosen is None or chosen is r:
            continue
        n = len(r["steps"])
        entry = out["learn"].setdefault(f"{r['setup']} T={r['length']}", {
            "steps": r["steps"][-1], "mse": {chosen["backend"]: chosen["mse"][n - 1]},
            "worst": 0.0, "same_verdict": True})
        entry["mse"][r["backend"]] = r["mse"][-1]
        entry["worst"] = max(entry["worst"], _rel(r["mse"], chosen["mse"][:n]))
        entry["same_verdict"] &= (r["mse"][-1] < SUCCESS_MSE) == (chosen["mse"][n - 1]
                                                                  < SUCCESS_MSE)
    return out


def summarize(data: dict) -> dict[str, Any]:
    time_rows = time_summary(data)
    learn_rows = learn_summary(data)
    depth_rows = depth_summary(data)
    return {
        "time": time_rows,
        "time_comparisons": time_comparisons(time_rows, last_layer(data)),
        "depth": depth_rows,
        "depth_findings": depth_findings(depth_rows),
        "learn": learn_rows,
        "learn_comparisons": learn_comparisons(learn_rows),
        "agreement": agreement(data),
    }

