"""The l2o benchmark suite: ``python -m bench.run [--quick] [--out bench/results]``.

Measurements (one function each, in the module named; ``bench/README.md`` says what and why):

* :func:`bench.matmul.measure_matmul_rate`: float32 square-matmul rate, the yardstick of the
  FLOP bounds;
* :func:`bench.training.measure_training`: seconds per training iteration of the LISTA
  baseline, Stage I and Stage II (and Stage II with the frozen model under autograd), each in
  a fresh subprocess (:func:`~bench.training.time_training_step`) so that peak memory (RSS)
  does not mix;
* :func:`bench.inference.measure_inference`: test-set throughput of LISTA, LISTA-stop
  computing every step, and LISTA-stop with early exit, beside the ideal early-exit speed-up;
* :func:`bench.time_to_accuracy.measure_time_to_accuracy`: FISTA's wall time to the NMSE
  LISTA-stop reaches;
* :func:`bench.workflow.measure_snakemake_noop`: a ``snakemake`` invocation with nothing to do.

Each measurement runs under a :class:`~bench.load.LoadGuard`: the load of other processes is
sampled before it and measured over it; if they visibly use the cores the run refuses (exit 2),
unless ``--wait-idle`` lets it wait and repeat, or ``--allow-loaded`` marks the results.
Results go to ``<out>/<host>-<date>.json`` and ``<out>/latest.md`` (:mod:`bench.report`).
This module is only the suite driver (:func:`run_suite`) and the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

from bench import load
from bench.config import PAPER, QUICK, REPO, Options, Sizes
from bench.inference import measure_inference
from bench.inference_setup import build_inference_setup
from bench.load import CpuLoad, LoadGuard, LoadRefused, machine_info
from bench.matmul import measure_matmul_rate
from bench.report import evaluate_targets, write_results
from bench.time_to_accuracy import measure_time_to_accuracy
from bench.training import measure_training, time_training_step
from bench.workflow import measure_snakemake_noop

MEASUREMENTS = ("matmul", "training", "inference", "time_to_accuracy", "snakemake")
EXIT_ERRORS, EXIT_REFUSED = 1, 2
# CpuLoad is imported from here by bench.dncnn_cost, and patched here by the tests
# (run_suite looks it up in this module)


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
    load.VERBOSE = True  # progress lines on stderr
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
