"""The report's figures, for any task (one PNG each, ``<task>_<figure>.png``)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from l2o.io import atomic_path
from l2o.report.results import TaskResults


def pyplot():
    """matplotlib's pyplot on the Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    """Write ``fig`` to ``path`` (format from its suffix) atomically, and close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    pyplot().close(fig)
    return path


def _mean(curves: list[dict], method: str, key: str) -> np.ndarray:
    return np.mean([c[method][key] for c in curves], axis=0)


def over_steps(curves: list[dict], method: str, key: str, absent: float) -> tuple[np.ndarray, np.ndarray]:
    """A per-candidate quantity of each seed (``c[method][key]``, one value per candidate step) laid
    out over the steps 1..T and averaged over seeds, which may have chosen different candidates.

    ``absent`` is a step's value where it is not one of a seed's candidates: 0 for a probability
    mass (a seed that cannot stop there puts none there), NaN for a metric (left out of that step's
    mean). -> ``(steps (K',), mean (K',))`` over the steps some seed has as a candidate.

    >>> seeds = [{"m": {"candidate_steps": [2, 3], "q": [0.5, 0.5], "stop_histogram": [0, 1, 1]}},
    ...          {"m": {"candidate_steps": [3], "q": [1.0], "stop_histogram": [0, 0, 2]}}]
    >>> over_steps(seeds, "m", "q", 0.0)
    (array([2, 3]), array([0.25, 0.75]))
    >>> metric = [{"m": dict(s["m"], f=s["m"].get("q"))} for s in seeds]
    >>> over_steps(metric, "m", "f", float("nan"))[1]
    array([0.5 , 0.75])
    """
    T = len(curves[0][method]["stop_histogram"])
    rows = np.full((len(curves), T), absent, dtype=float)
    for row, c in zip(rows, curves):
        row[np.asarray(c[method]["candidate_steps"], dtype=int) - 1] = c[method][key]
    used = np.zeros(T, dtype=bool)
    for c in curves:
        used[np.asarray(c[method]["candidate_steps"], dtype=int) - 1] = True
    mean = np.nanmean(rows[:, used], axis=0) if np.isnan(absent) else rows[:, used].mean(axis=0)
    return np.arange(1, T + 1)[used], mean


def stop_histogram(res: TaskResults, label: Callable[[str], str]) -> Path | None:
    """Fig. 4a: the stop-step distribution over the test set (mean q_φ and deterministic stops)."""
    methods = res.stopping_methods()
    if not methods:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.2), squeeze=False)
    for ax, m in zip(axes[0], methods):
        ax.bar(*over_steps(res.curves, m, "q_mean", 0.0), color="tab:blue", alpha=0.8, label="mean q_φ(t)")
        hist = _mean(res.curves, m, "stop_histogram")
        T = len(hist)
        ax.step(np.arange(1, T + 1), hist / max(hist.sum(), 1), where="mid", color="tab:red",
                label="deterministic stops")
        ax.set_title(label(m))
        ax.set_xlabel("stop step t")
        ax.set_xlim(0.5, T + 0.5)
    axes[0][0].set_ylabel("fraction of test examples")
    axes[0][0].legend(fontsize=8)
    return save(fig, res.plots_dir / f"{res.name}_stop_histogram.png")


def q_weighted(res: TaskResults, label: Callable[[str], str], ylabel: str) -> Path | None:
    """Fig. 4b: the metric per step weighted by q_φ(t)."""
    methods = res.stopping_methods()
    key = f"q_weighted_{res.metric}"
    if not methods:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for m in methods:
        ax.plot(*over_steps(res.curves, m, key, float("nan")), "o-", label=label(m))
    ax.set_xlabel("step t")
    ax.set_ylabel(f"q-weighted {ylabel}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, res.plots_dir / f"{res.name}_q_weighted.png")


def per_step(res: TaskResults, label: Callable[[str], str], ylabel: str,
             extra: dict[str, list[float]] | None = None, log_x: bool = False) -> Path:
    """The test metric at every step of every model (+ ``extra`` curves, dashed)."""
    plt = pyplot()
    key = f"{res.metric}_per_step"
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m, info in res.curves[0].items():
        if isinstance(info, dict) and key in info:
            y = _mean(res.curves, m, key)
            ax.plot(np.arange(1, len(y) + 1), y, label=label(m))
    for name, y in (extra or {}).items():
        ax.plot(np.arange(1, len(y) + 1), y, "--", label=label(name))
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("step t" + (" (log scale)" if log_x else ""))
    ax.set_ylabel(f"test {ylabel}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, res.plots_dir / f"{res.name}_per_step.png")


def stop_by_condition(res: TaskResults, label: Callable[[str], str], xlabel: str,
                      condition_label: Callable[[str], str] = str) -> Path | None:
    """Mean stop step of the learned policy and of the oracle's best step per condition
    (with the spread of each as a band: does depth follow difficulty?)."""
    stop = res.method("stop")
    info = res.curves[0].get(stop)
    if not info or "stop_histogram_by_condition" not in info:
        return None
    conds = list(info["stop_histogram_by_condition"])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for key, name, style in (("stop_histogram_by_condition", f"{label(stop)}: learned stop", "o-"),
                             ("oracle_histogram_by_condition", "oracle's best step", "s--")):
        means, lo, hi = [], [], []
        for c in conds:
            hist = np.mean([cv[stop][key][c] for cv in res.curves], axis=0)
            steps = np.arange(1, len(hist) + 1)
            p = hist / max(hist.sum(), 1)
            mean = float((p * steps).sum())
            cdf = np.cumsum(p)
            means.append(mean)
            lo.append(steps[np.searchsorted(cdf, 0.25)])
            hi.append(steps[min(np.searchsorted(cdf, 0.75), len(steps) - 1)])
        x = np.arange(len(conds))
        ax.plot(x, means, style, label=name)
        ax.fill_between(x, lo, hi, alpha=0.15)
    ax.set_xticks(np.arange(len(conds)), [condition_label(c) for c in conds])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("step (mean; band: quartiles)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, res.plots_dir / f"{res.name}_stop_by_condition.png")


def training_curves(res: TaskResults, label: Callable[[str], str], ylabel: str) -> Path | None:
    """Validation metric by iteration of every trained model, first seed."""
    stages = [(m, info) for m, info in res.curves[0].items() if isinstance(info, dict) and info.get("history")]
    if not stages:
        return None
    plt = pyplot()
    prefix = f"val_{res.metric}_"
    fig, axes = plt.subplots(1, len(stages), figsize=(3.6 * len(stages), 3), squeeze=False)
    for ax, (m, info) in zip(axes[0], stages):
        hist = pd.DataFrame(info["history"])
        for col in [c for c in hist.columns if c.startswith(prefix)]:
            ax.plot(hist.iteration, hist[col], label=col.replace(prefix, ""))
        ax.set_title(f"{label(m)} ({info['stage']})", fontsize=9)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"validation {ylabel}")
    return save(fig, res.plots_dir / f"{res.name}_training_curves.png")
