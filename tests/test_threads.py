"""The thread policy (impls.threads): equal intra-op threads, inter-op at the framework's
default unless the user sets them, and what each framework runs with is reported.

Framework checks run in a fresh subprocess each, because a framework's thread
pools are fixed once it starts; only the pure environment logic runs in-process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import impls
from impls import threads as T
from impls.base import BackendError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def clean_env(monkeypatch):
    for var in (T.ENV_VAR, T.INTEROP_ENV_VAR, "TF_NUM_INTEROP_THREADS", *T._POOL_VARS):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_configure_leaves_interop_alone_by_default(clean_env):
    assert T.configure(3) == 3
    assert os.environ["OMP_NUM_THREADS"] == os.environ["TF_NUM_INTRAOP_THREADS"] == "3"
    assert "TF_NUM_INTEROP_THREADS" not in os.environ
    assert T.interop_threads() is None


def test_configure_applies_a_user_interop_count(clean_env):
    T.configure(2, interop=1)
    assert T.interop_threads() == 1 and os.environ["TF_NUM_INTEROP_THREADS"] == "1"


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_bad_interop_setting_is_a_backend_error(clean_env, value):
    clean_env.setenv(T.INTEROP_ENV_VAR, value)
    with pytest.raises(BackendError, match=T.INTEROP_ENV_VAR):
        T.interop_threads()


_PROBE = """
import json, sys
from impls.threads import configure
configure(2, interop={interop})
import impls
print(json.dumps({{b: impls.load(b).threads() for b in sys.argv[1:]}}))
"""
# the frameworks with an inter-op pool; one process per setting keeps this to two
# framework start-ups
_POOLED = [b for b in ("torch", "tensorflow") if impls.is_installed(b)]


def _threads_in_fresh_process(interop: int | None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in (T.INTEROP_ENV_VAR, "TF_NUM_INTEROP_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", _PROBE.format(interop=interop), *_POOLED],
                         capture_output=True, text=True, env=env, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not _POOLED, reason="neither torch nor tensorflow is installed")
@pytest.mark.parametrize("interop", [None, 1], ids=["default", "user"])
def test_frameworks_report_the_interop_they_run_with(interop):
    for backend, got in _threads_in_fresh_process(interop).items():
        assert got["intra_op"] == 2, backend
        if interop is None:
            assert got["inter_op_source"] == "default" and got["inter_op"] >= 1, backend
        else:
            assert got == {"intra_op": 2, "inter_op": 1, "inter_op_source": "user"}, backend
