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

from l2o.models.stop_policy import StopPolicy, head_inplace
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
        with torch.no_grad():  # the folded first layer of the one-candidate path (_one_step)
            W = policy.first_layer.weight  # (H, 7)
            self._M = torch.stack([W[:, 0] + W[:, 2], W[:, 1], -W[:, 2]])  # (3, H): log l, log g, log l0
            self._W_size_T, self._w_pos, self._w_rest = W[:, 3:5].T.contiguous(), W[:, 5], W[:, 6]
            self._bias = policy.first_layer.bias
        self._per_step: dict[float, Tensor] = {}
        self._head = policy.head_layers()

    def context(self, batch):
        """The support-size features per task, (B, 2) (no label: the mask only)."""
        return support_size_features(batch["support_mask"])

    def logits(self, ctx, states, steps, num_steps, summaries=None):
        if summaries is None:
            raise ValueError("the fast few-shot policy reads MAML's step summaries: pass summaries")
        K, B, _ = summaries.shape
        if K == 1 and not torch.is_grad_enabled():
            return self._one_step(ctx, summaries[0], steps, num_steps).unsqueeze(0)
        pos = (steps.to(summaries) / num_steps).view(K, 1, 1).expand(K, B, 1)
        size = ctx.to(summaries).unsqueeze(0).expand(K, B, 2)
        return self.policy(torch.cat([step_features(summaries), size, pos, 1.0 - pos], dim=2))

    def _one_step(self, ctx: Tensor, summary: Tensor, steps: Tensor, num_steps: int) -> Tensor:
        """The same logits for one candidate (B, 3) -> (B,), with the first layer folded: the features are
        linear in ``log(summary + eps)``, so ``W f = (log(s + eps)) M + W_size size + W_pos pos + b``, the
        per-task and per-step parts computed once (early exit: a few kernels per candidate)."""
        pos = float(steps[0]) / num_steps
        if pos not in self._per_step:
            self._per_step[pos] = self._bias + pos * self._w_pos + (1.0 - pos) * self._w_rest  # (H,)
        fixed = torch.addmm(self._per_step[pos], ctx, self._W_size_T)  # (B, H)
        first = torch.addmm(fixed, (summary + EPS).log_(), self._M)
        return head_inplace(first, self._head)
