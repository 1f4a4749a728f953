"""A compute-aware prior over the stop step, ``p(t) ∝ exp(-lambda c_t)``.

The oracle becomes ``q*(t) ∝ p(t) exp(-l_t / beta) = softmax_t(-l_t / beta - lambda c_t)``:
each step costs ``c_t`` (the number of steps, or the measured seconds to reach
it rescaled to the same range) and ``lambda >= 0`` trades the loss against it.
``lambda = 0`` is the uniform prior, and then :func:`compute_log_prior` returns
None, so that every caller runs exactly the prior-free code path.

Everything here is a pure tensor function except :func:`measure_step_seconds`,
which times a model.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Sequence

import torch
from torch import Tensor

PRIOR_COSTS = ("steps", "seconds")


def check_prior_lambda(lam, key: str = "prior_lambda") -> float:
    """``lam`` as a float; ``ValueError`` naming ``key`` unless it is finite and ``>= 0``.

    >>> check_prior_lambda(0)
    0.0
    >>> check_prior_lambda(-1.0)
    Traceback (most recent call last):
    ...
    ValueError: prior_lambda must be a finite number >= 0, got -1.0
    """
    try:
        value = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a finite number >= 0, got {lam!r}") from None
    if isinstance(lam, bool) or not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{key} must be a finite number >= 0, got {lam!r}")
    return value


def check_prior_cost(kind: str, key: str = "prior_cost") -> str:
    """``kind`` unless it is not one of :data:`PRIOR_COSTS` (``ValueError`` naming ``key``)."""
    if kind not in PRIOR_COSTS:
        raise ValueError(f"{key} must be one of {PRIOR_COSTS}, got {kind!r}")
    return kind


def step_costs(num_steps: int, seconds: Sequence[float] | Tensor | None = None, *,
               tolerance: float = 0.5) -> Tensor:
    """The cost ``c_t`` of stopping at step ``t = 1..T``, (T,) float64, with ``c_T = T``.

    Without ``seconds``: ``c_t = t`` (cost kind ``steps``). With ``seconds`` (T,),
    the measured cumulative wall time to reach each step: rescaled so that
    ``c_T = T``, so ``lambda`` has the same scale for both kinds. Timing noise
    may make a later step look slightly cheaper than an earlier one; a drop
    below ``tolerance`` times the largest earlier time is an error, a smaller
    one is flattened (``c`` is made non-decreasing with a running maximum).

    >>> step_costs(3)
    tensor([1., 2., 3.], dtype=torch.float64)
    >>> step_costs(3, [0.5, 1.0, 2.0])
    tensor([0.7500, 1.5000, 3.0000], dtype=torch.float64)
    """
    if isinstance(num_steps, bool) or int(num_steps) != num_steps or int(num_steps) < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    T = int(num_steps)
    if seconds is None:
        return torch.arange(1, T + 1, dtype=torch.float64)
    s = torch.as_tensor(seconds, dtype=torch.float64).detach().cpu()
    if s.shape != (T,):
        raise ValueError(f"seconds must have shape ({T},) (one time per step), got {tuple(s.shape)}")
    if not torch.isfinite(s).all() or not (s > 0).all():
        raise ValueError(f"seconds must be finite and > 0, got {s.tolist()}")
    running = torch.cummax(s, dim=0).values
    bad = (s < tolerance * running).nonzero().flatten()
    if len(bad):
        t = int(bad[0]) + 1
        raise ValueError(f"seconds must not decrease with the step: step {t} took {s[t - 1].item():.3g} s, "
                         f"less than {tolerance} x {running[t - 1].item():.3g} s for an earlier step "
                         "(the cumulative time to reach each step)")
    return running * (T / running[-1])


def compute_log_prior(costs: Sequence[float] | Tensor, lam: float,
                      steps: Sequence[int] | None = None) -> Tensor | None:
    """``log p(t) = log_softmax(-lam * c)`` over the candidate ``steps``, (K,) float64; None when ``lam == 0``.

    :param costs: (T,) the cost ``c_t`` of every step (:func:`step_costs`).
    :param float lam: ``prior_lambda``, finite and ``>= 0``.
    :param steps: 1-based, increasing step numbers to keep (K of them); default all T.
        The prior is renormalised over them (the prior conditioned on the candidates).
    :return: (K,) log prior whose ``exp`` sums to one, or None for the uniform prior
        (callers pass ``log_prior=None``: bit for bit the prior-free path).

    >>> compute_log_prior([1.0, 2.0], 0.0) is None
    True
    >>> compute_log_prior([1.0, 2.0, 3.0], 1.0, steps=[2, 3]).exp()
    tensor([0.7311, 0.2689], dtype=torch.float64)
    """
    lam = check_prior_lambda(lam)
    c = torch.as_tensor(costs, dtype=torch.float64).detach().cpu()
    if c.dim() != 1 or len(c) < 1 or not torch.isfinite(c).all():
        raise ValueError(f"costs must be a non-empty (T,) vector of finite numbers, got {c.tolist()}")
    if steps is not None:
        idx = [int(t) for t in steps]
        if not idx or idx[0] < 1 or idx[-1] > len(c) or any(a >= b for a, b in zip(idx, idx[1:])):
            raise ValueError(f"steps must increase within 1..{len(c)}, got {list(steps)}")
        c = c[[t - 1 for t in idx]]
    if lam == 0.0:
        return None
    return torch.log_softmax(-lam * c, dim=0)


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def measure_step_seconds(task, net, batch, repeats: int = 3) -> list[float]:
    """Median wall seconds of ``net(task.model_inputs(batch), [t])`` for ``t = 1..T``: the cost of reaching step ``t``.

    Runs under ``torch.no_grad`` with the model in eval mode (its mode is restored
    after: no batch-norm statistics move), after one warm-up pass to the last step;
    the device is synchronised around each pass.

    :param task: the :class:`l2o.tasks.base.StoppingTask` (its ``model_inputs``).
    :param net: the step model (``num_steps`` = T).
    :param dict batch: one batch on the model's device (e.g. the first validation batch).
    :param int repeats: timed passes per step, >= 1 (their median is kept).
    :return: T floats, seconds.
    """
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    param = next(iter(net.parameters()), None)
    device = param.device if param is not None else torch.device(getattr(task, "device", "cpu"))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            inputs = task.model_inputs(batch)
            net(inputs, [net.num_steps])  # warm-up
            _synchronize(device)
            out = []
            for t in range(1, net.num_steps + 1):
                times = []
                for _ in range(int(repeats)):
                    _synchronize(device)
                    start = time.perf_counter()
                    net(inputs, [t])
                    _synchronize(device)
                    times.append(time.perf_counter() - start)
                out.append(float(statistics.median(times)))
    finally:
        net.train(was_training)
    return out


def model_step_costs(task, net, kind: str, repeats: int = 3) -> Tensor:
    """The costs (T,) of cost kind ``kind`` for ``net``: ``c_t = t``, or the seconds to reach each step
    measured on the first validation batch (:func:`measure_step_seconds`), rescaled by :func:`step_costs`."""
    kind = check_prior_cost(kind)
    if kind == "steps":
        return step_costs(net.num_steps)
    batch = next(iter(task.eval_batches("val")))
    return step_costs(net.num_steps, measure_step_seconds(task, net, batch, repeats))


def prior_record(lam: float, kind: str, costs: Sequence[float] | Tensor) -> dict:
    """What a checkpoint stores under ``prior``: ``{"lambda": float, "cost": str, "costs": [c_1..c_T]}``.

    >>> prior_record(0.5, "steps", step_costs(2))
    {'lambda': 0.5, 'cost': 'steps', 'costs': [1.0, 2.0]}
    """
    return {"lambda": check_prior_lambda(lam), "cost": check_prior_cost(kind),
            "costs": [float(c) for c in torch.as_tensor(costs, dtype=torch.float64).tolist()]}


def prior_from_checkpoint(ckpt: dict, num_steps: int) -> dict:
    """The checkpoint's ``prior`` record; a checkpoint without one (written before priors) had
    ``lambda = 0`` with cost ``steps``. Its ``costs`` must have one entry per step.

    >>> prior_from_checkpoint({}, 3)
    {'lambda': 0.0, 'cost': 'steps', 'costs': [1.0, 2.0, 3.0]}
    """
    rec = ckpt.get("prior")
    if rec is None:
        return prior_record(0.0, "steps", step_costs(num_steps))
    rec = prior_record(rec["lambda"], rec["cost"], rec["costs"])
    if len(rec["costs"]) != int(num_steps):
        raise ValueError(f"the checkpoint's prior has {len(rec['costs'])} step costs, the model {num_steps} steps")
    return rec


def as_log_prior(log_prior: Tensor | None, like: Tensor) -> Tensor | None:
    """``log_prior`` on the dtype and device of ``like`` (None stays None)."""
    return None if log_prior is None else log_prior.to(device=like.device, dtype=like.dtype)
