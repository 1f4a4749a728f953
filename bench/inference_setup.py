"""What the inference and time-to-accuracy measurements run: a task with fixed val/test
sets, a LISTA model and a stopping policy (:class:`InferenceSetup`), from a checkpoint or
an untrained model with a :func:`controlled_policy` whose mean stop step is known."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.config import Options, Sizes


@dataclass
class InferenceSetup:
    """A task with fixed val/test sets, a LISTA model, a stopping policy and its candidates."""

    task: object
    net: object
    policy: object
    candidates: list[int]
    test: dict
    val: dict
    source: str  # "checkpoint <path>" or a description of the controlled policy
    policy_info: dict = field(default_factory=dict)


SHIFT = 8.0  # keeps the per-example score unit of the controlled policy above ReLU's kink


def controlled_policy(task, net, batch: dict, hidden, mean_stop: float, spread: float,
                      chunk: int, seed: int = 0):
    """A :class:`~l2o.models.stop_policy.StopPolicy` whose deterministic stop is known.

    Same architecture (so the same cost) as a trained policy; its weights make
    ``logit_t = t + spread * z(y) + b`` with ``z`` a standardised random projection of
    the measurements, so examples stop at ``t > -b - spread z``: spread around a mean.
    ``b`` is then bisected so that the mean stop step on ``batch`` (all steps are
    candidates) is ``mean_stop``. Relies on the sparse-recovery feature layout
    ``[y, y - A x_t, x_t, t/T, 1 - t/T]``.
    """
    import torch
    from torch import nn

    from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
    from l2o.stopping.inference import stop_index
    from l2o.train.common import batched_indices

    if len(hidden) < 1 or min(hidden) < 2:
        raise ValueError(f"controlled_policy needs hidden layers of width >= 2, got {hidden}")
    T, m, F = net.num_steps, task.m, task.policy_in_features()
    policy = StopPolicy(StopPolicyConfig(F, list(hidden)))
    linears = [mod for mod in policy.net if isinstance(mod, nn.Linear)]
    y = batch["y"].detach().cpu()
    with torch.no_grad():
        for lin in linears:
            lin.weight.zero_()
            lin.bias.zero_()
        v = torch.randn(m, generator=torch.Generator().manual_seed(seed))
        score = y @ v
        linears[0].weight[0, F - 2] = T  # unit 0: t (from the feature t/T)
        linears[0].weight[1, :m] = v / score.std()  # unit 1: z + SHIFT
        linears[0].bias[1] = SHIFT - score.mean() / score.std()
        for lin in linears[1:-1]:
            lin.weight[0, 0] = lin.weight[1, 1] = 1.0
        linears[-1].weight[0, 0], linears[-1].weight[0, 1] = 1.0, spread
    policy = policy.to(task.A.device).eval()
    steps = torch.arange(1, T + 1, device=task.A.device)
    with torch.no_grad():  # logits with the last bias at 0; the bias then only shifts them
        logits0 = torch.cat([
            policy(task.policy_features({k: v[sl] for k, v in batch.items()},
                                        net(task.model_inputs({k: v[sl] for k, v in batch.items()})),
                                        steps, T)).T.cpu()
            for sl in batched_indices(len(batch["y"]), chunk)
        ])

    def mean_step(bias: float) -> float:
        return float((stop_index(logits0 + bias) + 1).double().mean())

    lo, hi = -(T + 1.0 + spread * (SHIFT + 10)), T + 1.0  # mean_step(lo) = T, mean_step(hi) = 1
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if mean_step(mid) < mean_stop else (mid, hi)
    bias = lo if abs(mean_step(lo) - mean_stop) <= abs(mean_step(hi) - mean_stop) else hi
    with torch.no_grad():
        linears[-1].bias.fill_(bias)
    return policy, {"target_mean_stop": mean_stop, "spread": spread, "bias": bias,
                    "calibrated_mean_stop": mean_step(bias)}


def build_inference_setup(sizes: Sizes, opts: Options) -> InferenceSetup:
    """From ``--checkpoint``/``--data`` if given, else an ISTA-initialised LISTA on a fresh
    problem of ``sizes`` with :func:`controlled_policy` (mean stop ``--mean-stop`` or T/2)."""
    from l2o.tasks.registry import load_task

    if opts.checkpoint is not None:
        from l2o.checkpoints import build_model, build_policy, load_checkpoint

        if opts.data is None:
            raise ValueError("--checkpoint needs --data (the problem file it was trained on)")
        task = load_task("sparse_recovery", opts.data, opts.device)
        ckpt = load_checkpoint(opts.checkpoint, "stopping", task)
        net = build_model(task, ckpt, opts.checkpoint).eval()
        policy = build_policy(task, ckpt, opts.checkpoint).eval()
        return InferenceSetup(task, net, policy, list(ckpt["candidate_steps"]), task.split("test"),
                              task.split("val"), f"checkpoint {opts.checkpoint}", {"stage": ckpt["stage"]})
    import torch

    from l2o.tasks.sparse_recovery.data import ProblemConfig, generate_problem
    from l2o.tasks.sparse_recovery.task import SparseRecoveryTask

    cfg = ProblemConfig(m=sizes.m, n=sizes.n, n_val_per_snr=sizes.val_per_snr,
                        n_test_per_snr=sizes.test_per_snr, seed=2020 + opts.seed)
    arrays, _ = generate_problem(cfg)
    task = SparseRecoveryTask.from_arrays(arrays, cfg.snr_db, cfg.sparsity, opts.device)

    def split(name: str) -> dict:
        return {k: torch.from_numpy(arrays[f"{name}_{k}"]).to(opts.device) for k in ("y", "x", "snr")}

    test = split("test")
    torch.manual_seed(opts.seed)
    net = task.build_model({"T": sizes.T}).eval()
    mean_stop = opts.mean_stop or sizes.T / 2
    spread = opts.stop_spread if opts.stop_spread is not None else sizes.T / 8
    policy, info = controlled_policy(task, net, test, sizes.hidden, mean_stop, spread,
                                     sizes.infer_batch, opts.seed)
    return InferenceSetup(task, net, policy, list(range(1, sizes.T + 1)), test, split("val"),
                          "untrained ISTA-initialised LISTA with a controlled stopping policy", info)
