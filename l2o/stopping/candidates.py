"""Candidate stop steps: the steps where the oracle puts non-negligible mass.

The released code lets the policy stop only where the validation-mean oracle
mass exceeds a threshold (1e-3); that is why the paper's Fig. 4 has no mass on
early steps. The last step is always a candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch  # noqa: F401  (used by the doctest)
from torch import Tensor

from l2o.config import take_fields


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


@dataclass
class CandidateConfig:
    """The key of config section ``policy`` that the stages read (the rest is the task's network)."""

    candidate_threshold: float | None = 1e-3

    def __post_init__(self):
        if self.candidate_threshold is not None and not 0 <= self.candidate_threshold < 1:
            raise ValueError(f"candidate_threshold must be in [0, 1), got {self.candidate_threshold}")


def split_policy_section(policy: dict) -> tuple[CandidateConfig, dict]:
    """``(candidate settings, the task's network settings)`` of config section ``policy``.

    >>> split_policy_section({"hidden": [8], "candidate_threshold": 0.01})
    (CandidateConfig(candidate_threshold=0.01), {'hidden': [8]})
    """
    rest = {k: v for k, v in policy.items() if k != "candidate_threshold"}
    cand = take_fields(CandidateConfig, {k: v for k, v in policy.items() if k == "candidate_threshold"},
                       "config section 'policy'")
    return cand, rest
