"""Training-iteration cost: one iteration of the LISTA baseline, Stage I and Stage II (and
Stage II with the frozen model under autograd), timed in a fresh process each
(:func:`run_training_worker`) for its own peak memory, beside its FLOP lower bound."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from typing import Callable

from bench.config import REPO, Options, Sizes
from bench.flops import lista_backward_flops, lista_forward_flops, training_flops
from bench.load import LoadGuard
from bench.timing import MIB, current_rss_mib, peak_rss_mib, summarise, sync


def make_task(m: int, n: int, device: str, seed: int):
    """A sparse-recovery task with the paper's A (cond 5), SNR mix and sparsity; no fixed sets."""
    import numpy as np
    import torch

    from l2o.tasks.sparse_recovery.data import ProblemConfig, make_dictionary
    from l2o.tasks.sparse_recovery.task import SparseRecoveryTask

    cfg = ProblemConfig(m=m, n=n)
    A, _ = make_dictionary(m, n, cfg.cond, np.random.default_rng(seed))
    return SparseRecoveryTask(torch.from_numpy(A).to(device), cfg.snr_db, cfg.sparsity)


def build_training_step(kind: str, spec: dict) -> Callable[[], dict]:
    """One iteration of a stage's training loop, as :func:`l2o.train.loop.fit` runs it.

    Sample a batch (CPU) and move it, loss, ``zero_grad``, ``backward``, Adam step,
    ``loss.item()``. The losses are the stages' own (paper config: lr, weight decay 1e-4).
    Returns a callable giving the seconds of each phase.
    """
    import torch

    from l2o.models.stop_policy import StopPolicy, StopPolicyConfig
    from l2o.stopping.distribution import stop_log_distribution
    from l2o.stopping.imitation import stage2_loss
    from l2o.stopping.objectives import stage1_loss
    from l2o.stopping.oracle import oracle_log_distribution
    from l2o.train.baseline import step_weights
    from l2o.train.loop import make_adam

    device, B, T = spec["device"], spec["batch"], spec["T"]
    torch.manual_seed(spec["seed"])
    task = make_task(spec["m"], spec["n"], device, spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"])
    net = task.build_model({"T": T})
    beta = 0.28
    if kind == "baseline":
        weights = step_weights(T, 1.0).to(device)
        params, lr = list(net.parameters()), 1e-4

        def loss_fn(batch):
            losses = task.step_losses(net(task.model_inputs(batch)), batch)
            return (losses * weights).sum(dim=1).mean()
    elif kind == "stage1":
        params, lr = list(net.parameters()), 1e-4

        def loss_fn(batch):
            losses = task.step_losses(net(task.model_inputs(batch)), batch)
            return stage1_loss("full", losses, beta, generator=gen)
    elif kind in ("stage2", "stage2_autograd"):
        autograd = kind == "stage2_autograd"
        net.eval().requires_grad_(autograd)
        steps = torch.arange(1, T + 1, device=device)  # every step a candidate (K = T)
        pol = StopPolicy(StopPolicyConfig(task.policy_in_features(), list(spec["hidden"]))).to(device)
        params, lr = list(pol.parameters()), 1e-3

        def frozen(batch):
            states = net(task.model_inputs(batch))[steps - 1]
            return oracle_log_distribution(task.step_losses(states, batch), beta), states

        def loss_fn(batch):  # as l2o.train.stage2 builds it
            if autograd:  # the released code: the frozen model's graph is built and traversed
                log_q_oracle, states = frozen(batch)
            else:
                with torch.no_grad():
                    log_q_oracle, states = frozen(batch)
            log_q = stop_log_distribution(task.stop_logit_fn(pol)(batch, states, steps, T).T)
            return stage2_loss("forward_kl", log_q, log_q_oracle)
    else:
        raise ValueError(f"unknown training kind {kind!r}")
    opt = make_adam(params, lr, 1e-4)
    extra_zero = net if kind == "stage2_autograd" else None

    def step() -> dict:
        t0 = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in task.sample_batch(B, gen).items()}
        sync(device)
        t1 = time.perf_counter()
        loss = loss_fn(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{kind}: loss {loss.item()}")
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if extra_zero is not None:
            extra_zero.zero_grad(set_to_none=True)  # unused model grads must not accumulate
        loss.backward()
        sync(device)
        t3 = time.perf_counter()
        opt.step()
        loss.item()
        t4 = time.perf_counter()
        return {"sample": t1 - t0, "forward": t2 - t1, "backward": t3 - t2, "optimizer": t4 - t3}

    return step


def time_training_step(spec: dict) -> dict:
    """Time one stage's training iteration (warm-up, then repeats) and record memory.

    ``spec``: kind, m, n, T, hidden, batch, device, seed, warmup, repeats, threads.
    Meant to run in a fresh process (see :func:`run_training_worker`) so that
    ``peak_rss_mib`` is this stage's own.
    """
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = spec["device"]
    rss_start = current_rss_mib()
    step = build_training_step(spec["kind"], spec)
    rss_setup = current_rss_mib()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for _ in range(spec["warmup"]):
        step()
    samples, phases = [], []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        phases.append(step())
        samples.append(time.perf_counter() - t0)
    out = {
        "kind": spec["kind"],
        "batch": spec["batch"],
        "timing": {**summarise(samples), "warmup": spec["warmup"]},
        "phases_median_s": {k: statistics.median(p[k] for p in phases) for k in phases[0]},
        "rss_start_mib": rss_start,
        "rss_after_setup_mib": rss_setup,
        "peak_rss_mib": peak_rss_mib(),
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }
    if device.startswith("cuda"):
        out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / MIB
    return out


def run_training_worker(spec: dict, in_process: bool = False) -> dict:
    """:func:`time_training_step` in a fresh ``python -m bench.run --worker`` process."""
    if in_process:
        return {**time_training_step(spec), "fresh_process": False}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--worker", json.dumps(spec)],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec['kind']} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "fresh_process": True}


TRAINING_KINDS = {
    "baseline": "LISTA baseline",
    "stage1": "Stage I (full loss)",
    "stage2": "Stage II (frozen model under no_grad, forward_kl)",
    "stage2_autograd": "Stage II with the frozen model under autograd",
}


def measure_training(sizes: Sizes, opts: Options, flops_per_s: float, guard: LoadGuard | None = None) -> dict:
    """Seconds per iteration of each stage beside its FLOP lower bound; peak RSS; Stage II speed-up."""
    batches = {"baseline": sizes.batch_baseline, "stage1": sizes.batch_stage1,
               "stage2": sizes.batch_stage2, "stage2_autograd": sizes.batch_stage2}
    guard = guard or LoadGuard(replace(opts, allow_loaded=True))  # no guard given: record only
    out: dict = {}
    for kind, batch in batches.items():
        spec = {"kind": kind, "m": sizes.m, "n": sizes.n, "T": sizes.T, "hidden": list(sizes.hidden),
                "batch": batch, "device": opts.device, "seed": opts.seed, "warmup": sizes.warmup,
                "repeats": sizes.repeats, "threads": opts.threads}
        res = guard.run(f"training:{kind}", lambda: run_training_worker(spec, opts.in_process))
        flops = training_flops(kind, batch, sizes.m, sizes.n, sizes.T, sizes.hidden)
        bound = flops["total"] / flops_per_s
        res.update(description=TRAINING_KINDS[kind], flops=flops, bound_s=bound,
                   ratio_to_bound=res["timing"]["median"] / bound)
        out[kind] = res
    t_ng, t_ag = out["stage2"]["timing"], out["stage2_autograd"]["timing"]
    out["stage2_speedup"] = {"median": t_ag["median"] / t_ng["median"],
                             "worst": t_ag["min"] / t_ng["max"], "best": t_ag["max"] / t_ng["min"],
                             # the speed-up if both ran at the same FLOP rate
                             "flop_ratio": out["stage2_autograd"]["bound_s"] / out["stage2"]["bound_s"],
                             # ... and if the policy and its features cost nothing: 1 + LISTA backward / forward
                             "flop_ratio_free_policy": 1 + lista_backward_flops(1, sizes.m, sizes.n, sizes.T)
                             / lista_forward_flops(1, sizes.m, sizes.n, sizes.T)}
    return out
