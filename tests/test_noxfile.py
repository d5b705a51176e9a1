"""The nox sessions' choices, tested without a GPU: interpreter, CPU or CUDA builds, extras."""

from __future__ import annotations

import importlib.util
import sys
import tomllib
from pathlib import Path

import pytest

nox = pytest.importorskip("nox")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def noxfile():
    spec = importlib.util.spec_from_file_location("noxfile_under_test", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_no_session_pins_an_interpreter(noxfile):
    sessions = {name: fn for name, fn in nox.registry.get().items()
                if fn.__module__ == "noxfile_under_test"}
    assert {"tests", "bench", "gradcheck"} <= set(sessions)
    # python=None: the session runs on the interpreter nox runs on, never skipped for want of one
    assert {name: fn.python for name, fn in sessions.items()} == dict.fromkeys(sessions)


@pytest.mark.parametrize(("version", "ok"), [((3, 10, 9), False), ((3, 11, 0), True),
                                             ((3, 12, 4), True), ((3, 13, 1), True)])
def test_python_311_or_newer_is_required(noxfile, version, ok):
    problem = noxfile.check_python(version)
    assert (problem is None) == ok
    if not ok:
        assert "3.11+" in problem and "3.10" in problem


def test_cpu_builds_without_a_gpu_take_torch_from_the_cpu_index(noxfile):
    builds = noxfile.select_builds({}, gpu=False)
    assert builds.kind == "cpu" and "no NVIDIA GPU" in builds.reason
    assert builds.extras == ("torch", "jax", "tensorflow")
    assert builds.first == ("--no-deps", "--extra-index-url", "https://download.pytorch.org/whl/cpu",
                            noxfile.torch_requirement())
    assert noxfile.torch_requirement().startswith("torch==")


def test_cuda_builds_with_a_gpu(noxfile):
    builds = noxfile.select_builds({}, gpu=True)
    assert builds.kind == "cuda" and builds.first == ()
    assert builds.extras == ("torch", "jax-cuda", "tensorflow-cuda")


@pytest.mark.parametrize(("value", "gpu", "kind"), [("cpu", True, "cpu"), ("CUDA", False, "cuda"),
                                                    ("auto", True, "cuda"), ("", False, "cpu")])
def test_the_override_wins_over_detection(noxfile, value, gpu, kind):
    builds = noxfile.select_builds({"NNPARITY_BUILD": value}, gpu=gpu)
    assert builds.kind == kind


def test_a_bad_override_is_refused(noxfile):
    with pytest.raises(ValueError, match="NNPARITY_BUILD='rocm'"):
        noxfile.select_builds({"NNPARITY_BUILD": "rocm"}, gpu=False)


def test_every_chosen_extra_exists_and_carries_the_right_build(noxfile):
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for gpu in (False, True):
        for extra in (*noxfile.select_builds({}, gpu=gpu).extras, "dev"):
            assert extra in extras, extra
    assert any(r.startswith("tensorflow-cpu") for r in extras["tensorflow"])
    assert any(r.startswith("tensorflow[and-cuda]") for r in extras["tensorflow-cuda"])
    assert any(r.startswith("jax[cuda") for r in extras["jax-cuda"])


def test_gpu_detection(noxfile, tmp_path):
    none = tmp_path / "no-driver"
    assert not noxfile.has_nvidia_gpu(which=lambda _: None, proc=none)
    gpus = tmp_path / "gpus"
    (gpus / "0000:01:00.0").mkdir(parents=True)
    assert noxfile.has_nvidia_gpu(which=lambda _: None, proc=gpus)
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-x)'\n")
    smi.chmod(0o755)
    assert noxfile.has_nvidia_gpu(which=lambda _: str(smi), proc=none)
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    assert not noxfile.has_nvidia_gpu(which=lambda _: str(smi), proc=none)


@pytest.mark.parametrize(("posargs", "cores", "expected"), [
    ([], 2, ["-q", "-n", "2", "--dist", "worksteal"]),
    (["-k", "cli"], 4, ["-q", "-n", "4", "--dist", "worksteal", "-k", "cli"]),
    (["-n", "0"], 2, ["-q", "-n", "0"]),
    (["-n3"], 2, ["-q", "-n3"]),
    (["-p", "no:xdist"], 2, ["-q", "-p", "no:xdist"]),
    ([], 1, ["-q"]),
])
def test_tests_session_runs_a_worker_per_core_unless_told(noxfile, posargs, cores, expected):
    assert noxfile.pytest_args(posargs, cores) == expected
