"""Regression task families with a variable number of shots (offline, cheap stand-ins).

Two families, each drawn with a ``torch.Generator``:

- **Sinusoid** (Finn et al. 2017): ``y = A sin(x - phi)`` with A ~ U[0.1, 5],
  phi ~ U[0, pi], x ~ U[-5, 5], plus optional N(0, noise_std^2) observation
  noise on support and query targets.
- **Linear**: ``w ~ N(0, weight_std^2 I_d)``, ``x ~ N(0, I/d)``,
  ``y = w.x + N(0, noise_std^2)``. With a bias-free linear model started at the
  prior mean (0), inner gradient descent has an exact expected query loss per
  step (:func:`linear_expected_query_loss`): the query-optimal number of steps
  grows with the shots (:func:`linear_optimal_steps`), the "fewer shots, fewer
  steps" effect MAML-stop should learn, with a known answer.

Each task draws k ~ U{k1..k2} support points and ``query_points`` query
points. A batch of B tasks (K = k2, Q = query_points) holds ``support_x``
(B, K, d), ``support_y`` (B, K, 1), ``support_mask`` (B, K) float32 (real
points first, padding zeros last), ``query_x`` (B, Q, d), ``query_y``
(B, Q, 1), ``shots`` (B,) int64, and the task parameters as extras for
oracles and tests, never for the model: ``amplitude`` and ``phase`` (B,)
(sinusoid) or ``weights`` (B, d) (linear). d = 1 for the sinusoid.

Inner loss convention of the exact formulas: the mean squared error over the
real support points, ``L(v) = mean_i (x_i.v - y_i)^2`` (``F.mse_loss``), so
one GD step is ``v <- v - lr (2/k) X^T (X v - y)``; lr 0.5 here is lr 1.0 on
half the mean squared error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from l2o.tasks.few_shot.sampler import check_int, check_shot_range, task_seed


def _check_range(value, key: str, lower_strict: float | None = None) -> list[float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{key} must be a pair [low, high], got {value!r}")
    lo, hi = value
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"{key} must hold finite numbers, got {value!r}")
    if lo > hi:
        raise ValueError(f"{key} = {list(value)}: low must be <= high")
    if lower_strict is not None and lo <= lower_strict:
        raise ValueError(f"{key} must be > {lower_strict}, got {list(value)}")
    return [float(lo), float(hi)]


def _check_nonneg(value, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value >= 0:
        raise ValueError(f"{key} must be a number >= 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{key} must be finite, got {value!r}")
    return float(value)


@dataclass
class SinusoidConfig:
    """Sinusoid regression tasks (Finn et al. 2017), config section ``data``.

    :param list amplitude: [low, high] of A ~ U (Finn: [0.1, 5.0]).
    :param list phase: [low, high] of phi ~ U (Finn: [0, pi]).
    :param list x_range: [low, high] of the inputs x ~ U (Finn: [-5, 5]).
    :param float noise_std: std of the Gaussian noise on every target (0: none).
    :param list shots: [k1, k2]: support points per task k ~ U{k1..k2}.
    :param int query_points: query points per task (Finn: 10).
    :param int clean_points: an even grid of this many inputs over ``x_range``, where each task's
        noise-free function is known (``clean_x``, ``clean_y``: the noise-free error).
    """

    amplitude: list[float] = field(default_factory=lambda: [0.1, 5.0])
    phase: list[float] = field(default_factory=lambda: [0.0, math.pi])
    x_range: list[float] = field(default_factory=lambda: [-5.0, 5.0])
    noise_std: float = 0.0
    shots: list[int] = field(default_factory=lambda: [1, 10])
    query_points: int = 10
    clean_points: int = 200

    def __post_init__(self):
        self.amplitude = _check_range(self.amplitude, "data.amplitude", lower_strict=0.0)
        self.phase = _check_range(self.phase, "data.phase")
        self.x_range = _check_range(self.x_range, "data.x_range")
        self.noise_std = _check_nonneg(self.noise_std, "data.noise_std")
        self.shots = check_shot_range(self.shots, "data.shots")
        self.query_points = check_int(self.query_points, "data.query_points", 1)
        self.clean_points = check_int(self.clean_points, "data.clean_points", 1)

    @property
    def dim(self) -> int:
        return 1


@dataclass
class LinearConfig:
    """Linear-regression tasks, config section ``data``.

    :param int dim: d, the input dimension.
    :param float noise_std: sigma of the target noise (support and query).
    :param float weight_std: s, the prior std of the task weights w ~ N(0, s^2 I_d).
    :param list shots: [k1, k2]: support points per task k ~ U{k1..k2}.
    :param int query_points: query points per task.
    :param int clean_points: inputs drawn per task (after everything else) where the noise-free
        function is known (``clean_x``, ``clean_y``).

    Inputs are x ~ N(0, I/d), so ``E (w.x)^2 = s^2``: the signal-to-noise
    ratio does not depend on d.
    """

    dim: int = 20
    noise_std: float = 0.5
    weight_std: float = 1.0
    shots: list[int] = field(default_factory=lambda: [1, 40])
    query_points: int = 10
    clean_points: int = 200

    def __post_init__(self):
        self.dim = check_int(self.dim, "data.dim", 1)
        self.noise_std = _check_nonneg(self.noise_std, "data.noise_std")
        self.weight_std = _check_nonneg(self.weight_std, "data.weight_std")
        self.shots = check_shot_range(self.shots, "data.shots")
        self.query_points = check_int(self.query_points, "data.query_points", 1)
        self.clean_points = check_int(self.clean_points, "data.clean_points", 1)


# -- sampling ---------------------------------------------------------------------------


def _uniform(lo_hi: list[float], shape, generator) -> Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(shape, generator=generator)


def _padded_shots(shots: list[int], B: int, generator) -> tuple[Tensor, Tensor]:
    k1, k2 = shots
    k = torch.randint(k1, k2 + 1, (B,), generator=generator)
    mask = torch.arange(k2) < k.unsqueeze(1)  # (B, K): real points first
    return k, mask


def sample_regression_tasks(
    config: SinusoidConfig | LinearConfig, batch_size: int, generator: torch.Generator
) -> dict[str, Tensor]:
    """A batch of ``batch_size`` regression tasks of the family ``config`` describes.

    Draw order (for reproducibility): shots, task parameters, support x,
    query x, support noise, query noise, then (linear) the clean inputs. Besides the
    noisy sets, ``clean_x`` (B, G, d) and ``clean_y`` (B, G, 1) hold the task's noise-free
    function at G = ``clean_points`` inputs (an even grid for the sinusoid): the truth the
    noise-free error is measured against (never an input of the model or the policy).

    >>> b = sample_regression_tasks(SinusoidConfig(), 4, torch.Generator().manual_seed(0))
    >>> tuple(b["support_x"].shape), tuple(b["query_y"].shape), b["shots"].dtype
    ((4, 10, 1), (4, 10, 1), torch.int64)
    """
    B = check_int(batch_size, "batch_size", 1)
    K, Q = config.shots[1], config.query_points
    k, mask = _padded_shots(config.shots, B, generator)
    out: dict[str, Tensor] = {}
    if isinstance(config, SinusoidConfig):
        amp = _uniform(config.amplitude, (B,), generator)
        phase = _uniform(config.phase, (B,), generator)
        sx = _uniform(config.x_range, (B, K, 1), generator)
        qx = _uniform(config.x_range, (B, Q, 1), generator)
        sy = amp.view(B, 1, 1) * torch.sin(sx - phase.view(B, 1, 1))
        qy = amp.view(B, 1, 1) * torch.sin(qx - phase.view(B, 1, 1))
        out.update(amplitude=amp, phase=phase)
    elif isinstance(config, LinearConfig):
        d = config.dim
        w = config.weight_std * torch.randn(B, d, generator=generator)
        sx = torch.randn(B, K, d, generator=generator) / math.sqrt(d)
        qx = torch.randn(B, Q, d, generator=generator) / math.sqrt(d)
        sy = torch.einsum("bkd,bd->bk", sx, w).unsqueeze(-1)
        qy = torch.einsum("bqd,bd->bq", qx, w).unsqueeze(-1)
        out.update(weights=w)
    else:
        raise TypeError(f"unknown regression family config {type(config).__name__}")
    sy = sy + config.noise_std * torch.randn(B, K, 1, generator=generator)
    qy = qy + config.noise_std * torch.randn(B, Q, 1, generator=generator)
    G = config.clean_points
    if isinstance(config, SinusoidConfig):
        cx = torch.linspace(*config.x_range, G).view(1, G, 1).expand(B, G, 1)
        cy = amp.view(B, 1, 1) * torch.sin(cx - phase.view(B, 1, 1))
    else:
        cx = torch.randn(B, G, config.dim, generator=generator) / math.sqrt(config.dim)
        cy = torch.einsum("bgd,bd->bg", cx, w).unsqueeze(-1)
    m = mask.unsqueeze(-1)
    return {
        "support_x": torch.where(m, sx, 0.0),
        "support_y": torch.where(m, sy, 0.0),
        "support_mask": mask.to(torch.float32),
        "query_x": qx,
        "query_y": qy,
        "shots": k,
        "clean_x": cx.contiguous(),
        "clean_y": cy,
        **out,
    }


def fixed_regression_tasks(
    config: SinusoidConfig | LinearConfig, n_tasks: int = 600, seed: int = 0, chunk: int = 100, split: str = "test"
) -> list[dict[str, Tensor]]:
    """A fixed, seeded set of ``n_tasks`` tasks in chunks of ``chunk``.

    Task i comes from its own generator (``task_seed(seed, split, i)``), so
    the set does not depend on ``chunk`` and differs between splits.
    """
    check_int(n_tasks, "n_tasks", 1)
    check_int(chunk, "chunk", 1)
    tasks = [
        sample_regression_tasks(config, 1, torch.Generator().manual_seed(task_seed(seed, split, i)))
        for i in range(n_tasks)
    ]
    return [{k: torch.cat([t[k] for t in tasks[i : i + chunk]]) for k in tasks[0]} for i in range(0, n_tasks, chunk)]


# -- exact inner-loop losses for the linear family ---------------------------------------


def linear_gd_iterates(support_x: Tensor, support_y: Tensor, support_mask: Tensor, lr: float, steps: int) -> Tensor:
    """Weights of ``steps`` GD steps on the masked support MSE, from v_0 = 0.

    :param Tensor support_x: (B, K, d). :param Tensor support_y: (B, K, 1) or (B, K).
    :param Tensor support_mask: (B, K), 1 real / 0 padding.
    :return: (B, steps + 1, d) float64: v_0 = 0, v_1, ..., v_T with
        ``v_{t+1} = v_t - lr (2/k) X^T (X v_t - y)`` over the k real points.
    """
    X = support_x.double() * support_mask.double().unsqueeze(-1)
    y = support_y.double().reshape(X.shape[:2]) * support_mask.double()
    k = support_mask.double().sum(1).clamp_min(1.0).view(-1, 1)
    v = X.new_zeros(X.shape[0], X.shape[2])
    out = [v]
    for _ in range(check_int(steps, "steps", 0)):
        resid = (X * v.unsqueeze(1)).sum(-1) - y  # (B, K); elementwise: fast for small k, d
        v = v - lr * (2.0 / k) * (X * resid.unsqueeze(-1)).sum(1)
        out.append(v)
    return torch.stack(out, dim=1)


def linear_query_loss(batch: dict[str, Tensor], config: LinearConfig, lr: float, steps: int) -> Tensor:
    """Expected query loss of each GD iterate of each task, given the task.

    For weights w and iterate v_t, over a fresh query point x ~ N(0, I/d) and
    noise: ``E (x.v_t - y)^2 = |v_t - w|^2 / d + sigma^2``.

    :param dict batch: a linear batch (needs ``weights``, the support set).
    :return: (B, steps + 1) float64, steps 0 (the prior mean) .. T.
    """
    v = linear_gd_iterates(batch["support_x"], batch["support_y"], batch["support_mask"], lr, steps)
    err = v - batch["weights"].double().unsqueeze(1)
    return err.pow(2).sum(-1) / config.dim + config.noise_std**2


def linear_expected_query_loss(
    support_x: Tensor, support_mask: Tensor, config: LinearConfig, lr: float, steps: int
) -> Tensor:
    """Exact expected query loss per GD step given the support inputs only.

    Expectation over the task weights w ~ N(0, s^2 I), the support noise and
    the query point, for GD from the prior mean on the support MSE. With
    ``H = (2/k) X^T X`` = U diag(h) U^T and ``a_i = 1 - lr h_i``:

    .. math::

        E\\,\\ell_t = \\frac1d \\sum_i \\Big[s^2 a_i^{2t}
            + \\frac{2\\sigma^2}{k}\\,\\frac{(1 - a_i^t)^2}{h_i}\\Big] + \\sigma^2

    (the second term is 0 where h_i = 0).

    :param Tensor support_x: (B, K, d). :param Tensor support_mask: (B, K).
    :return: (B, steps + 1) float64, steps 0..T.

    >>> x = torch.eye(2).unsqueeze(0)  # two support points e_1, e_2 in d = 2
    >>> cfg = LinearConfig(dim=2, noise_std=0.0)
    >>> linear_expected_query_loss(x, torch.ones(1, 2), cfg, lr=1.0, steps=1)  # h = 1: solved in 1 step
    tensor([[1., 0.]], dtype=torch.float64)
    """
    X = support_x.double() * support_mask.double().unsqueeze(-1)
    k = support_mask.double().sum(1).clamp_min(1.0)
    H = (2.0 / k).view(-1, 1, 1) * X.transpose(1, 2) @ X  # (B, d, d)
    h = torch.linalg.eigvalsh(H).clamp_min(0.0)  # (B, d)
    a = 1.0 - lr * h
    t = torch.arange(check_int(steps, "steps", 0) + 1, dtype=torch.float64).view(1, -1, 1)
    at = a.unsqueeze(1).pow(t)  # (B, T+1, d)
    s2, n2 = config.weight_std**2, config.noise_std**2
    pos = h > 1e-12 * h.amax(dim=1, keepdim=True).clamp_min(1e-300)
    noise = torch.where(pos.unsqueeze(1), (1.0 - at).pow(2) / torch.where(pos, h, 1.0).unsqueeze(1), 0.0)
    per_dir = s2 * at.pow(2) + (2.0 * n2 / k).view(-1, 1, 1) * noise
    return per_dir.sum(-1) / config.dim + n2


def linear_optimal_steps(
    config: LinearConfig,
    lr: float,
    steps: int,
    shots: list[int] | None = None,
    n_tasks: int = 2000,
    seed: int = 0,
    min_step: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The query-optimal number of inner GD steps for each shot count.

    For each k, averages :func:`linear_expected_query_loss` over ``n_tasks``
    draws of the support inputs (exact over weights and noise, Monte Carlo over
    the inputs only), then takes the argmin over steps ``min_step..steps``
    (1..T: the released MAML-stop has no "no adaptation" candidate).

    :return: ``(shots (K,), losses (K, steps + 1), t_star (K,))``.
    """
    shots = list(range(config.shots[0], config.shots[1] + 1)) if shots is None else [int(s) for s in shots]
    g = torch.Generator().manual_seed(int(seed))
    curves = []
    for k in shots:
        x = torch.randn(n_tasks, k, config.dim, generator=g, dtype=torch.float64) / math.sqrt(config.dim)
        curves.append(linear_expected_query_loss(x, torch.ones(n_tasks, k), config, lr, steps).mean(0))
    losses = torch.stack(curves).numpy()
    t_star = losses[:, min_step:].argmin(axis=1) + min_step
    return np.asarray(shots), losses, t_star
