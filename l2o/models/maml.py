"""MAML's inner loop (Finn et al., 2017) as a step-wise model, with ``torch.func``.

A batch of ``B`` few-shot tasks is adapted from the meta-parameters ``theta_0`` (the
parameters of :attr:`MAML.net`) by ``T`` SGD steps on each task's support set:

.. math:: \\theta_t = \\theta_{t-1} - \\alpha \\nabla_\\theta L^{support}(\\theta_{t-1}),
   \\quad t = 1 .. T,

where ``L^support`` is the mean loss over the task's real (unpadded) support examples. The
state after step ``t`` is the adapted parameter vector ``theta_t`` of each task with a
divergence flag, (B, P + 1) (:meth:`MAML.params`, :meth:`MAML.diverged`); the task evaluates it on the query set with :meth:`MAML.predict` / :meth:`MAML.features`.

Parameters travel as one flat vector per task: the net's parameters in
``net.named_parameters()`` order (``body.*`` block by block -- for conv4 ``conv.weight,
conv.bias, bn.weight, bn.bias`` per block -- then ``head.weight, head.bias``), each flattened
row-major (:meth:`MAML.flat`, :meth:`MAML.unflat`). All tasks take their step at once with
``vmap(grad(support_loss))``; the step stays differentiable w.r.t. ``theta_0`` (second-order
MAML) unless ``first_order`` detaches the inner gradient (FOMAML).

Differences from the released ``maml_stop`` code: BN affine parameters are adapted in the
inner loop too (the released BN is not a MetaModule), and ``theta_0`` itself is not a state
(the candidates are ``theta_1 .. theta_T``, as there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import Tensor
from torch.func import functional_call, grad_and_value, vmap

from l2o.models.meta_nets import MetaNetConfig, build_meta_net
from l2o.models.task_losses import LOSSES, masked_mean, per_example_loss
from l2o.models.step_model import StepModel

#: width of the step summaries a MAML carry holds after its state (:meth:`MAML.summarize`)
SUMMARY_SIZE = 3


@dataclass
class MAMLConfig:
    """The MAML learner.

    :param dict net: :class:`~l2o.models.meta_nets.MetaNetConfig` fields (missing ones take
        their defaults; stored filled in, so :meth:`MAML.describe` rebuilds the same net).
    :param int num_steps: T, inner SGD steps (paper: 10); at least 2.
    :param float inner_lr: alpha, the inner learning rate (paper: 0.1 Omniglot, 0.05
        mini-ImageNet).
    :param bool first_order: detach the inner gradient (FOMAML); default second order.
    :param float max_step_ratio: an inner step that moves a task's parameters by more than this
        many times their norm plus one (L2) marks the task diverged (:meth:`MAML.step`): SGD
        is blowing up, and parameters that grow on would overflow float32 in the backward pass
        long before they turn non-finite themselves.
    :param float max_growth: also marks a task diverged when its parameters have moved from
        ``theta_0`` by more than this many times ``|theta_0| + 1``: SGD that blows up gradually,
        each step under the step-length bound (None: no such bound).
    :param str loss: ``ce`` (classification, long labels) or ``mse`` (regression).
    """

    net: dict = field(default_factory=dict)
    num_steps: int = 10
    inner_lr: float = 0.01
    first_order: bool = False
    loss: str = "ce"
    max_step_ratio: float = 10.0
    max_growth: float | None = None

    def __post_init__(self):
        net = dict(self.net)
        unknown = sorted(set(net) - {f.name for f in fields(MetaNetConfig)})
        if unknown:
            raise ValueError(f"model.net has unknown key(s) {unknown}")
        try:
            self.net = asdict(MetaNetConfig(**net))
        except ValueError as err:  # name the key where it lives in the config
            raise ValueError(str(err).replace("model.", "model.net.", 1)) from None
        if int(self.num_steps) < 2:
            raise ValueError(f"model.num_steps must be >= 2, got {self.num_steps}")
        if not (math.isfinite(self.inner_lr) and self.inner_lr > 0):
            raise ValueError(f"model.inner_lr must be > 0, got {self.inner_lr}")
        if not (math.isfinite(self.max_step_ratio) and self.max_step_ratio > 0):
            raise ValueError(f"model.max_step_ratio must be > 0, got {self.max_step_ratio}")
        if self.loss not in LOSSES:
            raise ValueError(f"model.loss must be one of {LOSSES}, got {self.loss!r}")
        if self.max_growth is not None and not (math.isfinite(self.max_growth) and self.max_growth > 0):
            raise ValueError(f"model.max_growth must be > 0 (or null: no bound), got {self.max_growth}")


class MAML(StepModel):
    """MAML's inner loop over a batch of few-shot tasks; ``forward(inputs)`` -> (T, B, P).

    ``inputs`` is a dict (the rows are tasks; :func:`~l2o.models.step_model.take_rows` applies):

    - ``support_x`` (B, S, ...) support inputs, ``support_y`` (B, S) long labels (``ce``) or
      (B, S, out) floats (``mse``);
    - ``support_mask`` (B, S), 1 = real example, 0 = padding (tasks with fewer shots are padded
      to the largest; optional, default all real). Padded rows may hold anything: they are
      zeroed before the net and do not enter the loss or the BN statistics;
    - ``query_x`` (B, Q, ...) is not used by the inner loop (see :meth:`predict`).

    BatchNorm uses batch statistics *per task*: over the task's real support examples in the
    inner loop, and over the examples given to :meth:`predict` / :meth:`features` (the query
    set) at readout -- transductive, as MAML does.

    Step-wise use::

        carry = model.init_state(inputs)             # (B, P + 4): theta_0 per task, flag 0, summaries
        for t in range(1, model.num_steps + 1):
            carry = model.step(t, carry, inputs)     # (B, P + 4), theta_t ...
            state = model.readout(t, carry, inputs)  # (B, P + 1): theta_t and the flag
            logits = model.predict(state, qx)        # (B, Q, out)

    ``step`` works under ``torch.no_grad()`` too (``torch.func.grad`` ignores an outer
    no_grad): evaluation adapts without building the meta-gradient graph.

    >>> model = MAML(MAMLConfig(net=dict(kind="mlp", hidden=[8], out_features=1),
    ...                         num_steps=3, loss="mse"))
    >>> inputs = dict(support_x=torch.randn(4, 5, 1), support_y=torch.randn(4, 5, 1))
    >>> states = model(inputs)
    >>> tuple(states.shape) == (3, 4, model.num_params + 1)
    True
    >>> tuple(model.predict(states, torch.randn(4, 7, 1)).shape)
    (3, 4, 7, 1)
    """

    def __init__(self, config: MAMLConfig | None = None):
        super().__init__()
        self.config = config = config or MAMLConfig()
        self.net = build_meta_net(MetaNetConfig(**config.net))
        named = list(self.net.named_parameters())
        self._names = [n for n, _ in named]
        self._shapes = [tuple(p.shape) for _, p in named]
        self._numels = [p.numel() for _, p in named]

    @property
    def num_steps(self) -> int:
        """T, inner SGD steps."""
        return self.config.num_steps

    @property
    def num_params(self) -> int:
        """P, length of the flat parameter vector."""
        return sum(self._numels)

    @property
    def param_names(self) -> list[str]:
        """Names of the net's parameters in flattening order."""
        return list(self._names)

    # -- flat parameter vectors -------------------------------------------------------------

    def flat(self, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """Parameters -> one vector (P,), in :attr:`param_names` order; None = ``theta_0``.

        Differentiable (a concatenation of reshapes of the given tensors).
        """
        if params is None:
            params = dict(self.net.named_parameters())
        return torch.cat([params[n].reshape(-1) for n in self._names])

    def unflat(self, vector: Tensor) -> dict[str, Tensor]:
        """A vector (..., P) -> ``{name: (..., *shape)}`` views, for ``functional_call``."""
        lead = vector.shape[:-1]
        chunks = torch.split(vector, self._numels, dim=-1)
        return {n: c.reshape(*lead, *s) for n, c, s in zip(self._names, chunks, self._shapes)}

    # -- the step-wise protocol -------------------------------------------------------------

    def init_state(self, inputs: Mapping[str, Tensor]) -> Tensor:
        """The carry before step 1: ``theta_0`` flattened and repeated per task, a clear divergence
        flag and room for the step's summaries: (B, P + 1 + 3), differentiable w.r.t. theta_0
        (see :meth:`step` for the flag, :meth:`summarize` for the summaries)."""
        B = inputs["support_x"].shape[0]
        theta0 = self.flat()
        extra = theta0.new_zeros(B, 1 + SUMMARY_SIZE)
        return torch.cat([theta0.unsqueeze(0).expand(B, theta0.shape[0]), extra], dim=-1)

    @property
    def state_size(self) -> int:
        """Width of a state: the P parameters and the divergence flag."""
        return self.num_params + 1

    #: the step's summaries (:meth:`summarize`): support loss before the step, gradient norm, first support loss
    summary_size = 3

    def params(self, states: Tensor) -> Tensor:
        """The adapted parameters of states (..., P + 1) -> (..., P) (a view)."""
        if states.shape[-1] != self.state_size:
            raise ValueError(
                f"states must end in P + 1 = {self.state_size} (parameters and divergence flag), "
                f"got shape {tuple(states.shape)}"
            )
        return states[..., : self.num_params]

    def readout(self, t: int, carry: Tensor, inputs: Mapping[str, Tensor]) -> Tensor:
        """The state after step ``t``: the adapted parameters and the flag, (B, P + 1) (a view of the carry)."""
        return carry[..., : self.state_size]

    def summarize(self, t: int, carry: Tensor, inputs: Mapping[str, Tensor]) -> Tensor:
        """What step ``t`` computed on its way, (B, 3): the support loss at ``theta_{t-1}`` (the
        point the step's gradient was taken at), the norm of that gradient, and the support loss at
        ``theta_0``. No extra forward pass: a cheap stop policy reads these (the support loss at
        ``theta_t`` itself would cost one)."""
        return carry[..., self.state_size:]

    def step(self, t: int, carry: Tensor, inputs: Mapping[str, Tensor]) -> Tensor:
        """One inner SGD step for every task: carry (B, P + 4) -> (B, P + 4); 1-based ``t``.

        .. math:: \\theta_t = \\theta_{t-1} - \\alpha \\nabla_\\theta L^{support}(\\theta_{t-1})

        Second order: the result is differentiable w.r.t. ``carry`` through the gradient.
        ``first_order``: the gradient is computed from a detached carry (no graph is built
        for it) and only the identity path ``theta_t = theta_{t-1} - ...`` is kept.

        Column P is a divergence flag (0 or 1). A task whose step diverges (a non-finite
        parameter, a step longer than ``max_step_ratio`` times the parameters' norm plus one, or
        parameters that have moved from ``theta_0`` by more than ``max_growth`` times its norm plus
        one) keeps its previous parameters, exactly, and its flag is set for this and
        every later step; from then on its support gradient is taken at a harmless point off
        the graph, and the step that diverged is recomputed that way. No non-finite value
        enters the graph: backward would multiply it by a zero upstream gradient, and the
        NaN would reach the shared parameters' gradient, i.e. every task of the batch.
        The step is rejected, as a safeguarded SGD would: the task stops adapting where it was
        (plain MAML would give NaN for the whole batch). :meth:`diverged` reads the flag; the
        report counts such tasks. (The flag is explicit: a converged task's update can round
        to nothing in float32, so a repeated state is no sign of divergence.) The last three
        columns receive the step's summaries (:meth:`summarize`).

        :raises FloatingPointError: when every task of the batch diverged (the inner lr is too large).
        """
        self._check_step(t)
        P = self.num_params
        theta, flag, extra = carry[..., :P], carry[..., P:P + 1], carry[..., P + 1:]
        x, y = inputs["support_x"], inputs["support_y"]
        mask = inputs.get("support_mask")
        if mask is not None and bool((mask == 1).all()):
            mask = None  # no padding in this batch: plain means, no masking work
        source = theta.detach() if self.config.first_order else theta
        active = flag == 0  # (B, 1)
        grads, loss = self._support_grads(source, active, x, y, mask)
        new = theta - self.config.inner_lr * grads
        theta0 = self.flat() if self.config.max_growth else None
        fine = self._fine(theta, new, theta0) & active  # (B, 1)
        if not bool(fine.all()):
            if not bool(fine.any()):
                raise FloatingPointError(
                    f"inner step {t} of {self.num_steps} diverged (non-finite or exploding parameters) for every task of "
                    f"the batch with inner_lr={self.config.inner_lr}; lower model.inner_lr"
                )
            if bool((active & ~fine).any()):  # a task diverged at this step: recompute without it, so
                # that no non-finite value is in the graph (backward would turn 0 * inf into NaN in
                # the shared parameters' gradient, i.e. for every task)
                grads, loss = self._support_grads(source, fine, x, y, mask)
                new = theta - self.config.inner_lr * grads
            new = torch.where(fine, new, theta)
        with torch.no_grad():  # the summaries: statistics for a policy, no gradient to theta_0
            stats = torch.stack([loss.detach(), grads.detach().norm(dim=-1)], dim=-1)
            first = stats[:, :1] if t == 1 else extra[:, 2:3]
            summary = torch.where(fine, torch.cat([stats, first], dim=-1), extra)
        return torch.cat([new, torch.where(fine, flag, torch.ones_like(flag)), summary], dim=-1)

    def _fine(self, theta: Tensor, new: Tensor, theta0: Tensor | None = None) -> Tensor:
        """(B, 1) bool: the step from ``theta`` to ``new`` (B, P) is finite and not blowing up
        (step length; with ``theta0`` (P,) also the distance travelled from it, ``max_growth``)."""
        with torch.no_grad():
            step = (new - theta).norm(dim=-1, keepdim=True)
            bound = self.config.max_step_ratio * (theta.norm(dim=-1, keepdim=True) + 1.0)
            ok = torch.isfinite(new).all(dim=-1, keepdim=True) & (step <= bound)
            if theta0 is not None:
                travelled = (new - theta0).norm(dim=-1, keepdim=True)
                ok &= travelled <= self.config.max_growth * (theta0.norm() + 1.0)
            return ok

    def _support_grads(self, theta: Tensor, keep: Tensor, x: Tensor, y: Tensor,
                       mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """Support-loss gradients and losses of every task, (B, P) and (B,); the rows where ``keep``
        (B, 1) is False are taken at zero parameters instead, off the graph (a harmless point:
        finite values)."""
        if not bool(keep.all()):
            theta = torch.where(keep, theta, torch.zeros_like(theta))
        step = vmap(grad_and_value(self._support_loss), in_dims=(0, 0, 0, None))
        grouping = self.group_by_size and self.config.net.get("kind") == "conv4"
        groups = self._size_groups(mask) if mask is not None and grouping else None
        if groups is None:
            if mask is None:
                return step(theta, x, y, None)
            return vmap(grad_and_value(self._support_loss), in_dims=(0, 0, 0, 0))(theta, x, y, mask)
        parts = [step(theta[rows], x[rows, :n], y[rows, :n], None) for n, rows in groups]
        order = torch.cat([rows for _, rows in groups])
        back = torch.empty_like(order)
        back[order] = torch.arange(len(order), device=order.device)
        return torch.cat([g for g, _ in parts])[back], torch.cat([v for _, v in parts])[back]

    #: take each inner step on the tasks of one support size at a time, on their real examples only
    #: (no padding work); the masked computation over the padded batch gives the same values. For
    #: conv nets only: an MLP's padded rows cost less than a vmapped call per support size.
    group_by_size: bool = True

    @staticmethod
    def _size_groups(mask: Tensor) -> list[tuple[int, Tensor]] | None:
        """``[(n, rows of the tasks with n real support examples)]`` when every task's real examples
        come first (as the samplers lay them out), else None (the masked path)."""
        counts = mask.sum(dim=1).round().to(torch.long)  # (B,)
        S = mask.shape[1]
        if not bool((mask > 0).eq(torch.arange(S, device=mask.device) < counts.unsqueeze(1)).all()):
            return None
        return [(int(n), (counts == n).nonzero().flatten()) for n in counts.unique().tolist()]

    def diverged(self, states: Tensor) -> Tensor:
        """Which tasks' inner loop had diverged by each state: (..., B, P + 1) -> (..., B) bool.

        Any subset of steps works (the flag travels with the state)."""
        self.params(states)  # checks the width
        return states[..., self.num_params] > 0

    def forward(self, inputs: Mapping[str, Tensor], steps: list[int] | None = None, summaries: bool = False):
        """States at ``steps`` (1-based, increasing; None = all T): (K, B, P + 1), the adapted
        parameters and the divergence flag (:meth:`params`, :meth:`diverged`); with ``summaries``
        also the step summaries (K, B, 3) (:meth:`summarize`).

        Nothing after ``max(steps)`` is computed.
        """
        return super().forward(inputs, steps, summaries)

    # -- evaluating adapted parameters ------------------------------------------------------

    def predict(self, states: Tensor, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Net outputs of each task's inputs at each parameter vector: (..., B, N, out).

        :param Tensor states: (..., B, P + 1), e.g. ``forward``'s (K, B, P + 1) or one (B, P + 1).
        :param Tensor x: (B, N, ...), the same inputs for every leading index.
        :param Tensor mask: optional (B, N) 0/1; restricts the BN statistics to the real rows
            (padded query sets; the padded rows must be finite, and get outputs too).
            Default: statistics over all N rows of the task.
        """
        return self._map_tasks(self._outputs, states, x, mask)

    def features(self, states: Tensor, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The net's penultimate features, like :meth:`predict`: (..., B, N, D)."""
        return self._map_tasks(self._features, states, x, mask)

    def head_outputs(self, states: Tensor, features: Tensor) -> Tensor:
        """The net's outputs from its penultimate features, through each task's adapted linear head:
        states (..., B, P + 1), features (..., B, N, D) -> (..., B, N, out). Equals :meth:`predict` on
        the inputs the features came from, without running the body again."""
        params = self.unflat(self.params(states))
        weight, bias = params["head.weight"], params["head.bias"]  # (..., B, out, D), (..., B, out)
        return torch.einsum("...nd,...od->...no", features, weight) + bias.unsqueeze(-2)

    def task_loss(self, outputs: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean loss per task: outputs (..., B, N, out), targets (B, N[, out]) -> (..., B).

        E.g. the query loss of every task at every step: ``task_loss(predict(states, qx), qy)``.
        """
        return masked_mean(per_example_loss(outputs, targets, self.config.loss), mask)

    def describe(self) -> dict:
        return asdict(self.config)

    # -- internals --------------------------------------------------------------------------

    def _outputs(self, theta: Tensor, x: Tensor, mask: Tensor | None) -> Tensor:
        """One task: (P,), (N, ...) -> (N, out)."""
        return functional_call(self.net, self.unflat(theta), (x,), {"mask": mask})

    def _features(self, theta: Tensor, x: Tensor, mask: Tensor | None) -> Tensor:
        """One task: (P,), (N, ...) -> (N, D), with the ``body.*`` parameters only."""
        params = {n[len("body."):]: p for n, p in self.unflat(theta).items() if n.startswith("body.")}
        return functional_call(self.net.body, params, (x,), {"mask": mask})

    def _support_loss(self, theta: Tensor, x: Tensor, y: Tensor, mask: Tensor | None) -> Tensor:
        """One task's (masked) mean support loss: (P,), (S, ...), (S[, out]), (S,) or None -> ()."""
        if mask is not None:
            real = mask > 0
            # zero the padding so that garbage (even inf/nan) cannot reach the loss or its gradient
            x = torch.where(real.reshape(-1, *[1] * (x.dim() - 1)), x, torch.zeros_like(x))
            y = torch.where(real.reshape(-1, *[1] * (y.dim() - 1)), y, torch.zeros_like(y))
            mask = mask.to(x.dtype)
        out = self._outputs(theta, x, mask)
        return masked_mean(per_example_loss(out, y, self.config.loss), mask)

    def _map_tasks(self, fn, states: Tensor, x: Tensor, mask: Tensor | None) -> Tensor:
        *lead, B, _ = states.shape
        if states.shape[-1] != self.state_size or x.shape[0] != B:
            raise ValueError(
                f"states (..., B, P + 1 = {self.state_size}) and x (B, N, ...) must agree, "
                f"got {tuple(states.shape)} and {tuple(x.shape)}"
            )
        states, P = self.params(states), self.num_params
        flat = states.reshape(-1, P)  # (L B, P): every (leading index, task) pair is one task of one vmap
        L = flat.shape[0] // B
        xs = x.unsqueeze(0).expand(L, *x.shape).reshape(L * B, *x.shape[1:])  # a view when L = 1
        masks = None if mask is None else mask.unsqueeze(0).expand(L, *mask.shape).reshape(L * B, -1)
        out = vmap(fn, in_dims=(0, 0, None if mask is None else 0))(flat, xs, masks)  # (L B, N, ...)
        return out.reshape(*lead, B, *out.shape[1:])

    def _check_step(self, t: int) -> None:
        if not 1 <= t <= self.num_steps:
            raise ValueError(f"step t must be in 1..{self.num_steps}, got {t}")
