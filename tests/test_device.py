"""Thread and device choice (l2o/device.py)."""

from __future__ import annotations

import subprocess
import sys

import torch

from l2o.device import set_threads


def test_set_threads_with_torch_imported():
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
        set_threads(None)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_set_threads_before_torch_is_imported_reaches_torch():
    code = ("import os, sys; from l2o.device import set_threads; set_threads(1); "
            "print('torch' in sys.modules, os.environ['OMP_NUM_THREADS']); import torch; print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "1", "1"]
