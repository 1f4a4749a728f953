"""MLflow as a side channel: one child run per job under one parent run per invocation.

Nothing here decides what Snakemake considers changed: run ids live in the
environment and in output files' metadata, never in ``params``.

The workflow's ``onstart`` (main process) calls :func:`start_invocation`, which
creates/migrates the tracking DB once, marks the runs an earlier, killed
invocation left ``RUNNING`` (:mod:`l2o.orphans`), starts the parent run and
exports ``L2O_MLFLOW_PARENT_RUN_ID`` and ``MLFLOW_EXPERIMENT_ID`` to the jobs;
``onsuccess``/``onerror`` call :func:`end_invocation`, which ends it
``FINISHED``, ``FAILED`` or, after SIGTERM/SIGINT, ``KILLED``. A job calls
:func:`job_tracker`; with no parent run in the environment it gets a
:class:`NullTracker` (the CLI's default), so the package works without MLflow.

Every store call goes through :class:`RetryingClient`: sqlite answers "database
is locked" when writers collide for longer than its busy timeout, and that is
retried with random exponential back-off instead of failing the job.
``mlflow`` is imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Callable

from l2o.failures import tracking_store_error
from l2o.orphans import FOUND_BY, REASON

PARENT_ENV = "L2O_MLFLOW_PARENT_RUN_ID"
DEFAULT_URI = "sqlite:///mlflow.db"
#: how long a store call is retried while the store says it is locked (seconds)
DEFAULT_RETRY_S = 300.0
#: a run on another host (or with no deadline tag) is taken for dead this long after its start
DEFAULT_ORPHAN_AFTER_HOURS = 72.0
#: the ``l2o.job`` tag of an invocation's parent run
INVOCATION_JOB = "snakemake"

log = logging.getLogger(__name__)


def config_hash(cfg: Any) -> str:
    """Short stable hash of a JSON-able config."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def flatten(cfg: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts/lists to ``{"a.b": "value"}`` (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix.rstrip(".")] = json.dumps(cfg) if isinstance(cfg, list) else str(cfg)
    return out


class NullTracker:
    """Does nothing; used when tracking is off."""

    run_id: str | None = None

    def log_params(self, params: dict) -> None: ...
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None: ...
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None: ...


def is_store_busy(exc: BaseException) -> bool:
    """The store refused a write because another writer held it (safe to retry: sqlite rolled it back).

    Through ``mlflow server`` a locked sqlite comes back as HTTP 503 (TEMPORARILY_UNAVAILABLE), which
    MLflow's own client has already retried.

    >>> is_store_busy(RuntimeError("(sqlite3.OperationalError) database is locked")), is_store_busy(ValueError("x"))
    (True, False)
    """
    text = str(exc)
    return any(busy in text for busy in ("database is locked", "database table is locked",
                                         "TEMPORARILY_UNAVAILABLE", "too many 503 error responses"))


class RetryingClient:
    """An ``MlflowClient`` whose every call is retried while the store is busy.

    Waits are random and grow exponentially (50 ms up to 5 s); no new attempt starts after
    ``retry_s`` seconds (one attempt may itself wait: sqlite's busy timeout is 20 s), and then
    the store's error is raised.
    """

    def __init__(self, retry_s: float = DEFAULT_RETRY_S, tracking_uri: str | None = None):
        from mlflow.tracking import MlflowClient

        self._client = MlflowClient(tracking_uri)
        self.retry_s = float(retry_s)

    def __getattr__(self, name: str) -> Callable:
        method = getattr(self._client, name)
        if not callable(method):
            return method

        def call(*args, **kwargs):
            from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

            def log_retry(state) -> None:
                log.warning("MLflow store busy (database is locked) in %s; retry %d in %.2f s", name,
                            state.attempt_number, state.next_action.sleep)

            for attempt in Retrying(retry=retry_if_exception(is_store_busy), reraise=True,
                                    wait=wait_random_exponential(multiplier=0.05, max=5.0),
                                    stop=stop_after_delay(self.retry_s), before_sleep=log_retry):
                with attempt:
                    return method(*args, **kwargs)

        return call


class MlflowTracker:
    """A child run of the invocation's parent run."""

    def __init__(self, run_name: str, parent_run_id: str, experiment_id: str | None,
                 tags: dict[str, str] | None = None, retry_s: float = DEFAULT_RETRY_S):
        self._client = RetryingClient(retry_s)
        if experiment_id is None:
            experiment_id = self._client.get_run(parent_run_id).info.experiment_id
        self.experiment_id = experiment_id
        run = self._client.create_run(
            experiment_id,
            run_name=run_name,
            tags={"mlflow.parentRunId": parent_run_id, **(tags or {})},
        )
        self.run_id = run.info.run_id

    @property
    def client(self) -> RetryingClient:
        return self._client

    def log_params(self, params: dict) -> None:
        from mlflow.entities import Param

        flat = flatten(params)
        items = [Param(k, v[:6000]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, int(step or 0))
            for k, v in metrics.items()
            if v is not None and v == v  # skip NaN
        ]
        for i in range(0, len(items), 500):
            self._client.log_batch(self.run_id, metrics=items[i : i + 500])

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Copy ``path`` into the run's artifacts (under the folder ``artifact_path`` if given)."""
        if Path(path).exists():
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """End the run with ``status``; ``reason`` (one line) goes to the ``l2o.reason`` tag.

        The status is set first (a failed tag write then cannot leave the run RUNNING). A run that
        finishes after another invocation took it for dead loses that verdict's tags.
        """
        self._client.set_terminated(self.run_id, status=status)
        if reason:
            self._client.set_tag(self.run_id, REASON, reason[:5000])
        elif status == "FINISHED":
            stale = [k for k in (REASON, FOUND_BY) if k in self._client.get_run(self.run_id).data.tags]
            for key in stale:
                self._client.delete_tag(self.run_id, key)


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


def check_tracking_uri(uri: str | None = None, timeout_s: float = 10.0) -> None:
    """Fail fast (before any job) when the tracking server cannot be reached."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).read()
        except (urllib.error.URLError, OSError) as err:
            raise RuntimeError(
                f"MLFLOW_TRACKING_URI={uri} cannot be reached ({err}); start the server "
                "(`l2o mlflow-server`) or unset MLFLOW_TRACKING_URI to use ./mlflow.db"
            ) from err


class _SignalWatch:
    """Remembers the first SIGTERM/SIGINT the main Snakemake process receives, then hands the
    signal on to the handler that was there (Snakemake's own: finish or cancel the jobs)."""

    def __init__(self):
        self.received: str | None = None
        self._ours: dict[int, Callable] = {}

    def install(self) -> None:
        self.received = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            if previous is self._ours.get(signum):  # already watching
                continue
            if previous in (signal.SIG_IGN, None):  # ignored, or not set from Python: leave it alone
                continue

            def handler(num, frame, previous=previous):
                self.received = self.received or signal.Signals(num).name
                if callable(previous):
                    previous(num, frame)
                else:  # SIG_DFL: do what the default would (terminate)
                    signal.signal(num, signal.SIG_DFL)
                    os.kill(os.getpid(), num)

            try:
                signal.signal(signum, handler)
            except ValueError:  # not the main thread: nothing to watch
                return
            self._ours[signum] = handler


_WATCH = _SignalWatch()


def start_invocation(experiment: str, run_name: str, tags: dict[str, str] | None = None,
                     orphan_after_hours: float = DEFAULT_ORPHAN_AFTER_HOURS,
                     retry_s: float = DEFAULT_RETRY_S) -> str:
    """Create (and migrate) the tracking store once, mark runs left RUNNING by a killed
    invocation, start the parent run and export its id; watch for SIGTERM/SIGINT.

    Called in the main Snakemake process (``onstart``) before any job starts.
    """
    check_tracking_uri()  # its own message: the server cannot be reached, what to do
    try:
        return _start_invocation(experiment, run_name, tags, orphan_after_hours, retry_s)
    except Exception as err:
        reason = tracking_store_error(err)
        if reason is None:
            raise
        raise RuntimeError(reason) from None  # the one line says it all


def _start_invocation(experiment: str, run_name: str, tags: dict[str, str] | None,
                      orphan_after_hours: float, retry_s: float) -> str:
    from l2o.orphans import link_attempts, mark_orphans, process_tags

    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = RetryingClient(retry_s, tracking_uri())
    exp = client.get_experiment_by_name(experiment)
    if exp:
        exp_id = exp.experiment_id
    elif tracking_uri().startswith(("http://", "https://")):
        exp_id = client.create_experiment(experiment)  # the server decides where artifacts go
    else:  # local store: pin artifacts beside the DB, as an absolute path
        exp_id = client.create_experiment(experiment, artifact_location=Path("mlartifacts").resolve().as_uri())
    max_age_s = float(orphan_after_hours) * 3600.0
    run = client.create_run(exp_id, run_name=run_name,
                            tags={**(tags or {}), **process_tags(max_age_s, job=INVOCATION_JOB)})
    run_id = run.info.run_id
    os.environ[PARENT_ENV] = run_id
    os.environ["MLFLOW_EXPERIMENT_ID"] = exp_id
    os.environ.setdefault("MLFLOW_TRACKING_URI", tracking_uri())
    marked = mark_orphans(client, exp_id, found_by=run_id, max_age_s=max_age_s)
    if marked:
        client.set_tag(run_id, "l2o.orphans_marked", ",".join(r for r, _, _ in marked))
    link_attempts(client, exp_id, INVOCATION_JOB, run_id)  # the invocations this one re-runs
    _WATCH.install()
    return run_id


def end_invocation(success: bool, log_file: str | None = None, retry_s: float = DEFAULT_RETRY_S) -> str | None:
    """End this invocation's parent run: FINISHED, KILLED (after SIGTERM/SIGINT) or FAILED.

    :return: the status set (None when no parent run was started).
    """
    run_id = os.environ.get(PARENT_ENV)
    if not run_id:
        return None
    if success:
        status, reason = "FINISHED", None
    elif _WATCH.received:
        status, reason = "KILLED", f"killed by {_WATCH.received}"
    else:
        status, reason = "FAILED", "a job failed" + (f" (see {log_file})" if log_file else "")
    try:  # the workflow's outcome stands whatever the store says
        client = RetryingClient(retry_s)
        client.set_terminated(run_id, status=status)
        if reason:
            client.set_tag(run_id, REASON, reason)
    except Exception as err:  # noqa: BLE001
        print(f"l2o: could not mark the MLflow parent run {run_id} {status}: "
              f"{tracking_store_error(err) or str(err).splitlines()[0]}", file=sys.stderr)
        return None
    return status


def job_tracker(run_name: str, tags: dict[str, str] | None = None,
                retry_s: float = DEFAULT_RETRY_S) -> NullTracker | MlflowTracker:
    """The tracker for one job: a child run if a parent run is set, else a no-op."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return NullTracker()
    return MlflowTracker(run_name, parent, os.environ.get("MLFLOW_EXPERIMENT_ID"), tags=tags, retry_s=retry_s)


def runs_table(experiment: str, statuses: list[str] | None = None, all_workdirs: bool = False):
    """This work dir's runs of ``experiment``, oldest first: start, job, status, reason, links.

    :return: a DataFrame with columns ``start, job, status, reason, replaced_by, replaces, run_id``
        (run ids shortened to 8 characters).
    """
    import pandas as pd

    from l2o.orphans import JOB, REPLACED_BY, REPLACES, WORKDIR

    check_tracking_uri()
    client = RetryingClient(tracking_uri=tracking_uri())
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"no MLflow experiment {experiment!r} in {tracking_uri()} (config: tracking.experiment)")
    here = str(Path.cwd().resolve())
    rows = []
    for run in client.search_runs([exp.experiment_id], max_results=50000, order_by=["attributes.start_time ASC"]):
        tags = run.data.tags
        if not all_workdirs and tags.get(WORKDIR, tags.get("workdir")) not in (here, None):
            continue
        if statuses and run.info.status not in statuses:
            continue
        rows.append({"start": pd.Timestamp(run.info.start_time, unit="ms").strftime("%Y-%m-%d %H:%M:%S"),
                     "job": tags.get(JOB, run.info.run_name), "status": run.info.status,
                     "reason": tags.get(REASON, ""), "replaced_by": tags.get(REPLACED_BY, "")[:8],
                     "replaces": ",".join(r[:8] for r in tags.get(REPLACES, "").split(",") if r),
                     "run_id": run.info.run_id[:8]})
    return pd.DataFrame(rows, columns=["start", "job", "status", "reason", "replaced_by", "replaces", "run_id"])
