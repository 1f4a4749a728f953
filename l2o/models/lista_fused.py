"""LISTA's forward and backward written out by hand (exact soft threshold, ``theta >= 0``).

Autograd through :meth:`l2o.models.lista.LISTA.forward` step by step stores the
pre-activation ``v_t``, ``|v_t|``, ``sign(v_t)`` and the ReLU mask of every step
and runs a dozen element-wise kernels per step. With ``theta >= 0`` the soft
threshold is ``x = v - clamp(v, -theta, theta)``, and everything its gradient
needs can be read off the output: ``dx/dv = [x != 0]`` and
``dx/dtheta = -sign(x)``. This module exploits that:

* forward: per step the two GEMMs written straight into the stacked output
  and the threshold applied in place; only ``y`` and the iterates are kept for
  the backward (no per-step ``v``, ``|v|``, ``sign(v)``, masks, no ``stack``);
* backward: per step one masked multiply, one dot product for ``theta`` and the
  GEMMs, written into preallocated gradients.

(One GEMM ``y [W1_1; ...; W1_K]^T`` for all steps was tried: on this CPU it ran
at 90 GFLOP/s against 138 for the K separate ones, so it is not used.)
Values and gradients equal the step-by-step path's to float rounding; see
``tests/models/test_lista_fused.py``. Double backward is not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class _LISTAExact(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y: Tensor, W1: Tensor, W2: Tensor, theta: Tensor) -> Tensor:
        K, n, _ = W1.shape
        xs = y.new_empty(K, y.shape[0], n)
        for t in range(K):
            v = xs[t]
            torch.mm(y, W1[t].T, out=v)
            if t > 0:  # x_0 = 0 contributes nothing
                v.addmm_(xs[t - 1], W2[t].T)
            th = theta[t]
            v.sub_(torch.clamp(v, min=-th, max=th))  # the soft threshold, in place
        ctx.save_for_backward(y, W1, W2, xs)
        return xs

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_xs: Tensor):
        y, W1, W2, xs = ctx.saved_tensors
        K = W1.shape[0]
        want_y, want_W1, want_W2, want_theta = ctx.needs_input_grad
        grad_y = torch.zeros_like(y) if want_y else None
        grad_W1 = torch.empty_like(W1) if want_W1 else None
        grad_W2 = torch.empty_like(W2) if want_W2 else None
        if want_W2:
            grad_W2[0].zero_()  # W2_1 meets x_0 = 0
        grad_theta = grad_xs.new_empty(K) if want_theta else None
        carry = None  # dL/dx_t arriving from step t + 1
        for t in range(K - 1, -1, -1):
            d = grad_xs[t] * (xs[t] != 0) if carry is None else (grad_xs[t] + carry).mul_(xs[t] != 0)
            # d = dL/dv_t, (B, n)
            if want_theta:
                grad_theta[t] = -torch.vdot(d.flatten(), xs[t].sign().flatten())
            if want_W1:
                torch.mm(d.T, y, out=grad_W1[t])
            if want_y:
                grad_y.addmm_(d, W1[t])
            if t > 0:
                if want_W2:
                    torch.mm(d.T, xs[t - 1], out=grad_W2[t])
                carry = d @ W2[t]
        return grad_y, grad_W1, grad_W2, grad_theta


def lista_exact_forward(y: Tensor, W1: Tensor, W2: Tensor, theta: Tensor) -> Tensor:
    """All iterates of untied LISTA with the exact soft threshold: (B, m) -> (K, B, n).

    :param Tensor y: measurements (B, m).
    :param Tensor W1: (K, n, m), applied as ``y @ W1_t^T``.
    :param Tensor W2: (K, n, n), applied as ``x @ W2_t^T`` (``W2_1`` unused: ``x_0 = 0``).
    :param Tensor theta: (K,) thresholds, all ``>= 0`` (not checked here; see
        :meth:`l2o.models.lista.LISTA.forward`, which falls back otherwise).
    """
    if y.dim() != 2 or W1.dim() != 3 or W2.dim() != 3 or theta.dim() != 1:
        raise ValueError(f"shapes y {tuple(y.shape)}, W1 {tuple(W1.shape)}, W2 {tuple(W2.shape)}, "
                         f"theta {tuple(theta.shape)}: expected (B, m), (K, n, m), (K, n, n), (K,)")
    return _LISTAExact.apply(y, W1.contiguous(), W2, theta)
