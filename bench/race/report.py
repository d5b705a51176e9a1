"""The race's REPORT.md and figures, rendered from `race.json` alone.

`load` reads and validates the raw file as untrusted input: every field is
checked for its type and range, names must be known tasks, backends, dtypes
and precisions, and a bad file is one `InputError` line (exit 2). No field
names a path: the report and figures go into the directory given, under
names built from validated task names (`safe_name`), written atomically.
Scoring is `bench.race.score`'s. Imports no framework.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.options import InputError
from bench.race.config import MAX_FAILED_SEEDS, RACE_TASKS
from bench.race.score import EntryScore, score_entry
from bench.report.plots import safe_name
from bench.results.write import write_atomic, write_text_atomic
from impls import BACKENDS, DTYPES, PRECISIONS

RAW = "race.json"
REPORT = "REPORT.md"
FORMAT = "nnparity-race/1"
MAX_BYTES = 64 * 2**20  # a race.json is a few hundred kB; refuse anything absurd
_NAME = re.compile(r"^[A-Za-z0-9_]{1,40}$")  # a variant name


# ------------------------------------------------------------------ reading, validated
def _fail(where: str, what: str) -> InputError:
    return InputError(f"{RAW}: {where} {what}")


def _number(value: Any, where: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        raise _fail(where, f"must be a finite number, got {value!r:.40}")
    return float(value)


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(where, f"must be a non-negative integer, got {value!r:.40}")
    return value


def _text(value: Any, where: str, limit: int = 400) -> str:
    if not isinstance(value, str) or len(value) > limit:
        raise _fail(where, f"must be a string of at most {limit} characters")
    return " ".join(value.replace("|", "/").split())  # one line, no table breaks


def _one_of(value: Any, choices, where: str) -> str:
    if value not in choices:
        raise _fail(where, f"must be one of {', '.join(choices)}, got {value!r:.40}")
    return value


def _dict(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise _fail(where, "must be an object")
    return value


def _run(raw: Any, where: str, tasks: dict) -> dict[str, Any]:
    raw = _dict(raw, where)
    error = raw.get("error")
    run = {
        "task": _one_of(raw.get("task"), tuple(tasks), f"{where}.task"),
        "backend": _one_of(raw.get("backend"), tuple(BACKENDS), f"{where}.backend"),
        "variant": raw.get("variant"),
        "dtype": _one_of(raw.get("dtype"), DTYPES, f"{where}.dtype"),
        "precision": _one_of(raw.get("precision"), PRECISIONS, f"{where}.precision"),
        "seed": _count(raw.get("seed"), f"{where}.seed"),
        "error": None if error is None else _text(error, f"{where}.error"),
    }
    if not isinstance(run["variant"], str) or not _NAME.match(run["variant"]):
        raise _fail(f"{where}.variant", "must be a variant name (letters, digits, _)")
    if not isinstance(raw.get("reached"), bool):
        raise _fail(f"{where}.reached", "must be true or false")
    run["reached"] = raw["reached"] and run["error"] is None
    run["steps"] = _count(raw.get("steps"), f"{where}.steps")
    optional = run["error"] is not None
    for key in ("train_s", "eval_s", "first_step_s", "step_s", "compile_s", "warm_s",
                "startup_s"):
        value = _number(raw.get(key), f"{where}.{key}", optional=optional)
        if value is not None and value < 0:
            raise _fail(f"{where}.{key}", "must not be negative")
        run[key] = value
    run["metric"] = _number(raw.get("metric"), f"{where}.metric", optional=True)
    evals = raw.get("evaluations")
    if not isinstance(evals, list):
        raise _fail(f"{where}.evaluations", "must be a list")
    run["evaluations"] = []
    for i, pair in enumerate(evals):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _fail(f"{where}.evaluations[{i}]", "must be [step, metric]")
        run["evaluations"].append((_count(pair[0], f"{where}.evaluations[{i}]"),
                                   _number(pair[1], f"{where}.evaluations[{i}]",
                                           optional=True)))
    return run


def load(out: Path) -> dict[str, Any]:
    """The race.json in `out`, validated (see the module doc); InputError on anything wrong."""
    path = Path(out) / RAW
    try:
        if path.is_symlink() or not path.is_file():
            raise InputError(f"no {RAW} in {out}")
        if path.stat().st_size > MAX_BYTES:
            raise InputError(f"{path} is larger than {MAX_BYTES // 2**20} MiB")
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise InputError(f"{path} is nested too deeply to be a race.json") from None
    doc = _dict(doc, "the file")
    if doc.get("format") != FORMAT:
        raise _fail("format", f"must be {FORMAT!r}, got {doc.get('format')!r:.40}")
    tasks = {}
    for name, raw in _dict(doc.get("tasks"), "tasks").items():
        where = f"tasks.{name!s:.40}"
        _one_of(name, tuple(RACE_TASKS), "a task name")
        raw = _dict(raw, where)
        if not isinstance(raw.get("higher_is_better"), bool):
            raise _fail(f"{where}.higher_is_better", "must be true or false")
        eval_every = _count(raw.get("eval_every"), f"{where}.eval_every")
        budget = _count(raw.get("budget"), f"{where}.budget")
        tasks[name] = {"target": _number(raw.get("target"), f"{where}.target"),
                       "higher_is_better": raw["higher_is_better"],
                       "eval_every": eval_every, "budget": budget,
                       "reason": _text(raw.get("reason", ""), f"{where}.reason", 1000)}
    runs = doc.get("runs")
    if not isinstance(runs, list):
        raise _fail("runs", "must be a list")
    machine = _dict(doc.get("machine", {}), "machine")
    shown = {}
    for key in ("python", "platform", "cpus", "threads", "load_before", "load_after", "date",
                "seconds"):
        if key in machine:
            value = machine[key]
            shown[key] = (_text(value, f"machine.{key}", 200) if isinstance(value, str)
                          else _number(value, f"machine.{key}"))
    groups = []
    for i, g in enumerate(doc.get("groups", []) if isinstance(doc.get("groups"), list)
                          else []):
        g = _dict(g, f"groups[{i}]")
        groups.append({"backend": _one_of(g.get("backend"), tuple(BACKENDS),
                                          f"groups[{i}].backend"),
                       "task": _one_of(g.get("task"), tuple(tasks), f"groups[{i}].task"),
                       "version": _text(g.get("version") or "", f"groups[{i}].version", 100),
                       "error": _text(g.get("error") or "", f"groups[{i}].error")})
    partial = doc.get("partial", False)
    if not isinstance(partial, bool):
        raise _fail("partial", "must be true or false")
    pending = doc.get("pending", [])
    if not isinstance(pending, list) or len(pending) > 1000:
        raise _fail("pending", "must be a list of [task, backend]")
    for i, p in enumerate(pending):
        if not isinstance(p, list) or len(p) != 2:
            raise _fail(f"pending[{i}]", "must be [task, backend]")
        _one_of(p[0], tuple(RACE_TASKS), f"pending[{i}] task")
        _one_of(p[1], tuple(BACKENDS), f"pending[{i}] backend")
    return {"tasks": tasks, "runs": [_run(r, f"runs[{i}]", tasks) for i, r in enumerate(runs)],
            "machine": shown, "groups": groups, "partial": partial,
            "pending": [tuple(p) for p in pending]}


# ------------------------------------------------------------------ scoring and rendering
Key = tuple[str, str, str, str]  # backend, variant, dtype, precision


def entries(doc: dict[str, Any], task: str) -> dict[Key, EntryScore]:
    """Every entry of `task`, scored, in backend order."""
    by: dict[Key, list[dict]] = {}
    for r in doc["runs"]:
        if r["task"] == task:
            by.setdefault((r["backend"], r["variant"], r["dtype"], r["precision"]), []).append(r)
    order = list(BACKENDS)
    keys = sorted(by, key=lambda k: (order.index(k[0]), k[2], k[1], PRECISIONS.index(k[3])))
    return {k: score_entry(by[k]) for k in keys}


def _s(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}g}" if value < 10 else f"{value:.1f}"


def _interval(o) -> str:
    return "n/a" if not math.isfinite(o.mean) else f"{_s(o.mean)} [{_s(o.low)}, {_s(o.high)}]"


def label(key: Key) -> str:
    backend, variant, dtype, precision = key
    mode = f"+{precision}" if precision != "fp32" else ""
    return f"{backend} {variant} {dtype}{mode}"


RULES = f"""Rules (MLPerf Training style):

- Every backend and variant trains from the same canonical initial parameters and the
  same batch order for a given seed; seeds 0..N-1 change both, never the data split.
- The clock starts before the first step touches the data and stops at the first
  held-out evaluation (every K steps) that meets the target; evaluation time is on the
  clock, and its share is shown.
- **Time to target** is olympic-scored: of the N seeds, the fastest and the slowest are
  dropped and the rest averaged (with fewer than 3 seeds none is dropped); [low, high]
  is the range of the averaged seeds. A seed
  that misses the target within the budget counts as the slowest; with more than
  {MAX_FAILED_SEEDS} such seed the entry is **failed**.
- **Warm** leaves compilation out: the first step's excess over a steady step is taken
  off the clock. **Cold** adds start-up (interpreter and framework import, data, building
  the program) and compile (that excess, plus one held-out evaluation before the clock
  that compiles the inference path), both measured on the entry's first seed, as a
  fresh process pays them.
- **Steps to target** are olympic-scored the same way, with the range over every seed
  that reached the target. In float64 every backend's trajectory is the reference's, so
  its steps to target must be the same; in float32 and the reduced precision modes their
  spread is rounding changing how fast the model learns.
"""


def task_table(doc: dict, task: str, scores: dict[Key, EntryScore]) -> list[str]:
    """One task's heading, target (with its reason), table and errors (Markdown)."""
    t = doc["tasks"][task]
    sense = ">=" if t["higher_is_better"] else "<="
    lines = [f"## {task}", "",
             f"Target: held-out metric {sense} {t['target']:g}, evaluated every "
             f"{t['eval_every']} steps, budget {t['budget']} steps. {t['reason']}", "",
             "| backend / variant / dtype | time to target, warm (s) | steps to target "
             "(range) | cold (s) | start-up (s) | compile (s) | eval share | seeds missed |",
             "|---|---|---|---|---|---|---|---|"]
    for key, sc in scores.items():
        mean = f"{sc.steps.mean:.0f}" if math.isfinite(sc.steps.mean) else "n/a"
        steps = (f"{mean} ({sc.steps_min}-{sc.steps_max})"
                 if sc.steps_min is not None else "n/a")
        status = "" if sc.status == "ok" else " **failed**"
        lines.append(f"| {label(key)}{status} | {_interval(sc.warm)} | {steps} | "
                     f"{_interval(sc.cold)} | {_s(sc.startup_s)} | {_s(sc.compile_s)} | "
                     f"{_s(sc.eval_share * 100, 2)}% | {sc.failed}/{sc.seeds} |")
    errors = sorted({f"{r['backend']} {r['variant']}: {r['error']}" for r in doc["runs"]
                     if r["task"] == task and r["error"]})
    errors += [f"{g['backend']}: {g['error']}" for g in doc["groups"]
               if g["task"] == task and g["error"]]
    if errors:
        lines += ["", "Errors:", "", *[f"- {e}" for e in errors]]
    return lines


def _figure(task: str, scores: dict[Key, EntryScore], out: Path) -> Path | None:
    shown = {k: s for k, s in scores.items() if math.isfinite(s.warm.mean)}
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label(k) for k in shown]
    scores = list(shown.values())
    y = list(range(len(shown)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.5 * len(shown) + 1.8),
                                      sharey=True)

    def whiskers(olympics) -> list[list[float]]:
        return [[o.mean - o.low for o in olympics], [o.high - o.mean for o in olympics]]

    warm = [s.warm.mean for s in scores]
    left.barh(y, warm, xerr=whiskers([s.warm for s in scores]), capsize=3, color="#55A868")
    for i, s in enumerate(scores):
        left.text(s.warm.high, i, f"  {s.steps.mean:.0f} steps", va="center", fontsize=8)
    left.set_xlim(0, max(s.warm.high for s in scores) * 1.3)  # room for the steps labels
    left.set_xlabel("warm: seconds from the first step to the target")
    # cold: start-up, compile, then the warm time, stacked; whiskers on the total
    startup = [s.startup_s for s in scores]
    compile_s = [s.compile_s for s in scores]
    right.barh(y, startup, color="#bbbbbb", label="start-up")
    right.barh(y, compile_s, left=startup, color="#DD8452", label="compile")
    right.barh(y, warm, left=[a + b for a, b in zip(startup, compile_s, strict=True)],
               xerr=whiskers([s.cold for s in scores]), capsize=3, color="#55A868",
               label="warm")
    right.set_xlabel("cold: seconds from process start to the target")
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    left.set_yticks(y, labels)
    left.invert_yaxis()
    for ax in (left, right):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(f"{task}: time to target (olympic mean of the seeds; whiskers: the range "
                 "of the seeds kept)", fontsize=11)
    fig.tight_layout()
    path = out / f"race_{safe_name(task)}.png"
    try:
        write_atomic(path, lambda fh: fig.savefig(fh, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


def partial_note(doc: dict[str, Any]) -> str:
    """The line a partial race (interrupted, or a worker lost) opens with."""
    pending = ", ".join(f"{t} {b}" for t, b in doc.get("pending", [])) or "none"
    return (f"**Partial race**: not every (task, backend) group finished (unfinished: "
            f"{pending}); the tables hold the {len(doc['runs'])} runs that did. Take it up "
            "again with `nnparity race --resume --out DIR` and the same options.")


def render(doc: dict[str, Any], out: Path,
           figure: Callable[[str, dict, Path], Path | None] = _figure) -> str:
    """REPORT.md's text; figures are written into `out` as a side effect."""
    lines = head(doc)
    for task in doc["tasks"]:
        scores = entries(doc, task)
        if not scores:
            continue
        lines += task_table(doc, task, scores)
        path = figure(task, scores, out)
        if path is not None:
            lines += ["", f"![{task}: time to target]({path.name})"]
        lines.append("")
    return "\n".join(lines)


def head(doc: dict[str, Any]) -> list[str]:
    """The report's opening lines (Markdown): title, machine, partial note, versions, rules."""
    m = doc["machine"]
    lines = ["# nnparity race: time to a trained model", ""]
    if doc.get("partial"):
        lines += [partial_note(doc), ""]
    if m:
        lines += [f"Machine: {m.get('platform', '?')}, {_s(m.get('cpus'))} CPUs, "
                  f"{_s(m.get('threads'))} intra-op threads; load average "
                  f"{m.get('load_before', 'n/a')} before, {m.get('load_after', 'n/a')} after; "
                  f"{m.get('date', '')}; the whole race took {_s(m.get('seconds'))} s. "
                  "On a shared machine wall times are noisy; steps are not.", ""]
    versions = sorted({f"{g['backend']} {g['version']}" for g in doc["groups"] if g["version"]})
    if versions:
        lines += [f"Versions: {', '.join(versions)}.", ""]
    return lines + [RULES]


def write_report(out: Path) -> Path:
    """Validate the race.json in `out`, and write REPORT.md and the figures beside it."""
    out = Path(out)
    doc = load(out)
    text = render(doc, out)
    path = out / REPORT
    write_text_atomic(path, text)
    return path
