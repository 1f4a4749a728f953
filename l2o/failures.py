"""Why a job stopped, in one line, and how a job learns that it is being stopped.

A job stops for one of three reasons, and its MLflow run says which
(:func:`run_status`): it finished, an exception ended it (``FAILED``), or a
signal did (``KILLED``: Snakemake, SLURM and Ctrl-C send SIGTERM or SIGINT).
:func:`signals_as_exceptions` turns SIGTERM into :class:`Terminated` so the
job's ``finally`` blocks run (Python's default for SIGTERM is to die at once).

:func:`one_line_reason` is what the user reads first: for a write that failed
(disk full, permission denied, read-only folder, file size limit) it names the
file, the cause and what to do; for anything else it is the exception's type
and first line.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from pathlib import Path
from typing import Any, Iterator

#: errno values that mean "this file cannot be written here", with what to do about it.
WRITE_ERRORS = {
    errno.ENOSPC: "the disk is full: free space (or use a work dir on a larger disk) and re-run the "
                  "same command; finished stages are kept, training resumes from its last checkpoint",
    errno.EDQUOT: "the disk quota is used up: free space or raise the quota, then re-run the same command",
    errno.EFBIG: "the file is larger than this process may write (ulimit -f): raise the limit, then re-run",
    errno.EACCES: "permission denied: make the folder writable by you (or run in a work dir you own), then re-run",
    errno.EPERM: "operation not permitted: make the folder writable by you (or run in a work dir you own), then re-run",
    errno.EROFS: "the file system is read-only: run in a writable work dir (snakemake --directory DIR)",
}


class Terminated(BaseException):
    """Raised in a job's main thread when it receives SIGTERM (like KeyboardInterrupt for SIGINT)."""

    def __init__(self, signum: int):
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)


class OutputWriteError(OSError):
    """A file could not be written; ``filename`` is the file the job meant to write
    (not the temporary name it was writing to)."""


#: errno values only a write can raise (EACCES/EPERM also come from reads: they count only when
#: raised as an OutputWriteError, i.e. by l2o.io's atomic writes)
ONLY_ON_WRITE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (``raise ... from``), outermost first.

    Not ``__context__``: an exception handled earlier and replaced by another one is not the cause.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__


def write_error(exc: BaseException) -> OSError | None:
    """The OSError in ``exc``'s chain that means a file cannot be written (see WRITE_ERRORS), or None."""
    for e in _chain(exc):
        if isinstance(e, OutputWriteError) or (isinstance(e, OSError) and e.errno in ONLY_ON_WRITE):
            return e
    return None


def describe_write_error(err: OSError, path: Path | str | None = None) -> str:
    """``cannot write <file>: <cause> (errno N): <what to do>``.

    >>> import errno
    >>> describe_write_error(OSError(errno.ENOSPC, "No space left on device"), "results/a/model.pt")[:71]
    'cannot write results/a/model.pt: No space left on device (errno 28): th'
    """
    target = path if path is not None else (err.filename or "a file")
    advice = WRITE_ERRORS.get(err.errno)
    text = f"cannot write {target}: {err.strerror or err} (errno {err.errno})"
    return f"{text}: {advice}" if advice else text


def tracking_store_error(exc: BaseException) -> str | None:
    """A one-line reason when ``exc`` comes from the MLflow store being unwritable or unreachable."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    for e in _chain(exc):
        text = str(e)
        if "database or disk is full" in text:
            return f"cannot write the MLflow tracking store {uri}: database or disk is full: " + WRITE_ERRORS[errno.ENOSPC]
        if "attempt to write a readonly database" in text:
            return (f"cannot write the MLflow tracking store {uri}: it is read-only: make the file and its folder "
                    "writable by you, then re-run")
        if "/api/2.0/mlflow/" in text and ("Max retries exceeded" in text or "Connection refused" in text):
            return (f"the MLflow tracking server {uri} stopped answering: restart it (`l2o mlflow-server`) and "
                    "re-run the same command; training resumes from its last checkpoint")
    return None


def killing_signal(exc: BaseException) -> Terminated | KeyboardInterrupt | None:
    """The SIGTERM/SIGINT that ended a job, wherever it sits in ``exc``'s chain, None if none did.

    Unlike other causes this follows ``__context__`` too: a signal that lands inside a library
    (torch's writer, say) is often replaced by the library's own error while it unwinds.

    >>> try:
    ...     try:
    ...         raise Terminated(15)
    ...     except Terminated:
    ...         raise RuntimeError("unexpected pos")
    ... except RuntimeError as err:
    ...     killing_signal(err).signal_name
    'SIGTERM'
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (Terminated, KeyboardInterrupt)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def one_line_reason(exc: BaseException, limit: int = 400) -> str:
    """One line saying why ``exc`` ended a job (for a log's first line and a run's tag)."""
    killed = killing_signal(exc)
    if killed is not None:
        return f"killed by {killed.signal_name if isinstance(killed, Terminated) else 'SIGINT'}"
    err = write_error(exc)
    if err is not None:
        return describe_write_error(err)
    store = tracking_store_error(exc)
    if store is not None:
        return store
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_status(exc: BaseException | None) -> str:
    """The MLflow status of a run that ended with ``exc`` (None: it finished).

    >>> run_status(None), run_status(ValueError("x")), run_status(Terminated(15)), run_status(KeyboardInterrupt())
    ('FINISHED', 'FAILED', 'KILLED', 'KILLED')
    """
    if exc is None:
        return "FINISHED"
    if killing_signal(exc) is not None:
        return "KILLED"
    if isinstance(exc, SystemExit) and not exc.code:
        return "FINISHED"
    return "FAILED"


@contextlib.contextmanager
def _signal_handlers(handlers: dict[int, Any]) -> Iterator[None]:
    """Install ``{signal: handler}`` within the block, then put back what was there.

    Only the main thread can install handlers; elsewhere this does nothing.
    """
    try:
        previous = {signum: signal.signal(signum, handler) for signum, handler in handlers.items()}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def signals_as_exceptions() -> contextlib.AbstractContextManager:
    """Within the block SIGTERM raises :class:`Terminated` (SIGINT keeps raising KeyboardInterrupt)."""
    return _signal_handlers({signal.SIGTERM: _raise_terminated})


def ignoring_signals() -> contextlib.AbstractContextManager:
    """Within the block SIGTERM and SIGINT are ignored (a job's clean-up; SIGKILL still ends it)."""
    return _signal_handlers({signal.SIGTERM: signal.SIG_IGN, signal.SIGINT: signal.SIG_IGN})
