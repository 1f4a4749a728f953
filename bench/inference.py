"""Inference throughput: LISTA, LISTA-stop computing every step, and LISTA-stop with early
exit on the test set; the realised early-exit speed-up beside the ideal one."""

from __future__ import annotations

from bench.config import Options, Sizes
from bench.inference_setup import InferenceSetup
from bench.timing import time_repeats


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
