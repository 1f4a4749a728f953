"""The denoising part of the report: Table 6's layout with the paper's numbers beside ours,
the stop layer per noise level, time per image, a picture row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from l2o.report import plots
from l2o.report.results import TaskResults
from l2o.report.sections import figures_section, findings_section, optional_ablations, optional_tradeoff, skeptic_section
from l2o.report.stats import cell, fmt
from l2o.tasks.denoising import published

# Paper, Table 6 (mean PSNR on BSD68, dB; 65 and 75 not seen in training).
PAPER = {
    "dncnn_stop": {35: 27.61, 45: 26.59, 55: 25.79, 65: 23.56, 75: 18.62},
    "dncnn": {35: 27.60, 45: 26.56, 55: 25.71, 65: 22.19, 75: 17.90},
    "bm3d": {35: 26.81, 45: 25.97, 55: 25.21, 65: 24.60, 75: 24.08},
}
LABELS = {
    "dncnn": "DnCNN", "dncnn_stop": "DnCNN-stop (I+II)", "dncnn_stop_ft": "DnCNN-stop (I+II+III)",
    "dncnn_matched": "DnCNN, DnCNN-stop's training budget", "aevb": "AEVB",
    "dncnn_fixed_depth": "fixed depth ≈ mean stop", "dncnn_stop_heuristic": "non-learned rule, same cost",
    "bm3d": "BM3D (given the true σ)", "nlm": "non-local means (blind, own σ estimate)", "noisy": "noisy input",
}


def label(method: str) -> str:
    return LABELS.get(method, method)


def sigma_of(condition: str) -> int:
    """``sigma65`` -> 65."""
    return int(condition.removeprefix("sigma"))


def unseen(sigma: float, data: dict) -> bool:
    """Whether training never drew noise level ``sigma`` (config section ``data``).

    >>> unseen(65, {"train_sigmas": [35, 45, 55], "train_sigma_mode": "set"})
    True
    >>> unseen(40, {"train_sigmas": [55], "train_sigma_mode": "uniform"})
    False
    """
    if data.get("train_sigma_mode") == "uniform":
        return sigma > max(data["train_sigmas"])
    return sigma not in set(data["train_sigmas"])


def _v(summary, method, cond, metric="psnr"):
    return cell(summary, method, cond, metric)


def table6(res: TaskResults, metric: str = "psnr") -> pd.DataFrame:
    """Rows per noise level: our methods (mean ± CI over seeds) and the paper's numbers (PSNR only)."""
    s = res.summary
    data = res.data_meta["config"]
    cols = [("DnCNN-stop", "dncnn_stop", metric), ("DnCNN", "dncnn", metric),
            ("DnCNN, same budget", "dncnn_matched", metric), ("Stage I net, last head", "dncnn_stop", f"{metric}_last"),
            ("DnCNN-stop III", "dncnn_stop_ft", metric), ("BM3D (true σ)", "bm3d", metric),
            ("NLM (blind)", "nlm", metric), ("noisy", "noisy", metric)]
    cols = [c for c in cols if not s[(s.method == c[1]) & (s.metric == c[2])].empty]
    digits = 3 if metric == "ssim" else 2
    rows = []
    for cond in res.conditions():
        sigma = None if cond == "mixed" else sigma_of(cond)
        name = "all" if sigma is None else (f"*{sigma}" if unseen(sigma, data) else f"{sigma}")
        row = {"σ": name}
        for title, method, m in cols:
            row[title] = fmt(*_v(s, method, cond, m), digits=digits)
        if metric == "psnr":
            for method, title in (("dncnn_stop", "paper DnCNN-stop"), ("dncnn", "paper DnCNN"), ("bm3d", "paper BM3D")):
                row[title] = fmt(PAPER[method].get(sigma, float("nan")) if sigma else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows)


def stop_table(res: TaskResults) -> pd.DataFrame:
    """Per noise level: the learned stop, the oracle's best head and what each gives."""
    s, stop = res.summary, res.method("stop")
    info = res.curves[0].get(stop, {})
    rows = []
    for cond in res.conditions():
        row = {"σ": cond.removeprefix("sigma")}
        row["mean stop layer"] = fmt(_v(s, stop, cond, "mean_stop")[0])
        hist = info.get("oracle_histogram_by_condition", {}).get(cond)
        if hist is None and cond == "mixed":
            per = [np.asarray(h) for h in info.get("oracle_histogram_by_condition", {}).values()]
            hist = np.sum(per, axis=0) if per else None
        if hist is not None:
            hist = np.asarray(hist, dtype=float)
            row["oracle's mean best head"] = fmt(float((hist * np.arange(1, len(hist) + 1)).sum() / max(hist.sum(), 1)))
        row["PSNR at stop"] = fmt(_v(s, stop, cond)[0])
        row["PSNR at last head"] = fmt(_v(s, stop, cond, "psnr_last")[0])
        row["PSNR at oracle head"] = fmt(_v(s, stop, cond, "psnr_oracle")[0])
        row["fixed depth ≈ mean cost"] = fmt(_v(s, res.method("fixed_depth"), cond)[0])
        rows.append(row)
    return pd.DataFrame(rows)


def time_table(res: TaskResults) -> pd.DataFrame:
    """Seconds per test image (first seed's evaluation; classical from its own job)."""
    rows = []
    first = res.curves[0]
    for method, info in first.items():
        if not isinstance(info, dict) or "examples" not in info:
            continue
        n = info["examples"]
        if "last_only_seconds" in info:
            rows.append({"method": f"{label(method)}, last output only", "seconds per image": f"{info['last_only_seconds'] / n:.4f}"})
        if "early_exit_seconds" in info:
            rows.append({"method": f"{label(method)}, early exit", "seconds per image": f"{info['early_exit_seconds'] / n:.4f}"})
            rows.append({"method": f"{label(method)}, every head computed",
                         "seconds per image": f"{info['all_steps_seconds'] / n:.4f}"})
    for method in ("bm3d", "nlm"):
        v = cell(res.summary, method, "mixed", "seconds_per_image")[0]
        if np.isfinite(v):
            rows.append({"method": label(method), "seconds per image": f"{v:.4f}"})
    return pd.DataFrame(rows)


def picture_row(res: TaskResults):
    """Clean, noisy, DnCNN, DnCNN-stop, BM3D on one test image at the showcase noise level."""
    if not res.showcase or "clean" not in res.showcase[0]:
        return None
    from l2o.tasks.denoising.metrics import psnr
    import torch

    show, classic = res.showcase[0], res.classical_showcase or {}
    clean = show["clean"]
    panels = [("clean", clean), (f"noisy (σ = {float(show['sigma']):g})", show["noisy"])]
    if "baseline" in show:
        panels.append(("DnCNN", show["baseline"]))
    if "stop" in show:
        panels.append((f"DnCNN-stop (stops at {int(show['stop_step'])})", show["stop"]))
    if "bm3d" in classic:
        panels.append(("BM3D (true σ)", classic["bm3d"]))
    elif "nlm" in classic:
        panels.append(("NLM (blind)", classic["nlm"]))
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=8)
        if title != "clean":
            p = float(psnr(torch.from_numpy(np.asarray(img, np.float64))[None, None],
                           torch.from_numpy(np.asarray(clean, np.float64))[None, None]))
            ax.set_xlabel(f"{p:.2f} dB", fontsize=9)
    return plots.save(fig, res.plots_dir / f"{res.name}_pictures.png")


def findings(res: TaskResults) -> list[str]:
    """Plain statements per noise level: what stopping buys, where, and where it does not."""
    s, out = res.summary, []
    conds = [c for c in res.conditions() if c != "mixed"]
    data = res.data_meta["config"]
    diffs = []
    for c in conds:
        stop, plain, matched = _v(s, "dncnn_stop", c)[0], _v(s, "dncnn", c)[0], _v(s, "dncnn_matched", c)[0]
        if np.isfinite(stop) and np.isfinite(plain):
            diffs.append(f"σ {c.removeprefix('sigma')}{' (unseen)' if unseen(sigma_of(c), data) else ''}: "
                         f"{stop - plain:+.2f} dB vs DnCNN"
                         + (f", {stop - matched:+.2f} dB vs DnCNN with the same budget" if np.isfinite(matched) else ""))
    if diffs:
        out.append("DnCNN-stop minus the plain DnCNN (paper Table 6: +0.01, +0.03, +0.08, +1.37, +0.72 dB at "
                   "σ 35–75): " + "; ".join(diffs) + ".")
    stops = {c: _v(s, "dncnn_stop", c, "mean_stop")[0] for c in conds}
    stops = {c: v for c, v in stops.items() if np.isfinite(v)}
    if len(stops) >= 2:
        xs = np.array([sigma_of(c) for c in stops])
        ys = np.array(list(stops.values()))
        trend = np.polyfit(xs, ys, 1)[0] if np.ptp(ys) > 0 else 0.0
        if abs(trend) < 1e-3:
            verdict = "the same depth at every noise level: the policy does not adapt depth to the noise"
        elif trend > 0:
            verdict = "deeper for stronger noise, as the hypothesis 'low noise needs fewer layers' predicts"
        else:
            verdict = "SHALLOWER for stronger noise, the opposite of 'low noise needs fewer layers'"
        out.append("Mean stop layer by σ: " + ", ".join(f"{c.removeprefix('sigma')}: {v:.2f}" for c, v in stops.items())
                   + f" — {verdict}.")
    bm3d = {c: _v(s, "bm3d", c)[0] for c in conds}
    if any(np.isfinite(v) for v in bm3d.values()):
        wins = [c.removeprefix("sigma") for c in conds if _v(s, "dncnn_stop", c)[0] > bm3d[c]]
        out.append("DnCNN-stop beats BM3D (given the true σ) at σ " + (", ".join(wins) if wins else "none")
                   + " (paper: at the seen levels 35–55, not at 65/75).")
    elif res.classical_info is not None and not res.classical_info.get("bm3d"):
        out.append("BM3D is absent from this run: the optional package `bm3d` (non-commercial licence) is not "
                   "installed (pip install bm3d)." if res.classical_info.get("bm3d_requested")
                   else "BM3D is switched off in this run (classical.bm3d: false).")
    return out


def setting_text(res: TaskResults) -> list[str]:
    meta, cfg = res.data_meta, res.config
    d = meta["config"]
    model = cfg["model"]
    names = {split: [im["name"] for im in images] for split, images in meta.get("images", {}).items()}
    source = ("scikit-image's built-in photographs as a stand-in for BSD400 / Set12 / BSD68 (train: "
              f"{', '.join(sorted(set(names.get('train', []))))}; validation: {', '.join(names.get('val', []))}; "
              f"test: {', '.join(names.get('test', []))})" if d["source"] == "skimage"
              else f"images from {d['train_dir']} (train), {d['val_dir']} (validation), {d['test_dir']} (test)")
    noise = (f"σ drawn per patch from {d['train_sigmas']}" if d["train_sigma_mode"] == "set"
             else f"σ ~ U[0, {max(d['train_sigmas'])}] per patch")
    kind = (f"Non-blind Gaussian denoising: one network for σ = {d['train_sigmas'][0]:g} alone"
            if published.nonblind(d) else "Blind Gaussian denoising: one network for every noise level")
    return [
        f"{kind}, never told σ. Data: {source}; "
        f"val/test images centre-cropped to {d['crop']} px" + (" " if d["crop"] else " (full size) ")
        + f"with noise fixed by a seed per image and σ. Training: {d['patch_size']}×{d['patch_size']} "
        f"patches (flips/rotations), {noise}; test σ {d['test_sigmas']} (those not in training are unseen).",
        f"Model: DnCNN with {model['layers']} conv layers, {model['channels']} channels, BN, residual, and a "
        f"'{model['head']}' output head after each intermediate layer: T = {model['layers'] - 1} outputs "
        f"(paper: 20 layers, 64 channels, 2-conv heads). Budget: plain DnCNN {cfg['baseline']['iterations']} "
        f"iterations (last output only), Stage I {cfg['stage1']['iterations']} ({cfg['stage1']['loss']}, "
        f"β = {cfg['stage1']['beta']}, from the {cfg['stage1']['init']}), Stage II {cfg['stage2']['iterations']}; "
        f"{res.n_seeds} seed(s). PSNR in dB (estimates clamped to [0, 1]), mean over images; ± is the 95% CI over "
        "seeds. The paper's numbers are on BSD68 with a 20-layer network trained for 100 epochs: a different "
        "data set, size and budget are not expected to match them.",
        budget_text(cfg),
    ]


def budget_text(cfg: dict) -> str:
    """Whether DnCNN-stop and the plain DnCNN had the same training, and what controls for it."""
    b, s1 = cfg["baseline"], cfg["stage1"]
    if s1["init"] == "scratch":
        same = s1["iterations"] == b["iterations"] and s1["batch_size"] == b["batch_size"]
        return ("Stage I trains the network with heads from scratch" + (
            f" for as many updates as the plain DnCNN ({b['iterations']} of {b['batch_size']} patches): the two "
            "had the same training budget, so the plain DnCNN is itself the matched control." if same else
            f" ({s1['iterations']} updates of {s1['batch_size']} patches; the plain DnCNN had {b['iterations']} of "
            f"{b['batch_size']}): their budgets differ."))
    return (f"Stage I is warm-started from the plain DnCNN (the released recipe): DnCNN-stop had "
            f"{b['iterations']} + {s1['iterations']} updates, the plain DnCNN {b['iterations']}; the DnCNN "
            "trained from the same start for Stage I's updates with its plain loss (column 'same budget', when "
            "matched.enabled) separates the oracle objective from the extra training.")


def sections(res: TaskResults) -> list[tuple[str, list]]:
    """The denoising part of the report."""
    pictures = picture_row(res)
    return [
        ("Setting", setting_text(res)),
        findings_section(res, findings(res)),
        *optional_tradeoff(res),
        ("Table 6: mean PSNR (dB) per noise level, ours vs the paper (* = unseen in training)", [table6(res)]),
        *published.section(res),  # the standard BSD68 table (Zhang et al. 2017) when tested on BSD68
        ("Mean SSIM per noise level", [table6(res, "ssim")]),
        ("Where does the policy stop? Per noise level", [stop_table(res)]),
        *optional_ablations(res),
        skeptic_section(res),
        ("Time per image (test set, this machine)", [
            time_table(res),
            "One pass over the test images after a one-image warm-up, beside the other jobs of the run: a rough "
            "figure. `python -m bench.denoising` measures early exit against all layers properly (medians, the "
            "ideal speed-up in FLOPs)."]),
        figures_section(res, label, "PSNR (dB)", condition="noise level σ (* unseen in training)",
                        more=[pictures] if pictures is not None else [],
                        condition_label=lambda c: ("*" if unseen(sigma_of(c), res.data_meta["config"]) else "")
                        + c.removeprefix("sigma")),
    ]
