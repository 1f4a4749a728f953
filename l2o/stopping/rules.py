"""Stop rules, oracles and fixed-step baselines: pure functions over a table of one row per
example and one column per candidate step, (N, K).

A policy gives stop logits ``s_t`` (N, K), ``pi_t = sigmoid(s_t)``, read as the hazard
``P(stop at t | not stopped before)``. A *rule* turns them into one stop per example:

* ``paper``: the first candidate with ``pi_t > 0.5`` (the paper's, Sec. 4).
* ``median``: the median of ``q_phi``: the first candidate where the survival
  ``prod_{tau <= t} (1 - pi_tau)`` is ``<= 0.5``. A calibrated hazard crosses 0.5 only
  where the mass at ``t`` outweighs all later mass, so ``paper`` stops late whenever the
  policy is unsure; the median does not.
* ``tuned``: the first candidate with ``pi_t > tau``, ``tau`` chosen on validation
  (:func:`tune_threshold`; ``tau = 0.5`` is ``paper``), with or without a cap on the
  mean stop step.
* sampled: stop where a uniform draw falls below ``pi_t`` (a reading, not a rule one configures).

The last candidate always stops. The oracles and baselines that the learned stop is
compared with are here too: each example's best step chosen on the data it is scored on
(:func:`oracle_index`, optimistic), chosen on one half of the scoring data and scored on the
other (:func:`cross_fitted_index`, honest), the best single step on validation
(:func:`best_fixed_step`) and the best step per condition (:func:`per_condition_steps`),
and the non-learned relative-change rule (:func:`first_below`, :func:`tune_change_rule`).

Scores come in as functions so that any metric works (NMSE is a ratio of means, PSNR and
accuracy are means): ``value_of(index (N,) 0-based) -> float`` is the validation metric of
one stop per example.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

#: The rules a config may name (``stage2.rule``).
RULES = ("paper", "median", "tuned")
LOG_HALF = math.log(0.5)


def check_rule(name, key: str = "stage2.rule") -> str:
    """``name`` unless it is not one of :data:`RULES` (``ValueError`` naming ``key``).

    >>> check_rule("median")
    'median'
    """
    if name not in RULES:
        raise ValueError(f"{key} must be one of {list(RULES)}, got {name!r}")
    return name


def check_tau(tau, key: str = "tau") -> float:
    """``tau`` as a float in the open interval (0, 1) (``ValueError`` naming ``key``).

    >>> check_tau(0.3)
    0.3
    """
    try:
        value = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number in (0, 1), got {tau!r}") from None
    if isinstance(tau, bool) or not 0.0 < value < 1.0:
        raise ValueError(f"{key} must be a number in (0, 1), got {tau!r}")
    return value


@dataclass(frozen=True)
class StopRule:
    """A deterministic stop rule: ``threshold`` (stop where ``pi_t > tau``) or ``median``.

    :param str kind: ``threshold`` or ``median``.
    :param float tau: the threshold on ``pi_t`` (``threshold`` only), in (0, 1).
    :param str name: how tables name it (``paper``, ``median``, ``tuned``, ...).
    """

    kind: str = "threshold"
    tau: float = 0.5
    name: str = "paper"

    def __post_init__(self):
        if self.kind not in ("threshold", "median"):
            raise ValueError(f"rule kind must be 'threshold' or 'median', got {self.kind!r}")
        check_tau(self.tau)

    @property
    def logit_threshold(self) -> float:
        """``log(tau / (1 - tau))``: ``pi > tau`` iff ``logit > this`` (0 for tau = 0.5)."""
        return 0.0 if self.tau == 0.5 else math.log(self.tau / (1.0 - self.tau))

    def stops(self, logits: Tensor, log_survival: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Where examples stop at one candidate, and their survival after it.

        :param Tensor logits: (b,) stop logits at this candidate.
        :param Tensor log_survival: (b,) ``log prod_{tau < t} (1 - pi_tau)`` before it
            (``median`` only; None for ``threshold``).
        :return: ``(stop (b,) bool, log survival after this candidate (b,) or None)``.
        """
        if self.kind == "threshold":
            return logits > self.logit_threshold, None
        after = log_survival + F.logsigmoid(-logits)
        return after <= LOG_HALF, after


PAPER = StopRule("threshold", 0.5, "paper")
MEDIAN = StopRule("median", 0.5, "median")


def rule_named(name: str, tau: float | None = None) -> StopRule:
    """The rule of a config: ``paper``, ``median``, or ``tuned`` with its tuned ``tau``.

    >>> rule_named("tuned", 0.2)
    StopRule(kind='threshold', tau=0.2, name='tuned')
    """
    check_rule(name)
    if name == "paper":
        return PAPER
    if name == "median":
        return MEDIAN
    if tau is None:
        raise ValueError("the tuned rule needs its tau (tuned on validation)")
    return StopRule("threshold", check_tau(tau), "tuned")


def stop_index(stop_logits: Tensor, uniforms: Tensor | None = None, rule: StopRule = PAPER) -> Tensor:
    """Index of the stop among K candidate steps, (N, K) -> (N,) long.

    :param Tensor stop_logits: (N, K); the last column is ignored (every example stops there).
    :param Tensor uniforms: (N, K) U(0, 1) draws: sampled stopping at ``u < pi`` instead of the rule.
    :param StopRule rule: the deterministic rule (default: the paper's ``pi > 0.5``).

    >>> logits = torch.tensor([[0.2, 0.2, 0.0]])   # pi = 0.55 twice: survival 0.45 after the first
    >>> stop_index(logits).item(), stop_index(logits, rule=MEDIAN).item()
    (0, 0)
    >>> logits = torch.tensor([[-0.5, -0.5, -0.5, 0.0]])  # pi = 0.38: survival 0.62, 0.38
    >>> stop_index(logits).item(), stop_index(logits, rule=MEDIAN).item()
    (3, 1)
    """
    if stop_logits.dim() != 2:
        raise ValueError(f"stop_logits must be (N, K), got shape {tuple(stop_logits.shape)}")
    if uniforms is not None:
        stop = uniforms < torch.sigmoid(stop_logits)
    elif rule.kind == "threshold":
        stop = stop_logits > rule.logit_threshold
    else:
        stop = torch.cumsum(F.logsigmoid(-stop_logits.double()), dim=1) <= LOG_HALF
    stop = stop.clone()
    stop[:, -1] = True
    return stop.to(torch.uint8).argmax(dim=1)  # the first True


def mean_steps(index: np.ndarray, steps) -> float:
    """Mean of the 1-based steps ``steps[index]`` over examples.

    >>> mean_steps(np.array([0, 2]), [3, 5, 9])
    6.0
    """
    return float(np.asarray(steps, dtype=np.float64)[np.asarray(index)].mean())


def threshold_grid(stop_logits: Tensor, size: int = 64) -> list[float]:
    """Candidate values of ``tau``: ``0.5`` and the sigmoid of ``size`` quantiles of the logits of
    the candidates before the last (the thresholds where stops change), sorted, unique, in (0, 1)."""
    logits = stop_logits[:, :-1].double().flatten()
    taus = {0.5}
    if logits.numel():
        q = torch.quantile(logits[:1_000_000], torch.linspace(0.0, 1.0, size, dtype=torch.float64))
        # just below each quantile: pi > tau then includes the example at the quantile itself
        taus.update(float(t) for t in torch.sigmoid(q - 1e-6).tolist())
    return sorted(t for t in taus if 0.0 < t < 1.0)


def tune_threshold(
    stop_logits: Tensor,
    value_of: Callable[[np.ndarray], float],
    higher_is_better: bool,
    steps=None,
    max_mean_stop: float | None = None,
    grid: list[float] | None = None,
) -> tuple[float, float, float]:
    """The ``tau`` of the rule ``pi_t > tau`` that is best on a validation set.

    :param Tensor stop_logits: (N, K) the policy's logits on the validation set.
    :param value_of: ``index (N,) -> metric`` of one stop per example (0-based candidate index).
    :param bool higher_is_better: the metric's direction.
    :param steps: (K,) the 1-based step of each candidate (default 1..K), for ``max_mean_stop``.
    :param max_mean_stop: only thresholds whose mean stop step is at most this (None: no cap).
    :param grid: thresholds to try (default :func:`threshold_grid`).
    :return: ``(tau, its metric, its mean stop step)``; ties go to the larger tau (later stops:
        the more conservative choice). If no threshold meets the cap, the one with the lowest
        mean stop step.

    >>> logits = torch.tensor([[3.0, 0.0], [-3.0, 0.0]])
    >>> losses = np.array([[0.0, 1.0], [1.0, 0.0]])   # example 0 is best at its first step, 1 at its last
    >>> tau, value, steps = tune_threshold(logits, lambda i: float(losses[[0, 1], i].mean()), False)
    >>> value, steps
    (0.0, 1.5)
    """
    K = stop_logits.shape[1]
    steps = np.arange(1, K + 1) if steps is None else np.asarray(steps)
    best = None
    fallback = None
    for tau in sorted(grid if grid is not None else threshold_grid(stop_logits), reverse=True):
        idx = stop_index(stop_logits, rule=StopRule("threshold", tau, "tuned")).numpy()
        cost = mean_steps(idx, steps)
        if fallback is None or cost < fallback[2] - 1e-12:
            fallback = (tau, None, cost, idx)
        if max_mean_stop is not None and cost > max_mean_stop + 1e-9:
            continue
        value = float(value_of(idx))
        if best is None or (value > best[1] if higher_is_better else value < best[1]):
            best = (tau, value, cost)
    if best is None:
        tau, _, cost, idx = fallback
        return tau, float(value_of(idx)), cost
    return best


def oracle_index(losses: Tensor | np.ndarray) -> np.ndarray:
    """Each example's best step, chosen on the losses it is scored on: (N, K) -> (N,) (optimistic).

    >>> oracle_index(np.array([[2.0, 1.0, 3.0]]))
    array([1])
    """
    return np.asarray(losses).argmin(axis=1)


def cross_fitted_index(choose_a: Tensor | np.ndarray, choose_b: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An honest oracle: each half of an example's scoring data is scored at the step the *other*
    half chose, so no score is chosen on itself.

    :param choose_a: (N, K) losses on half a of each example's held-out data; ``choose_b`` on half b.
    :return: ``(index at which to score half a, index at which to score half b)``, each (N,),
        i.e. ``(argmin choose_b, argmin choose_a)``.

    >>> cross_fitted_index(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]))
    (array([1]), array([0]))
    """
    return oracle_index(choose_b), oracle_index(choose_a)


def best_fixed_step(value_at: Callable[[int], float], K: int, higher_is_better: bool) -> int:
    """The 0-based candidate whose validation metric is best (ties: the earliest).

    >>> best_fixed_step(lambda k: (3.0, 1.0, 1.0)[k], 3, False)
    1
    """
    values = [float(value_at(k)) for k in range(K)]
    return int(np.argmax(values) if higher_is_better else np.argmin(values))


def condition_number(condition: str) -> float | None:
    """The number a condition label ends in (``sigma65`` -> 65.0, ``shots3`` -> 3.0), or None.

    >>> condition_number("sigma65"), condition_number("mixed")
    (65.0, None)
    """
    match = re.search(r"(-?\d+(?:\.\d+)?)$", str(condition))
    return float(match.group(1)) if match else None


def per_condition_steps(
    conditions: np.ndarray,
    value_at: Callable[[int, np.ndarray], float],
    K: int,
    higher_is_better: bool,
) -> dict[str, int]:
    """The best fixed step of each condition on validation (the "look up the condition" baseline).

    :param conditions: (N,) the validation examples' conditions.
    :param value_at: ``(candidate k, rows (N,) bool) -> metric`` of those rows at step k.
    :return: ``{condition: 0-based candidate}``.

    >>> conds = np.array(["k1", "k1", "k5"])
    >>> losses = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    >>> per_condition_steps(conds, lambda k, rows: float(losses[rows, k].mean()), 2, False)
    {'k1': 0, 'k5': 1}
    """
    out = {}
    for cond in sorted({str(c) for c in conditions}):
        rows = np.asarray(conditions) == cond
        out[cond] = best_fixed_step(lambda k: value_at(k, rows), K, higher_is_better)
    return out


def apply_condition_steps(conditions: np.ndarray, steps_by_condition: dict[str, int], default: int) -> np.ndarray:
    """The per-condition step of each example (N,); a condition not seen on validation takes the
    step of the seen condition nearest in number (``sigma75`` -> ``sigma55``), else ``default``.

    >>> apply_condition_steps(np.array(["s35", "s75", "x"]), {"s35": 2, "s55": 4}, 0).tolist()
    [2, 4, 0]
    """
    known = {c: condition_number(c) for c in steps_by_condition}
    out = np.empty(len(conditions), dtype=np.int64)
    for i, cond in enumerate(np.asarray(conditions)):
        cond = str(cond)
        if cond in steps_by_condition:
            out[i] = steps_by_condition[cond]
            continue
        x = condition_number(cond)
        near = [(abs(v - x), c) for c, v in known.items() if v is not None and x is not None]
        out[i] = steps_by_condition[min(near)[1]] if near else default
    return out


def first_below(values: np.ndarray, eps: float) -> np.ndarray:
    """0-based index of the first column whose value is < eps (else the last), per row (N, K) -> (N,).

    >>> first_below(np.array([[0.5, 0.1, 0.01], [0.5, 0.4, 0.3]]), 0.2)
    array([1, 2])
    """
    hit = values < eps
    hit[:, -1] = True
    return hit.argmax(axis=1)


def tune_change_rule(change: np.ndarray, value_of: Callable[[np.ndarray], float], higher_is_better: bool,
                     max_mean_stop: float, grid=None, steps: np.ndarray | None = None) -> float:
    """Threshold eps of the non-learned rule "stop at the first step whose state changed by less
    than eps", tuned on validation: the best metric among thresholds whose mean stop step is at
    most ``max_mean_stop`` (the largest eps when none qualifies).

    :param change: (N, K) the rule's input at the K steps it may stop at.
    :param value_of: ``index (N,) -> metric`` of one stop per example (0-based column).
    :param steps: (K,) the 1-based step of each column (default 1..K), for the mean stop step.

    >>> change = np.array([[1.0, 0.01, 0.0], [1.0, 0.5, 0.0]])
    >>> loss = np.array([[5.0, 1.0, 1.0], [5.0, 3.0, 1.0]])
    >>> tune_change_rule(change, lambda i: float(loss[[0, 1], i].mean()), False, 2.5, grid=[0.1, 1.0])
    0.1
    """
    grid = np.logspace(-4, 0, 41) if grid is None else grid
    steps = np.arange(1, change.shape[1] + 1) if steps is None else np.asarray(steps)
    best, best_eps = None, float(grid[-1])
    for eps in grid:
        idx = first_below(change, eps)
        if steps[idx].mean() > max_mean_stop + 1e-9:
            continue
        value = float(value_of(idx))
        if best is None or (value > best if higher_is_better else value < best):
            best, best_eps = value, float(eps)
    return best_eps
