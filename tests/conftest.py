"""What the backend test files share: the cases (every registered task and swept cell),
building a program from a case, the variant matrix, failure messages, the cuda checks.

The cases come from the task registry (`tasks.TASKS`), so a newly registered
task is tested by every backend without editing a test file. Test modules
import these names (`from conftest import ...`); nothing here imports a
framework: a backend is loaded only by the test module that skips without it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from impls.threads import configure
from tasks import TASKS, get_task
from tasks.optim import OptimizerSpec
from tasks.params import init_params

# Under pytest-xdist (`nox -s tests` runs one worker per core) every worker runs its
# frameworks on one intra-op thread, set before any framework is imported: two
# workers of two threads each on two cores oversubscribe them, and torch's spinning
# OpenMP pool then ran the training tests 2-3x slower. Tests of the thread policy
# start their own processes with explicit counts; the harness's runs set their own.
if os.environ.get("PYTEST_XDIST_WORKER"):
    configure(1)

PRESET = "tiny"
DTYPES = ("float32", "float64")
# knobs that change which layers a model has (one case per value); other swept
# knobs (an MLP's activation) change values, not structure, and keep their default
STRUCTURAL_KNOBS = ("cell",)


def _cases() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = []
    for name, task in TASKS.items():
        swept = [k for k in STRUCTURAL_KNOBS if k in task.sweep]
        if not swept:
            cases.append((name, {}))
        for knob in swept:
            cases.extend((name, {knob: value}) for value in task.sweep[knob])
    return cases


#: (task, overrides) for every registered task and every value of its structural knobs
CASES = _cases()


def case_id(task_name: str, overrides: dict[str, Any]) -> str:
    return "-".join([task_name, *(str(v) for v in overrides.values())])


def spec_for(task_name: str, overrides: dict[str, Any], preset: str = PRESET):
    task = get_task(task_name)
    return task.model(task.config(preset, overrides))


def setup_case(task_name: str, overrides: dict[str, Any], preset: str = PRESET):
    """(config, spec, canonical params, x, y) of a case's first batch."""
    task = get_task(task_name)
    cfg = task.config(preset, overrides)
    spec = task.model(cfg)
    x, y = task.data(cfg).batch(0, cfg.batch_size)
    return cfg, spec, init_params(spec, seed=0), x, y


def build_case(backend, task_name: str, overrides: dict[str, Any], variant: str, dtype: str,
               optimizer: str = "sgd", device: str = "cpu"):
    """(config, spec, canonical params, program, x, y): a case built on `backend`."""
    cfg, spec, params, x, y = setup_case(task_name, overrides)
    program = backend.build(spec, params, variant=variant, dtype=dtype, device=device,
                            optimizer=OptimizerSpec(optimizer, cfg.lr))
    return cfg, spec, params, program, x, y


def variant_matrix(backend, variants: tuple[str, ...] | None = None) -> list:
    """pytest params (task, overrides, variant) for every case and variant that applies."""
    return [
        pytest.param(t, o, v, id=f"{case_id(t, o)}-{v}")
        for t, o in CASES
        for v in (variants or backend.variants)
        if backend.supports(spec_for(t, o), v)
    ]


def case_params() -> list:
    """pytest params (task, overrides) for every case."""
    return [pytest.param(t, o, id=case_id(t, o)) for t, o in CASES]


def failures(rows) -> list[str]:
    """One line per agreement row that failed: readable in an assertion message."""
    return [f"{r.tensor}: rel_err {r.rel_err:.2e} (tol {r.tolerance:.0e}, allclose "
            f"{r.allclose})" for r in rows if not r.passed]


def check_cuda_absent_is_a_backend_error(backend, variant: str) -> None:
    """Without a GPU, cuda is not listed and building on it is a clean BackendError."""
    from impls.base import BackendError

    assert backend.devices()[0] == "cpu"
    if "cuda" in backend.devices():
        pytest.skip("a GPU is present: the cuda agreement test covers it")
    _, spec, params, _, _ = setup_case("mlp_regression", {})
    with pytest.raises(BackendError, match="cuda"):
        backend.build(spec, params, variant=variant, dtype="float32", device="cuda",
                      optimizer=OptimizerSpec())


def cuda_failures(backend, variant: str, dtype: str) -> list[str]:
    """Gradient and Adam-trajectory disagreements on cuda, over every case the variant fits."""
    from bench.agreement.check import gradient_rows, trajectory_rows

    if "cuda" not in backend.devices():
        pytest.skip(f"no CUDA GPU visible to {backend.name}")
    bad = []
    for task_name, overrides in CASES:
        if not backend.supports(spec_for(task_name, overrides), variant):
            continue
        rows = gradient_rows(task_name, PRESET, overrides, backend.name, variant, dtype, "cuda")
        rows += trajectory_rows(task_name, PRESET, overrides, backend.name, variant, dtype,
                                "cuda", "adam")
        bad += [f"{case_id(task_name, overrides)}: {f}" for f in failures(rows)]
    return bad


#: A results entry and environment block in the format the reader validates, for
#: tests that fabricate runs: in process (`fake_record`, `FAKE_ENV`) and inside the
#: fake harness scripts they run as subprocesses (prepend `FAKE_RECORD_SOURCE`).
FAKE_RECORD_SOURCE = '''
def fake_record(cell, data, status="ok"):
    task, backend, variant, device, dtype, bs, phase = cell.split("/")[-7:]
    return {"name": cell, "stats": {"data": list(data), "rounds": len(data)},
            "extra_info": {"cell": cell, "task": task.split("[")[0], "preset": "quick",
                           "knobs": {}, "backend": backend, "variant": variant,
                           "device": device, "dtype": dtype, "batch_size": int(bs[2:]),
                           "phase": phase, "status": status, "gradcheck": {"passed": True}}}


FAKE_ENV = {"fingerprint": "fake", "cpu": "fake", "cores": 2, "gpu": "", "threads": 2,
            "frameworks": {}, "git_commit": "", "date": ""}
'''
exec(FAKE_RECORD_SOURCE)  # defines fake_record and FAKE_ENV here too
