"""FLOP lower bounds: the matmul FLOPs of LISTA's forward and backward, and of one training
iteration of each stage (:func:`training_flops`). Pure arithmetic; the rate they are divided
by is :func:`bench.matmul.measure_matmul_rate`."""

from __future__ import annotations


def lista_forward_flops(B: int, m: int, n: int, T: int) -> int:
    """Matmul FLOPs of one LISTA forward: ``y W1_t^T`` every step, ``x W2_t^T`` from step 2.

    >>> lista_forward_flops(1, 1, 1, 2)
    6
    """
    return 2 * B * (T * m * n + (T - 1) * n * n)


def lista_backward_flops(B: int, m: int, n: int, T: int) -> int:
    """Matmul FLOPs of LISTA's backward: weight grads of W1, W2 and the state grads
    through W2 (no grad for the input y)."""
    return 2 * B * (T * m * n + 2 * (T - 1) * n * n)


def policy_layer_sizes(in_features: int, hidden) -> list[tuple[int, int]]:
    sizes = [in_features, *hidden, 1]
    return list(zip(sizes[:-1], sizes[1:]))


def training_flops(kind: str, B: int, m: int, n: int, T: int, hidden, K: int | None = None) -> dict:
    """Matmul FLOPs of one training iteration, by term, and their ``total``.

    ``kind``: ``baseline``/``stage1`` (LISTA forward + backward), ``stage2`` (frozen
    forward, policy forward + backward), ``stage2_autograd`` (stage2 plus the backward
    through the features and the frozen model). Every kind includes the data
    sampling's ``x A^T`` (2Bmn).
    """
    K = T if K is None else K
    terms = {"sample": 2 * B * m * n}
    if kind in ("baseline", "stage1"):
        terms["model_forward"] = lista_forward_flops(B, m, n, T)
        terms["model_backward"] = lista_backward_flops(B, m, n, T)
    elif kind in ("stage2", "stage2_autograd"):
        # the policy's first layer as the task computes it (SparseRecoveryTask.stop_logit_fn):
        # (W_y + W_r) y once per example, (W_x - W_r A) x_t per step, W_r A once per iteration
        layers = policy_layer_sizes(2 * m + n + 2, hidden)
        H = layers[0][1]
        rest = sum(a * b for a, b in layers[1:])
        first = 2 * K * B * n * H + 2 * B * m * H
        terms["model_forward"] = lista_forward_flops(B, m, n, T)
        terms["policy_fold"] = 2 * H * m * n
        terms["policy_forward"] = first + 2 * K * B * rest
        # weight grads of every layer, input grads of all but the first, the fold's backward
        terms["policy_backward"] = first + 2 * 2 * K * B * rest + 2 * H * m * n
        if kind == "stage2_autograd":
            terms["policy_backward"] += 2 * K * B * n * H  # into the states
            terms["model_backward"] = lista_backward_flops(B, m, n, T)
    else:
        raise ValueError(f"unknown training kind {kind!r}")
    terms["total"] = sum(terms.values())
    return terms
