"""Published denoising numbers beside ours: the standard BSD68 table of Zhang et al. (2017).

Zhang, Zuo, Chen, Meng, Zhang, "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for
Image Denoising", IEEE TIP 2017, Table 2: mean PSNR (dB) on BSD68 (68 grey images, noise added
to the 8-bit images scaled to [0, 1], not clipped), as the authors' repository repeats it. BM3D is
given the true sigma; DnCNN-S is one network per sigma; DnCNN-B one network for sigma in [0, 55].

Two views, both over the rows of ``summary.csv`` (``task, method, condition, metric, value``):

* :func:`task_table` — one task's part of the report: its own BM3D, DnCNN and DnCNN-stop at
  the published noise levels it was tested at, with the published rows and the gap;
* :func:`standard_table` — the whole standard table of ``configs/denoising-standard.yaml``
  across its four tasks (the blind ``denoising`` and the non-blind ``denoising_sigma<σ>``):
  ``python -m l2o.tasks.denoising.published results/summary.csv``.

Numbers are only put beside ours when the test set is BSD68 (:func:`is_bsd68`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: where the published rows come from, printed with them
SOURCE = "Zhang et al. 2017 (DnCNN, IEEE TIP), Table 2: mean PSNR on BSD68"
#: published mean PSNR (dB) on BSD68 by method and sigma
PUBLISHED: dict[str, dict[int, float]] = {
    "BM3D": {15: 31.07, 25: 28.57, 50: 25.62},
    "DnCNN-S": {15: 31.73, 25: 29.23, 50: 26.23},
    "DnCNN-B": {15: 31.61, 25: 29.16, 50: 26.23},
}
SIGMAS = (15, 25, 50)
BSD68_NAMES = ("BSD68", "Set68")


def is_bsd68(data_config: dict, n_test_images: int | None = None) -> bool:
    """Whether a run's test set is BSD68: a folder named BSD68 (or Set68, the released code's name)
    holding 68 images when the count is known.

    >>> is_bsd68({"source": "folders", "test_dir": "data/denoising/BSD68"}, 68)
    True
    >>> is_bsd68({"source": "skimage", "test_dir": None})
    False
    """
    if data_config.get("source") != "folders" or not data_config.get("test_dir"):
        return False
    named = Path(str(data_config["test_dir"]).rstrip("/")).name in BSD68_NAMES
    return named and (n_test_images is None or n_test_images == 68)


def _value(summary: pd.DataFrame, method: str, sigma: int, task: str | None = None) -> float:
    rows = summary[(summary.method == method) & (summary.condition == f"sigma{sigma}") & (summary.metric == "psnr")]
    if task is not None and "task" in rows:
        rows = rows[rows.task == task]
    return float(rows.value.iloc[0]) if len(rows) else float("nan")


def _fmt(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.2f}"


def _gap(ours: float, published: float) -> str:
    return "–" if not (np.isfinite(ours) and np.isfinite(published)) else f"{ours - published:+.2f}"


def nonblind(data_config: dict) -> bool:
    """A model trained at one noise level (DnCNN-S style) rather than several (DnCNN-B style).

    >>> nonblind({"train_sigmas": [25], "train_sigma_mode": "set"}), nonblind({"train_sigmas": [55], "train_sigma_mode": "uniform"})
    (True, False)
    """
    return data_config.get("train_sigma_mode") == "set" and len(data_config.get("train_sigmas", [])) == 1


def task_table(summary: pd.DataFrame, data_config: dict, test_sigmas: list[float]) -> pd.DataFrame | None:
    """One task's rows at the published sigmas: ours (BM3D, DnCNN, DnCNN-stop) beside the published
    BM3D, DnCNN-S and DnCNN-B, and the gaps of our BM3D and DnCNN to their published counterparts.

    :param summary: the task's summary rows (``method, condition, metric, value``).
    :param data_config: the task's ``data`` section (decides DnCNN-S vs DnCNN-B for the gap).
    :param test_sigmas: the task's test noise levels.
    :return: None when the task was not tested on BSD68 at a published sigma.
    """
    sigmas = [s for s in SIGMAS if float(s) in {float(t) for t in test_sigmas}]
    if not sigmas or not is_bsd68(data_config):
        return None
    twin = "DnCNN-S" if nonblind(data_config) else "DnCNN-B"
    rows = []
    for s in sigmas:
        bm3d, dncnn, stop = (_value(summary, m, s) for m in ("bm3d", "dncnn", "dncnn_stop"))
        rows.append({"σ": s, "ours: BM3D": _fmt(bm3d), "ours: DnCNN": _fmt(dncnn), "ours: DnCNN-stop": _fmt(stop),
                     "published BM3D": _fmt(PUBLISHED["BM3D"][s]), "published DnCNN-S": _fmt(PUBLISHED["DnCNN-S"][s]),
                     "published DnCNN-B": _fmt(PUBLISHED["DnCNN-B"][s]),
                     "BM3D − published": _gap(bm3d, PUBLISHED["BM3D"][s]),
                     f"DnCNN − published {twin}": _gap(dncnn, PUBLISHED[twin][s])})
    return pd.DataFrame(rows)


def section(res) -> list[tuple[str, list]]:
    """The report's section for a task's results (:class:`l2o.report.results.TaskResults`); empty
    when the task was not tested on BSD68 at 15, 25 or 50."""
    data = res.data_meta.get("config", {})
    n_test = len(res.data_meta.get("images", {}).get("test", [])) or None
    if not is_bsd68(data, n_test):
        return []
    table = task_table(res.summary, data, data.get("test_sigmas", []))
    if table is None:
        return []
    return [(f"The standard BSD68 table: ours beside the published rows ({SOURCE})", [
        table,
        "Published rows: BM3D given the true σ; DnCNN-S one 17-layer network per σ, DnCNN-B one 20-layer network "
        "for σ ∈ [0, 55], each trained on Train400 for about 50 epochs on a GPU. Ours: this run's network and budget "
        "(see Setting); BM3D from the `bm3d` package (default profile) on the same noisy images as the networks."])]


def standard_table(summary: pd.DataFrame, blind: str = "denoising", variant: str = "denoising_sigma{sigma}") -> pd.DataFrame:
    """The standard table across the tasks of ``configs/denoising-standard.yaml``: per sigma, our BM3D
    (from whichever task ran it), our non-blind DnCNN (task ``denoising_sigma<σ>``), our blind DnCNN and
    DnCNN-stop (task ``denoising``), each beside its published row."""
    rows = []
    for s in SIGMAS:
        bm3d_rows = summary[(summary.method == "bm3d") & (summary.condition == f"sigma{s}") & (summary.metric == "psnr")]
        bm3d = float(bm3d_rows.value.iloc[0]) if len(bm3d_rows) else float("nan")
        s_net = _value(summary, "dncnn", s, variant.format(sigma=s))
        s_stop = _value(summary, "dncnn_stop", s, variant.format(sigma=s))
        b_net = _value(summary, "dncnn", s, blind)
        b_stop = _value(summary, "dncnn_stop", s, blind)
        rows.append({"σ": s,
                     "BM3D ours / published": f"{_fmt(bm3d)} / {_fmt(PUBLISHED['BM3D'][s])}",
                     "non-blind DnCNN ours / DnCNN-S": f"{_fmt(s_net)} / {_fmt(PUBLISHED['DnCNN-S'][s])}",
                     "non-blind DnCNN-stop (ours)": _fmt(s_stop),
                     "blind DnCNN ours / DnCNN-B": f"{_fmt(b_net)} / {_fmt(PUBLISHED['DnCNN-B'][s])}",
                     "blind DnCNN-stop (ours)": _fmt(b_stop)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m l2o.tasks.denoising.published",
                                     description="The standard BSD68 table, ours beside the published rows")
    parser.add_argument("summary", type=Path, help="a run's results/summary.csv")
    args = parser.parse_args(argv)
    if not args.summary.is_file():
        print(f"error: {args.summary} does not exist (run the workflow first)", file=sys.stderr)
        return 2
    table = standard_table(pd.read_csv(args.summary))
    from l2o.report.render import md_table

    print(f"Mean PSNR (dB) on BSD68; published: {SOURCE}\n")
    print(md_table(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
