"""One-line reasons, run statuses and SIGTERM as an exception (l2o/failures.py)."""

from __future__ import annotations

import errno
import os
import signal

import pytest

from l2o.failures import (OutputWriteError, Terminated, one_line_reason, run_status, signals_as_exceptions,
                          tracking_store_error, write_error)


def test_a_full_disk_names_the_file_the_cause_and_what_to_do():
    err = OutputWriteError(errno.ENOSPC, "No space left on device", "results/sr/seed0/stage1/model.pt")
    line = one_line_reason(err)
    assert line.startswith("cannot write results/sr/seed0/stage1/model.pt: No space left on device (errno 28): "
                           "the disk is full")
    assert "re-run the same command" in line and "\n" not in line


@pytest.mark.parametrize("code, needle", [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only"),
                                          (errno.EDQUOT, "quota"), (errno.EFBIG, "ulimit -f")])
def test_each_write_error_says_what_to_do(code, needle):
    assert needle in one_line_reason(OutputWriteError(code, os.strerror(code), "out.npz"))


def test_the_write_error_is_found_down_the_chain():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("torch could not write") from inner
    except RuntimeError as outer:
        assert write_error(outer).errno == errno.ENOSPC
        assert one_line_reason(outer).startswith("cannot write a file: No space left on device")
    assert write_error(OSError(errno.ENOENT, "No such file or directory")) is None
    assert write_error(OSError(errno.EACCES, "Permission denied", "input.npz")) is None  # could be a read
    try:  # an error handled earlier is not the cause of the one that replaced it
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise ValueError("bad shape")
    except ValueError as err:
        assert write_error(err) is None and one_line_reason(err) == "ValueError: bad shape"


def test_tracking_store_errors_name_the_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////data/mlflow.db")
    line = tracking_store_error(RuntimeError("(sqlite3.OperationalError) database or disk is full"))
    assert line.startswith("cannot write the MLflow tracking store sqlite:////data/mlflow.db: database or disk is full")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    line = one_line_reason(RuntimeError("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/get failed "
                                        "with exception HTTPConnectionPool: Max retries exceeded with url"))
    assert line.startswith("the MLflow tracking server http://127.0.0.1:5000 stopped answering")
    assert tracking_store_error(RuntimeError("https://example.org/x: Max retries exceeded")) is None  # not MLflow
    assert tracking_store_error(ValueError("bad shape")) is None


def test_other_errors_are_their_type_and_first_line():
    assert one_line_reason(ValueError("stage1.lr must be > 0\nmore detail")) == "ValueError: stage1.lr must be > 0"
    assert one_line_reason(FloatingPointError()) == "FloatingPointError"
    assert len(one_line_reason(ValueError("x" * 1000), limit=50)) == 50


def test_statuses():
    assert run_status(None) == "FINISHED"
    assert run_status(ValueError()) == "FAILED"
    assert run_status(Terminated(signal.SIGTERM)) == "KILLED" and run_status(KeyboardInterrupt()) == "KILLED"
    assert run_status(SystemExit(0)) == "FINISHED" and run_status(SystemExit(2)) == "FAILED"
    assert one_line_reason(Terminated(signal.SIGTERM)) == "killed by SIGTERM"
    assert one_line_reason(KeyboardInterrupt()) == "killed by SIGINT"


def test_sigterm_raises_terminated_inside_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info:
        with signals_as_exceptions():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    assert info.value.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_signal_inside_a_library_is_still_a_kill():
    """SIGTERM during torch.save through a Python file: torch's writer replaces it with its own error."""
    try:
        try:
            raise Terminated(signal.SIGTERM)
        except Terminated:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 176640 vs 176552")
    except RuntimeError as err:
        assert run_status(err) == "KILLED" and one_line_reason(err) == "killed by SIGTERM"
