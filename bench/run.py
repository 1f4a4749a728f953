"""The l2o benchmark suite: ``python -m bench.run [--quick] [--out bench/results]``.

Measurements (one function each; ``bench/README.md`` says what and why):

* :func:`measure_matmul_rate`: float32 square-matmul rate, the yardstick of the FLOP bounds;
* :func:`measure_training`: seconds per training iteration of the LISTA baseline, Stage I
  and Stage II (and Stage II with the frozen model under autograd), each in a fresh
  subprocess (:func:`time_training_step`) so that peak memory (RSS) does not mix;
* :func:`measure_inference`: test-set throughput of LISTA, LISTA-stop computing every
  step, and LISTA-stop with early exit, beside the ideal early-exit speed-up;
* :func:`measure_time_to_accuracy`: FISTA's wall time to the NMSE LISTA-stop reaches;
* :func:`measure_snakemake_noop`: a ``snakemake`` invocation with nothing to do.

Each measurement runs under a :class:`LoadGuard`: the load of other processes is sampled
before it and measured over it; if they visibly use the cores the run refuses (exit 2),
unless ``--wait-idle`` lets it wait and repeat, or ``--allow-loaded`` marks the results.
Results go to ``<out>/<host>-<date>.json`` and ``<out>/latest.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
MIB = 1024**2
MEASUREMENTS = ("matmul", "training", "inference", "time_to_accuracy", "snakemake")
EXIT_ERRORS, EXIT_REFUSED = 1, 2


# --- sizes and options ---------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """Problem, batch and repeat sizes of one run (the paper's, or tiny ones for ``--quick``)."""

    m: int = 250
    n: int = 500
    T: int = 20
    hidden: tuple[int, ...] = (256, 128, 16)
    batch_baseline: int = 512
    batch_stage1: int = 1024
    batch_stage2: int = 256
    test_per_snr: int = 1000  # 3 SNR levels -> 3000 test examples
    val_per_snr: int = 1000
    infer_batch: int = 1000  # l2o.predict's default chunk
    matmul_n: int = 2048
    matmul_repeats: int = 10
    warmup: int = 2
    repeats: int = 7
    fista_max_steps: int = 1000
    fista_val_examples: int = 300
    fista_L_grid: tuple[float, ...] = (2.5, 3.0, 4.0, 5.0)
    fista_rho_grid: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
    snakemake_repeats: int = 5


PAPER = Sizes()
QUICK = Sizes(
    m=64, n=128, T=10, hidden=(64, 32, 8), batch_baseline=128, batch_stage1=256, batch_stage2=64,
    test_per_snr=100, val_per_snr=50, infer_batch=100, matmul_n=512, matmul_repeats=5,
    warmup=1, repeats=3, fista_max_steps=200, fista_val_examples=150, snakemake_repeats=2,
)


@dataclass
class Options:
    """Run-time choices (the command line, minus the sizes)."""

    device: str = "cpu"
    threads: int | None = None
    allow_loaded: bool = False
    max_other_cpu: float = 0.25  # cores other processes may use before the run refuses
    load_interval: float = 1.0
    wait_idle: float = 0.0  # seconds to wait (and retry) for an idle machine before refusing
    in_process: bool = False
    skip: tuple[str, ...] = ()
    checkpoint: Path | None = None
    data: Path | None = None
    fista_L: float | None = None
    fista_rho: float | None = None
    mean_stop: float | None = None  # default T/2
    stop_spread: float | None = None  # default T/8
    seed: int = 0
    quick: bool = False


class LoadRefused(RuntimeError):
    """The machine is busy with other work; timings would not mean anything."""


# --- small helpers -------------------------------------------------------------------
VERBOSE = False  # progress lines on stderr (the command line turns them on)


def progress(message: str) -> None:
    if VERBOSE:
        print(f"bench: {message}", file=sys.stderr, flush=True)


def sync(device: str) -> None:
    """Wait for queued device work (CUDA); a no-op on the CPU."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def summarise(samples: list[float]) -> dict:
    """Median and spread (min, max, quartiles) of repeated timings, in seconds.

    >>> summarise([3.0, 1.0, 2.0])["median"]
    2.0
    """
    s = sorted(samples)
    q = statistics.quantiles(s, n=4, method="inclusive") if len(s) > 1 else [s[0]] * 3
    return {"median": statistics.median(s), "min": s[0], "max": s[-1], "q1": q[0], "q3": q[2],
            "repeats": len(s), "samples": samples}


def time_repeats(fn: Callable[[], object], warmup: int, repeats: int, device: str) -> dict:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; :func:`summarise`."""
    for _ in range(warmup):
        fn()
    sync(device)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        samples.append(time.perf_counter() - t0)
    return {**summarise(samples), "warmup": warmup}


def current_rss_mib() -> float:
    """Resident set size of this process now (Linux ``/proc/self/statm``), MiB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        return float("nan")


def peak_rss_mib() -> float:
    """Peak RSS of this process so far (``getrusage`` maxrss: KiB on Linux, bytes on macOS), MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


# --- machine and load ----------------------------------------------------------------
def machine_info(device: str) -> dict:
    """CPU model and cores, torch version and threads, date, host."""
    import torch

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or "unknown"
    info = {
        "host": socket.gethostname(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "mkl": bool(torch.backends.mkl.is_available()),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _proc_stat_jiffies() -> tuple[int, int, int]:
    """``(busy, total, cpus)`` jiffies summed over all CPUs, from ``/proc/stat``."""
    lines = Path("/proc/stat").read_text().splitlines()
    vals = [int(v) for v in lines[0].split()[1:]] + [0] * 8
    user, nice, system, idle, iowait, irq, softirq, steal = vals[:8]
    busy = user + nice + system + irq + softirq + steal  # steal: other guests on our cores
    cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return busy, busy + idle + iowait, cpus


class CpuLoad:
    """CPU used by *other* processes between :meth:`start` and :meth:`stop`, in cores.

    Busy jiffies of all CPUs (``/proc/stat``) minus this process's own CPU time and
    that of its finished children (training workers, snakemake), scaled to cores.
    Where ``/proc/stat`` is missing, the 1-minute load average stands in.
    """

    def start(self) -> tuple:
        try:
            busy, total, cpus = _proc_stat_jiffies()
        except (OSError, ValueError):
            busy = total = cpus = None
        return busy, total, cpus, sum(os.times()[:4]), time.monotonic()

    def stop(self, mark: tuple) -> dict:
        b0, tot0, cpus, own0, t0 = mark
        load1 = os.getloadavg()[0]
        seconds = time.monotonic() - t0
        if b0 is None:
            return {"other_cores": load1, "loadavg_1min": load1, "seconds": seconds, "method": "loadavg"}
        b1, tot1, _ = _proc_stat_jiffies()
        tick = os.sysconf("SC_CLK_TCK")
        available = max(tot1 - tot0, 1) / tick  # CPU-seconds of all CPUs in the interval
        other = max((b1 - b0) / tick - (sum(os.times()[:4]) - own0), 0.0)
        return {"other_cores": other / available * cpus, "cpus": cpus, "loadavg_1min": load1,
                "seconds": seconds, "method": "/proc/stat"}

    def sample(self, interval: float) -> dict:
        """Other processes' use over the next ``interval`` seconds (this process sleeps)."""
        mark = self.start()
        time.sleep(interval)
        return self.stop(mark)


class LoadGuard:
    """Runs each measurement only on an idle machine, and checks it stayed idle.

    Before: a :meth:`CpuLoad.sample`; while busy it waits (polling) up to
    ``opts.wait_idle`` seconds. During: other processes' CPU use over the
    measurement itself; if above the limit, the measurement is repeated while the
    wait budget lasts. Out of budget it raises :class:`LoadRefused`, unless
    ``opts.allow_loaded``, which keeps the result and marks it ``loaded``.
    Every sample goes to ``log``.
    """

    def __init__(self, opts: Options, probe: CpuLoad | None = None, log: list[dict] | None = None):
        self.opts, self.probe = opts, probe or CpuLoad()
        self.log = [] if log is None else log
        self.loaded: list[str] = []  # measurements kept although the machine was busy
        self._said = -math.inf  # when the last "waiting" line was printed

    def _record(self, phase: str, where: str, sample: dict) -> dict:
        sample = {phase: where, **sample, "loaded": sample["other_cores"] > self.opts.max_other_cpu}
        self.log.append(sample)
        return sample

    def _refuse(self, phase: str, where: str, sample: dict):
        raise LoadRefused(
            f"{phase} {where}: other processes used {sample['other_cores']:.2f} cores "
            f"(limit {self.opts.max_other_cpu}; 1-min load average {sample['loadavg_1min']:.2f}); "
            f"waited up to {self.opts.wait_idle:g} s for an idle machine. Timings would be "
            "meaningless: rerun on an idle machine (or with --wait-idle), or pass --allow-loaded "
            "to record them marked as loaded."
        )

    def run(self, where: str, fn: Callable[[], object]):
        """``fn()`` on an idle machine; see the class docstring."""
        deadline = time.monotonic() + self.opts.wait_idle
        while True:
            before = self._record("before", where, self.probe.sample(self.opts.load_interval))
            if before["loaded"]:
                if time.monotonic() < deadline:
                    if time.monotonic() - self._said > 60:
                        self._said = time.monotonic()
                        progress(f"{where}: waiting for an idle machine (others use {before['other_cores']:.2f} cores)")
                    time.sleep(min(5.0, deadline - time.monotonic()))
                    continue
                if not self.opts.allow_loaded:
                    self._refuse("before", where, before)
            mark = self.probe.start()
            result = fn()
            during = self._record("during", where, self.probe.stop(mark))
            progress(f"{where}: done in {during['seconds']:.1f} s (others used {during['other_cores']:.2f} cores)")
            if not (before["loaded"] or during["loaded"]):
                during["accepted"] = True
                return result
            if time.monotonic() >= deadline:
                if not self.opts.allow_loaded:
                    self._refuse("during", where, during)
                self.loaded.append(where)
                during["accepted"] = True
                return result


# --- FLOP bounds ---------------------------------------------------------------------
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


# --- matmul rate ---------------------------------------------------------------------
def measure_matmul_rate(sizes: Sizes, opts: Options) -> dict:
    """Best float32 rate of a square ``N x N`` matmul (FLOP/s), ``N = sizes.matmul_n``: the
    yardstick of the FLOP bounds. For reference also the rate of LISTA's own GEMMs at the
    Stage I batch (``x W2^T`` and ``y W1^T``), which are smaller and thinner."""
    import torch

    N, B, m, n = sizes.matmul_n, sizes.batch_stage1, sizes.m, sizes.n
    g = torch.Generator().manual_seed(opts.seed)
    rand = lambda *shape: torch.randn(*shape, generator=g).to(opts.device)  # noqa: E731
    a, b = rand(N, N), rand(N, N)
    timing = time_repeats(lambda: a @ b, 2, sizes.matmul_repeats, opts.device)
    flops = 2 * N**3
    shapes = {}
    for name, (x, w) in {f"x W2^T ({B}x{n} @ {n}x{n})": (rand(B, n), rand(n, n)),
                         f"y W1^T ({B}x{m} @ {m}x{n})": (rand(B, m), rand(n, m))}.items():
        t = time_repeats(lambda: x @ w.T, 2, sizes.matmul_repeats, opts.device)
        shapes[name] = {"flops_per_s": 2 * x.shape[0] * x.shape[1] * w.shape[0] / t["min"], "timing": t}
    return {"n": N, "flops": flops, "timing": timing, "flops_per_s": flops / timing["min"],
            "gflops_per_s_median": flops / timing["median"] / 1e9, "lista_shapes": shapes}


# --- training ------------------------------------------------------------------------
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


# --- inference -----------------------------------------------------------------------
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


def infer_lista(setup: InferenceSetup, batch: dict, chunk: int):
    """Plain LISTA: all T steps, the last iterate, (N, n)."""
    import torch

    from l2o.train.common import batched_indices

    with torch.no_grad():
        return torch.cat([setup.net(setup.task.model_inputs({k: v[sl] for k, v in batch.items()}))[-1]
                          for sl in batched_indices(len(batch["y"]), chunk)])


def infer_stop_all_steps(setup: InferenceSetup, batch: dict, chunk: int):
    """LISTA-stop computing every step: model forward, policy at all candidates, ``stop_index``.

    Returns ``(prediction (N, n), stop step (N,) 1-based)``.
    """
    import torch

    from l2o.stopping.inference import stop_index
    from l2o.train.common import batched_indices

    task, net = setup.task, setup.net
    steps = torch.tensor(setup.candidates, device=batch["y"].device)
    preds, stops = [], []
    with torch.no_grad():
        stop_logits = task.stop_logit_fn(setup.policy)
        for sl in batched_indices(len(batch["y"]), chunk):
            sub = {k: v[sl] for k, v in batch.items()}
            states = net(task.model_inputs(sub))
            logits = stop_logits(sub, states[steps - 1], steps, net.num_steps).T
            stop = steps[stop_index(logits)]
            preds.append(states[stop - 1, torch.arange(len(stop), device=stop.device)])
            stops.append(stop)
    return torch.cat(preds), torch.cat(stops)


def infer_early_exit(setup: InferenceSetup, batch: dict, chunk: int):
    """LISTA-stop with early exit (:func:`l2o.stopping.inference.predict_early_exit`), chunked
    as :func:`l2o.predict.predict_file` does. Returns ``(prediction, stop step)``."""
    import torch

    from l2o.stopping.inference import predict_early_exit
    from l2o.train.common import batched_indices

    preds, stops = [], []
    for sl in batched_indices(len(batch["y"]), chunk):
        sub = {k: v[sl] for k, v in batch.items() if k == "y"}  # no label at inference
        pred, stop = predict_early_exit(setup.task, setup.net, setup.policy, sub, setup.candidates)
        preds.append(pred)
        stops.append(stop)
    return torch.cat(preds), torch.cat(stops)


def nmse_of(pred, batch: dict) -> float:
    """NMSE (dB, ratio of means) of predictions (N, n) against ``batch['x']``."""
    from l2o.tasks.sparse_recovery.task import nmse_db

    x = batch["x"]
    return nmse_db((pred - x).pow(2).sum(-1).cpu().numpy(), x.pow(2).sum(-1).cpu().numpy())


def measure_inference(setup: InferenceSetup, sizes: Sizes, opts: Options) -> dict:
    """Test-set throughput (examples/s) of LISTA, LISTA-stop (every step) and early exit;
    realised early-exit speed-up beside the ideal ``T / mean stop step``."""
    test, chunk, dev = setup.test, sizes.infer_batch, opts.device
    N, T = len(test["y"]), setup.net.num_steps
    methods = {
        "lista": lambda: infer_lista(setup, test, chunk),
        "lista_stop_all_steps": lambda: infer_stop_all_steps(setup, test, chunk),
        "lista_stop_early_exit": lambda: infer_early_exit(setup, test, chunk),
    }
    out: dict = {"examples": N, "chunk": chunk, "T": T, "candidate_steps": setup.candidates,
                 "source": setup.source, "policy": setup.policy_info}
    for name, fn in methods.items():
        timing = time_repeats(fn, sizes.warmup, sizes.repeats, dev)
        out[name] = {"timing": timing, "examples_per_s": N / timing["median"]}
    pred_all, stop_all = infer_stop_all_steps(setup, test, chunk)
    pred_ee, stop_ee = infer_early_exit(setup, test, chunk)
    mean_stop = float(stop_ee.double().mean())
    realised = out["lista_stop_all_steps"]["timing"]["median"] / out["lista_stop_early_exit"]["timing"]["median"]
    out.update(
        paths_agree=bool((stop_all == stop_ee).all()),
        max_prediction_difference=float((pred_all - pred_ee).abs().max()),
        mean_stop_step=mean_stop,
        stop_step_range=[int(stop_ee.min()), int(stop_ee.max())],
        nmse_db={"lista": nmse_of(infer_lista(setup, test, chunk), test),
                 "lista_stop": nmse_of(pred_ee, test)},
        ideal_speedup=T / mean_stop,
        realised_speedup=realised,
        efficiency=realised / (T / mean_stop),
        # for reference: early exit against plain LISTA, which evaluates no policy at all
        speedup_vs_lista=out["lista"]["timing"]["median"] / out["lista_stop_early_exit"]["timing"]["median"],
    )
    return out


# --- time to accuracy ----------------------------------------------------------------
class _AllReached(Exception):
    """Raised from the FISTA callback once every setting reached the target."""


def first_steps_reaching(A, batch: dict, L, rho, target_db: float, max_steps: int) -> list[int | None]:
    """First FISTA step at which each (L, rho) setting's NMSE on ``batch`` is <= ``target_db``.

    ``L``, ``rho``: equal-length lists. ``None`` where it is not reached in ``max_steps``.
    """
    import torch

    from l2o.algorithms.ista import run_ista

    energy = batch["x"].pow(2).sum(-1).double().mean()
    first: list[int | None] = [None] * len(L)

    def record(t, x):  # x: (S, B, n)
        nmse = 10 * torch.log10((x - batch["x"]).pow(2).sum(-1).double().mean(dim=1) / energy)
        for s, value in enumerate(nmse.tolist()):
            if first[s] is None and value <= target_db:  # NaN/inf never reach
                first[s] = t
        if all(f is not None for f in first):
            raise _AllReached

    try:
        run_ista(A, batch["y"], torch.tensor(L), torch.tensor(rho), max_steps, fast=True, callback=record)
    except _AllReached:
        pass
    return first


def run_fista(A, batch: dict, L: float, rho: float, steps: int, chunk: int):
    """Plain FISTA over ``batch`` in chunks (as LISTA runs), the last iterate (N, n)."""
    import torch

    from l2o.algorithms.ista import run_ista
    from l2o.train.common import batched_indices

    return torch.cat([run_ista(A, batch["y"][sl], L, rho, steps, fast=True)[0]
                      for sl in batched_indices(len(batch["y"]), chunk)])


def choose_fista_setting(setup: InferenceSetup, sizes: Sizes, opts: Options, out: dict) -> tuple[float, float]:
    """FISTA's (L, rho): ``--fista-L/--fista-rho``, or the grid setting that reaches LISTA-stop's
    NMSE in the fewest steps on a stratified validation subset (details go to ``out``)."""
    import torch

    if opts.fista_L is not None and opts.fista_rho is not None:
        out["chosen_by"] = "given"
        return opts.fista_L, opts.fista_rho
    Nv = len(setup.val["y"])
    idx = torch.arange(0, Nv, max(1, Nv // sizes.fista_val_examples), device=setup.task.A.device)
    val = {k: v[idx[: sizes.fista_val_examples]] for k, v in setup.val.items()}
    val_target = nmse_of(infer_early_exit(setup, val, sizes.infer_batch)[0], val)
    grid = [(a, b) for a in sizes.fista_L_grid for b in sizes.fista_rho_grid]
    reach = first_steps_reaching(setup.task.A, val, [g[0] for g in grid], [g[1] for g in grid], val_target,
                                 sizes.fista_max_steps)
    out["grid"] = [{"L": g[0], "rho": g[1], "val_steps": r} for r, g in zip(reach, grid)]
    out["val"] = {"examples": len(val["y"]), "lista_stop_nmse_db": val_target}
    ok = [(r, g) for r, g in zip(reach, grid) if r is not None]
    out["chosen_by"] = "validation grid" if ok else "none reached on validation; default (3, 0.1)"
    return min(ok)[1] if ok else (3.0, 0.1)


def measure_time_to_accuracy(setup: InferenceSetup, sizes: Sizes, opts: Options,
                             guard: LoadGuard | None = None) -> dict:
    """Wall time of FISTA to reach the test NMSE of LISTA-stop (early exit), beside
    LISTA-stop's own early-exit time. (L, rho) from :func:`choose_fista_setting`; the step
    count is the first whose test NMSE reaches the target. Only the two timings run under
    ``guard`` (the search for the setting and the step count is not timed)."""
    A, test, chunk, dev = setup.task.A, setup.test, sizes.infer_batch, opts.device
    target_db = nmse_of(infer_early_exit(setup, test, chunk)[0], test)
    out: dict = {"source": setup.source, "max_steps": sizes.fista_max_steps}
    L, rho = choose_fista_setting(setup, sizes, opts, out)
    steps = first_steps_reaching(A, test, [L], [rho], target_db, sizes.fista_max_steps)[0]
    run_steps = steps or sizes.fista_max_steps

    def timed() -> tuple[dict, dict]:
        return (time_repeats(lambda: infer_early_exit(setup, test, chunk), sizes.warmup, sizes.repeats, dev),
                time_repeats(lambda: run_fista(A, test, L, rho, run_steps, chunk), sizes.warmup, sizes.repeats, dev))

    lista_timing, fista_timing = (guard or LoadGuard(Options(allow_loaded=True))).run("time_to_accuracy", timed)
    out["lista_stop"] = {"timing": lista_timing, "nmse_db": target_db}
    out["fista"] = {"L": L, "rho": rho, "chosen_by": out.pop("chosen_by"), "reached": steps is not None,
                    "steps": run_steps, "nmse_db": nmse_of(run_fista(A, test, L, rho, run_steps, chunk), test),
                    "timing": fista_timing}
    out["fista_over_lista_stop"] = fista_timing["median"] / lista_timing["median"]
    return out


# --- workflow overhead ---------------------------------------------------------------
def _workflow_helpers():
    """``tests/workflow_helpers``, importable, with its REPO pointing at this checkout."""
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import workflow_helpers

    if not (Path(workflow_helpers.REPO) / "Snakefile").is_file():
        workflow_helpers.REPO = REPO  # its parents[2] points above the checkout
    return workflow_helpers


def prepare_tiny_workflow(dest: Path) -> dict:
    """Copy the workflow with the tiny config to ``dest`` and run it to completion once."""
    helpers = _workflow_helpers()
    work = helpers.copy_workflow(dest)
    t0 = time.perf_counter()
    helpers.run_snakemake(work)
    return {"workdir": str(work), "first_run_s": time.perf_counter() - t0}


def measure_snakemake_noop(repeats: int, warmup: int = 1, prepare: Callable[[Path], dict] = prepare_tiny_workflow,
                           command: list[str] | None = None, guard: LoadGuard | None = None) -> dict:
    """Wall time of ``snakemake --cores 2`` when every output is up to date (tiny config, temp dir).

    The invocation is the one a user types (a fresh interpreter each time); each run's
    output must say that nothing is to be done. Only the timed runs are under ``guard``
    (the full first run is not timed).
    """
    command = command or [sys.executable, "-m", "snakemake", "--cores", "2"]
    with tempfile.TemporaryDirectory(prefix="l2o-bench-workflow-") as tmp:
        info = prepare(Path(tmp) / "wf")
        work = Path(info.get("workdir", tmp))
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}

        def invoke() -> bool:
            proc = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"no-op snakemake failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
            return "Nothing to be done" in proc.stdout + proc.stderr

        def timed() -> tuple[dict, bool]:
            nothing = [invoke() for _ in range(warmup)]
            samples = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                nothing.append(invoke())
                samples.append(time.perf_counter() - t0)
            return {**summarise(samples), "warmup": warmup}, all(nothing)

        timing, nothing = (guard or LoadGuard(Options(allow_loaded=True))).run("snakemake", timed)
    return {**{k: v for k, v in info.items() if k != "workdir"}, "command": " ".join(command[-3:]),
            "timing": timing, "nothing_to_be_done": nothing, "environment": snakemake_environment()}


def snakemake_environment() -> dict:
    """What slows every snakemake start: installed executor plugins (all are imported at start)
    and SLURM's ``scontrol`` (the SLURM plugin runs ``scontrol show config`` on import, which
    takes up to its 10 s timeout when no controller answers)."""
    import importlib.metadata
    import shutil

    plugins = sorted({d.metadata["Name"] for d in importlib.metadata.distributions()
                      if (d.metadata["Name"] or "").lower().startswith("snakemake-executor-plugin")})
    return {"executor_plugins": plugins, "scontrol": shutil.which("scontrol")}


# --- targets and report --------------------------------------------------------------
def _get(results: dict, *keys):
    for k in keys:
        if not isinstance(results, dict) or k not in results:
            return None
        results = results[k]
    return results


def targets_for(sizes: dict) -> list[tuple]:
    """The issue's targets: (name, path into the results, comparison, threshold, unit)."""
    b1 = sizes["batch_stage1"]
    return [
        (f"Stage I iteration (batch {b1}) within 1.25x of the FLOP lower bound",
         ("training", "stage1", "ratio_to_bound"), "<=", 1.25, "x bound"),
        ("Stage II iteration >= 3x faster than with the frozen model under autograd",
         ("training", "stage2_speedup", "median"), ">=", 3.0, "x"),
        ("Early exit realises >= 80% of the ideal speed-up",
         ("inference", "efficiency"), ">=", 0.8, "of ideal"),
        ("snakemake with nothing to do returns in < 3 s",
         ("snakemake", "timing", "median"), "<", 3.0, "s"),
        (f"Stage I (batch {b1}) peaks under 1 GiB (RSS)",
         ("training", "stage1", "peak_rss_mib"), "<", 1024.0, "MiB"),
    ]


def evaluate_targets(results: dict) -> list[dict]:
    """Each target with its measured value (median) and met / not met / not measured."""
    ops = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}
    rows = []
    for name, path, op, threshold, unit in targets_for(results["sizes"]):
        value = _get(results, *path)
        met = None if value is None else bool(ops[op](value, threshold))
        rows.append({"target": name, "value": value, "op": op, "threshold": threshold, "unit": unit,
                     "met": met, "status": {None: "not measured", True: "met", False: "NOT met"}[met]})
    return rows


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"
    return str(x)


def _spread(t: dict | None) -> str:
    return "-" if not t else f"{_fmt(t['min'])}–{_fmt(t['max'])} (IQR {_fmt(t['q1'])}–{_fmt(t['q3'])}, n={t['repeats']})"


def render_markdown(results: dict) -> str:
    """The targets table and a details table, with the machine and load in the header."""
    m, s = results["machine"], results["sizes"]
    lines = [f"# l2o benchmark — {m['date']}", ""]
    if results["quick"]:
        lines += ["**QUICK RUN (tiny sizes): the targets refer to the paper sizes; these values only "
                  "check that the suite works.**", ""]
    if results["loaded"]:
        lines += ["**LOADED MACHINE: other processes used the cores during "
                  f"{', '.join(results['loaded_measurements'])} (--allow-loaded); those timings are not "
                  "trustworthy.**", ""]
    checks = results["load_checks"]
    during = [c["other_cores"] for c in checks if c.get("accepted")]
    repeated = sum(1 for c in checks if "during" in c and not c.get("accepted"))
    waits = sum(1 for c in checks if "before" in c and c["loaded"])
    lines += [
        f"Machine: {m['cpu_model']}, {m['cores_usable']} usable cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), device `{m['device']}`, host `{m['host']}`.  ",
        f"Sizes: m={s['m']}, n={s['n']}, T={s['T']}, policy {'-'.join(map(str, s['hidden']))}; "
        f"{s['warmup']} warm-up + {s['repeats']} timed repeats.  ",
        f"Load: other processes used at most {_fmt(max(during, default=None))} cores (average over a "
        f"measurement; limit {results['options']['max_other_cpu']}); {waits} busy checks waited out, "
        f"{repeated} disturbed measurements repeated.",
        "", "## Targets", "", "| Target | Measured (median) | Target | Status |", "|---|---|---|---|",
    ]
    for row in results["targets"]:
        lines.append(f"| {row['target']} | {_fmt(row['value'])} {row['unit']} | {row['op']} {_fmt(row['threshold'])} "
                     f"| {'**' + row['status'] + '**' if row['met'] is False else row['status']} |")
    lines += ["", "## Details", "", "| Measurement | Median | Spread: min–max | Bound / reference | Ratio | Peak RSS |",
              "|---|---|---|---|---|---|"]
    mm = results.get("matmul")
    if mm:
        lines.append(f"| float32 matmul {mm['n']}² | {_fmt(mm['timing']['median'])} s "
                     f"| {_spread(mm['timing'])} | best {_fmt(mm['flops_per_s'] / 1e9)} GFLOP/s | - | - |")
        for name, r in mm.get("lista_shapes", {}).items():
            lines.append(f"| float32 matmul {name} | {_fmt(r['timing']['median'])} s | {_spread(r['timing'])} "
                         f"| best {_fmt(r['flops_per_s'] / 1e9)} GFLOP/s | {_fmt(r['flops_per_s'] / mm['flops_per_s'])}× "
                         "the square rate | - |")
    tr = results.get("training") or {}
    for kind in TRAINING_KINDS:
        r = tr.get(kind)
        if r:
            lines.append(f"| {r['description']}, batch {r['batch']}: s/iteration | {_fmt(r['timing']['median'])} s "
                         f"| {_spread(r['timing'])} | FLOP bound {_fmt(r['bound_s'])} s "
                         f"| {_fmt(r['ratio_to_bound'])}× bound | {_fmt(r['peak_rss_mib'])} MiB |")
    if "stage2_speedup" in tr:
        sp = tr["stage2_speedup"]
        lines.append(f"| Stage II speed-up of no_grad over autograd | {_fmt(sp['median'])}× "
                     f"| {_fmt(sp['worst'])}–{_fmt(sp['best'])}× | FLOP ratio {_fmt(sp['flop_ratio'])}× "
                     f"({_fmt(sp.get('flop_ratio_free_policy'))}× were the policy free) | - | - |")
    inf = results.get("inference")
    if inf:
        for name, label in (("lista", "LISTA (T steps)"), ("lista_stop_all_steps", "LISTA-stop, every step"),
                            ("lista_stop_early_exit", "LISTA-stop, early exit")):
            r = inf[name]
            lines.append(f"| Inference {label}, {inf['examples']} examples | {_fmt(r['examples_per_s'])} ex/s "
                         f"| {_spread(r['timing'])} | - | - | - |")
        lines.append(f"| Early-exit speed-up over every-step (mean stop {_fmt(inf['mean_stop_step'])} of T={inf['T']}) "
                     f"| {_fmt(inf['realised_speedup'])}× | - | ideal {_fmt(inf['ideal_speedup'])}× "
                     f"| {_fmt(inf['efficiency'])} of ideal | - |")
        lines.append(f"| Early-exit speed-up over plain LISTA (no policy) | {_fmt(inf['speedup_vs_lista'])}× "
                     "| - | - | - | - |")
    tta = results.get("time_to_accuracy")
    if tta:
        f = tta["fista"]
        reached = "" if f["reached"] else " (NOT reached)"
        lines.append(f"| FISTA to LISTA-stop's NMSE {_fmt(tta['lista_stop']['nmse_db'])} dB: {f['steps']} steps{reached}, "
                     f"L={f['L']}, rho={f['rho']} | {_fmt(f['timing']['median'])} s | {_spread(f['timing'])} "
                     f"| LISTA-stop {_fmt(tta['lista_stop']['timing']['median'])} s "
                     f"| {_fmt(tta['fista_over_lista_stop'])}× | - |")
    sm = results.get("snakemake")
    if sm:
        lines.append(f"| `snakemake --cores 2`, nothing to do (tiny config) | {_fmt(sm['timing']['median'])} s "
                     f"| {_spread(sm['timing'])} | - | - | - |")
    notes = []
    env = (sm or {}).get("environment") or {}
    if env.get("scontrol") and any("slurm" in p.lower() for p in env.get("executor_plugins", [])):
        notes.append("The SLURM executor plugin is installed and `scontrol` is on PATH: every snakemake start "
                     "runs `scontrol show config` (up to 10 s when no SLURM controller answers).")
    if inf:
        notes.append(f"Inference/time-to-accuracy model: {inf['source']}.")
    for name, err in results["errors"].items():
        notes.append(f"Error in `{name}`: {err.splitlines()[0] if err else err}")
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: Path) -> tuple[Path, Path]:
    """``<out>/<host>-<date>[-quick].json`` and ``<out>/latest.md``."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = results["machine"]["date"].replace(":", "").replace("+0000", "Z")
    name = f"{results['machine']['host']}-{stamp}{'-quick' if results['quick'] else ''}.json"
    json_path = out / name
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path = out / "latest.md"
    md_path.write_text(render_markdown(results))
    return json_path, md_path


# --- the suite -----------------------------------------------------------------------
def run_suite(sizes: Sizes, opts: Options, probe: CpuLoad | None = None,
              snakemake_kwargs: dict | None = None) -> dict:
    """Every measurement not in ``opts.skip``, each under a :class:`LoadGuard`.

    Raises :class:`LoadRefused` on a busy machine. A measurement that fails otherwise is
    recorded under ``errors`` and the others still run. ``probe`` replaces
    :class:`CpuLoad`, ``snakemake_kwargs`` go to :func:`measure_snakemake_noop` (for tests).
    """
    import torch

    if opts.threads:
        torch.set_num_threads(opts.threads)
    guard = LoadGuard(opts, probe or CpuLoad())
    results: dict = {"schema": 1, "quick": opts.quick, "machine": machine_info(opts.device),
                     "sizes": asdict(sizes), "options": {k: str(v) if isinstance(v, Path) else v
                                                         for k, v in asdict(opts).items()},
                     "load_checks": guard.log, "errors": {}}

    def attempt(name: str, fn: Callable[[], dict], guarded: bool = True) -> dict | None:
        """``results[name] = fn()`` (under the guard unless ``fn`` guards its own timed parts)."""
        if name in opts.skip:
            return None
        try:
            results[name] = guard.run(name, fn) if guarded else fn()
        except LoadRefused:
            raise
        except Exception as err:  # noqa: BLE001 - recorded, the other measurements still run
            results["errors"][name] = f"{type(err).__name__}: {err}"
        return results.get(name)

    mm = attempt("matmul", lambda: measure_matmul_rate(sizes, opts))

    def training() -> dict:
        rate = mm["flops_per_s"] if mm else guard.run("matmul", lambda: measure_matmul_rate(sizes, opts))["flops_per_s"]
        return measure_training(sizes, opts, rate, guard)

    attempt("training", training, guarded=False)  # guards each stage itself
    setup = None
    if not {"inference", "time_to_accuracy"} <= set(opts.skip):
        try:  # not timed: outside the guard
            setup = build_inference_setup(sizes, opts)
        except Exception as err:  # noqa: BLE001
            results["errors"]["inference_setup"] = f"{type(err).__name__}: {err}"
    if setup is not None:
        attempt("inference", lambda: measure_inference(setup, sizes, opts))
        attempt("time_to_accuracy", lambda: measure_time_to_accuracy(setup, sizes, opts, guard), guarded=False)
    attempt("snakemake", lambda: measure_snakemake_noop(sizes.snakemake_repeats, guard=guard,
                                                        **(snakemake_kwargs or {})), guarded=False)
    results["loaded_measurements"] = guard.loaded
    results["loaded"] = bool(guard.loaded)
    results["targets"] = evaluate_targets(results)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (checks the suite, not the targets)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results folder")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--allow-loaded", action="store_true", help="record timings on a busy machine, marked as loaded")
    p.add_argument("--max-other-cpu", type=float, default=0.25,
                   help="cores other processes may use before the run refuses (default 0.25)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for an idle machine (and repeat a measurement disturbed "
                        "by other work) before refusing (default 0: refuse at once)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7, quick 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up runs (default 2, quick 1)")
    p.add_argument("--skip", nargs="*", default=[], choices=MEASUREMENTS, help="measurements to leave out")
    p.add_argument("--in-process", action="store_true",
                   help="time training in this process (faster; peak memory then mixes stages)")
    p.add_argument("--checkpoint", type=Path, default=None, help="a trained stopping checkpoint (needs --data)")
    p.add_argument("--data", type=Path, default=None, help="the problem file of --checkpoint")
    p.add_argument("--fista-L", type=float, default=None, help="FISTA's L (with --fista-rho: skip the grid)")
    p.add_argument("--fista-rho", type=float, default=None)
    p.add_argument("--mean-stop", type=float, default=None, help="mean stop step of the controlled policy (T/2)")
    p.add_argument("--stop-spread", type=float, default=None, help="spread of its stop steps (T/8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker is not None:  # internal: one training measurement in a fresh process
        print(json.dumps(time_training_step(json.loads(args.worker))))
        return 0
    global VERBOSE
    VERBOSE = True
    sizes = QUICK if args.quick else PAPER
    sizes = replace(sizes, **{k: v for k, v in (("repeats", args.repeats), ("warmup", args.warmup)) if v is not None})
    opts = Options(device=args.device, threads=args.threads, allow_loaded=args.allow_loaded,
                   max_other_cpu=args.max_other_cpu, wait_idle=args.wait_idle, in_process=args.in_process, skip=tuple(args.skip),
                   checkpoint=args.checkpoint, data=args.data, fista_L=args.fista_L, fista_rho=args.fista_rho,
                   mean_stop=args.mean_stop, stop_spread=args.stop_spread, seed=args.seed, quick=args.quick)
    try:
        results = run_suite(sizes, opts)
    except LoadRefused as err:
        print(f"bench: refusing to report: {err}", file=sys.stderr)
        return EXIT_REFUSED
    json_path, md_path = write_results(results, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return EXIT_ERRORS if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
