"""Candidate stop steps: the steps where the oracle puts non-negligible mass.

The released code lets the policy stop only where the validation-mean oracle
mass exceeds a threshold (1e-3); that is why the paper's Fig. 4 has no mass on
early steps. The last step is always a candidate.
"""

from __future__ import annotations

import torch  # noqa: F401  (used by the doctest)
from torch import Tensor


def select_candidate_steps(mean_oracle_mass: Tensor, threshold: float | None) -> list[int]:
    """1-based steps whose mean oracle mass exceeds ``threshold`` (+ the last step).

    :param Tensor mean_oracle_mass: (T,) oracle ``q*`` averaged over examples.
    :param threshold: None or 0 keeps every step.

    >>> select_candidate_steps(torch.tensor([0.0, 0.01, 0.0, 0.99]), 1e-3)
    [2, 4]
    """
    T = mean_oracle_mass.shape[0]
    if not threshold:
        return list(range(1, T + 1))
    steps = [t + 1 for t in range(T - 1) if float(mean_oracle_mass[t]) > threshold]
    return steps + [T]
