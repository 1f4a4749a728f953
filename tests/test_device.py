"""Thread and device choice (l2o/device.py)."""

from __future__ import annotations

import subprocess
import sys

import torch

from l2o.device import set_threads


def test_set_threads_with_torch_imported(monkeypatch):
    from threadpoolctl import threadpool_limits

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(var, "x")  # restored after the test, as set_threads sets them

    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS pools this test limits
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads(None)
        assert torch.get_num_threads() == 1
    torch.set_num_threads(before)


def test_set_threads_before_torch_is_imported_reaches_torch():
    code = ("import os, sys; from l2o.device import set_threads; set_threads(1); "
            "print('torch' in sys.modules, os.environ['OMP_NUM_THREADS']); import torch; print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "1", "1"]


def test_set_threads_limits_the_blas_pool_numpy_already_loaded():
    # numpy's OpenBLAS spins idle threads: a one-thread job must not take a second core
    code = ("import numpy; from threadpoolctl import threadpool_info; from l2o.device import set_threads; "
            "set_threads(1); print(sorted({p['num_threads'] for p in threadpool_info()}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[1]"
