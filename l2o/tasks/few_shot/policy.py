"""MAML-stop's stop policies: ``fast`` (the default) and ``paper`` (the released inputs).

* ``fast``: an MLP on what each inner step computes anyway (:meth:`l2o.models.maml.MAML.summarize`:
  the support loss at the point the step's gradient was taken, that gradient's norm, the first
  support loss) and on the task's support-set size, read from the mask alone (``log n``, ``1/n``
  for n real support examples: the number of shots times the ways). So it sees how far the
  support loss has fallen, how steep it still is, and how many examples there are to over-fit
  -- and costs nothing next to an inner step (no forward pass of its own).
* ``paper``: the inputs of the released ``ShareFeatCondNet``: the mean penultimate features of the
  support set and of the (unlabelled) query set at the adapted parameters, the support loss and
  error at them, and the step position; one forward pass of the body over the support set and
  one over the query set per candidate (about one inner step's cost). The fidelity option.

No query label reaches either.
"""

from __future__ import annotations

import torch
from torch import Tensor

from l2o.models.stop_policy import StopPolicy
from l2o.tasks.base import StopLogits

POLICY_KINDS = ("fast", "paper")
#: inputs of the fast policy: 3 step summaries, 2 support-size features, 2 position features
FAST_IN_FEATURES = 7
EPS = 1e-8


def check_kind(kind: str) -> str:
    if kind not in POLICY_KINDS:
        raise ValueError(f"policy.kind must be one of {list(POLICY_KINDS)}, got {kind!r}")
    return kind


def support_size_features(support_mask: Tensor) -> Tensor:
    """``(log n, 1/n)`` of each task's n real support examples, from the mask alone: (B, S) -> (B, 2).

    >>> support_size_features(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    tensor([[0.0000, 1.0000],
            [0.6931, 0.5000]])
    """
    n = support_mask.sum(dim=1).clamp_min(1.0)
    return torch.stack([n.log(), 1.0 / n], dim=1)


def step_features(summaries: Tensor) -> Tensor:
    """The step summaries on a log scale: (K, B, 3) -> (K, B, 3): ``log l_{t-1}``, ``log |g_{t-1}|``
    and ``log (l_{t-1} / l_0)`` (how far the support loss has come down)."""
    loss, gnorm, first = summaries.unbind(-1)
    log_loss = (loss + EPS).log()
    return torch.stack([log_loss, (gnorm + EPS).log(), log_loss - (first + EPS).log()], dim=-1)


class StepStatsLogits(StopLogits):
    """The fast policy's logits: ``MLP([step features (3), support size (2), t/T, 1 - t/T])``."""

    reads_states = False
    reads_summaries = True

    def __init__(self, policy: StopPolicy):
        self.policy = policy

    def context(self, batch):
        """The support-size features per task, (B, 2) (no label: the mask only)."""
        return support_size_features(batch["support_mask"])

    def logits(self, ctx, states, steps, num_steps, summaries=None):
        if summaries is None:
            raise ValueError("the fast few-shot policy reads MAML's step summaries: pass summaries")
        K, B, _ = summaries.shape
        pos = (steps.to(summaries) / num_steps).view(K, 1, 1).expand(K, B, 1)
        size = ctx.to(summaries).unsqueeze(0).expand(K, B, 2)
        return self.policy(torch.cat([step_features(summaries), size, pos, 1.0 - pos], dim=2))
