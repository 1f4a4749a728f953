"""Time to accuracy: FISTA's wall time to reach the test NMSE of LISTA-stop (early exit),
beside LISTA-stop's own time; FISTA's (L, rho) given or chosen on a validation grid."""

from __future__ import annotations

from bench.config import Options, Sizes
from bench.inference import infer_early_exit, nmse_of
from bench.inference_setup import InferenceSetup
from bench.load import LoadGuard
from bench.timing import time_repeats


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
