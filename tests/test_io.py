"""Atomic writes (l2o/io.py): a failed write names the file and leaves nothing that looks complete."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

from l2o.failures import OutputWriteError, one_line_reason
from l2o.io import atomic_path, save_torch_atomic, write_json_atomic


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_write_that_fails_names_the_final_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "results" / "model.pt"
    save_torch_atomic({"w": torch.ones(3)}, out)  # a complete earlier version
    monkeypatch.setattr(torch, "save", _no_space)
    with pytest.raises(OutputWriteError) as info:
        save_torch_atomic({"w": torch.zeros(3)}, out)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(out)
    assert one_line_reason(info.value).startswith(f"cannot write {out}: No space left on device (errno 28)")
    assert torch.equal(torch.load(out)["w"], torch.ones(3))  # untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.pt"]  # no temporary file left


def test_a_write_that_fails_leaves_no_file(tmp_path, monkeypatch):
    out = tmp_path / "metrics.json"
    monkeypatch.setattr(Path, "write_text", _no_space)
    with pytest.raises(OutputWriteError, match="metrics.json"):
        write_json_atomic({"a": 1}, out)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_named(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(OutputWriteError) as info:
        with atomic_path(tmp_path / "new" / "data.npz"):
            pass
    assert "read-only" in one_line_reason(info.value) and "data.npz" in one_line_reason(info.value)


def test_other_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(KeyError):
        with atomic_path(tmp_path / "x.json"):
            raise KeyError("not a write error")
    assert list(tmp_path.iterdir()) == []


def test_a_successful_write(tmp_path):
    write_json_atomic({"a": 1}, tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": 1}


def test_a_folder_that_is_not_writable_names_the_output_not_the_temporary_file(tmp_path, monkeypatch):
    import tempfile

    def denied(prefix, suffix, dir):
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}abc123{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(OutputWriteError) as info:
        write_json_atomic({"a": 1}, tmp_path / "metrics.json")
    assert info.value.filename == str(tmp_path / "metrics.json")
    assert one_line_reason(info.value).startswith(f"cannot write {tmp_path / 'metrics.json'}: Permission denied")
