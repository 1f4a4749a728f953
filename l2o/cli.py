"""Command line: ``python -m l2o <command>`` (or ``l2o <command>``), one command per stage.

Every command reads the experiment config (``--config``, the same YAML the
workflow uses) and only its own sections of it, and reads/writes the files it
is given. Example, from data to evaluation::

    l2o data --out results/data/problem.npz
    l2o classical --data results/data/problem.npz --out-dir results/classical
    l2o baseline --data results/data/problem.npz --out results/seed0/baseline/model.pt
    l2o matched --data ... --init results/seed0/baseline/model.pt --out results/seed0/lista_matched/model.pt
    l2o stage1 --data ... --init results/seed0/baseline/model.pt --out results/seed0/stage1/model.pt
    l2o stage2 --data ... --model results/seed0/stage1/model.pt --out results/seed0/stage2/model.pt
    l2o finetune --data ... --model results/seed0/stage2/model.pt --out results/seed0/finetune/model.pt
    l2o evaluate --data ... --lista ... --lista-stop ... --out-dir results/seed0/evaluation
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def _load_config(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist (pass --config)")
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(cfg, dict):
        raise ValueError(f"config file {path} must hold a mapping of sections")
    return cfg


def _section(cfg: dict, name: str, path: Path) -> dict:
    if name not in cfg or not isinstance(cfg[name], dict):
        raise KeyError(f"config file {path} has no section {name!r}")
    return cfg[name]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=Path("config.yaml"), help="experiment config YAML")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu, cuda, or auto (default: $L2O_DEVICE or auto)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2o", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="generate the sparse-recovery problem (config: problem)")
    _common(p)
    p.add_argument("--out", type=Path, required=True, help="problem file (.npz); JSON sidecar beside it")

    p = sub.add_parser("classical", help="tune and evaluate ISTA/FISTA (config: classical)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True, help="writes metrics.csv and classical.json")

    p = sub.add_parser("baseline", help="train plain LISTA (config: model, baseline)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("matched", help="matched-budget LISTA: Stage I's budget, plain loss (config: model, stage1, baseline)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--init", type=Path, default=None, help="baseline checkpoint (stage1.init: baseline)")
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("stage1", help="Stage I: oracle training of the model (config: model, stage1)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--init", type=Path, default=None, help="baseline checkpoint (stage1.init: baseline)")
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("stage2", help="Stage II: policy imitation (config: policy, stage2)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True, help="Stage I checkpoint")
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("finetune", help="Stage III: joint fine-tuning (config: finetune)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True, help="Stage II checkpoint")
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("aevb", help="AEVB baseline: joint training from scratch (config: model, policy, aevb)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("evaluate", help="evaluate trained checkpoints on the test set (config: evaluate)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    for name in ("lista", "lista-matched", "lista-stop", "lista-stop-ft", "aevb"):
        p.add_argument(f"--{name}", type=Path, default=None, help=f"{name} checkpoint")
    p.add_argument("--out-dir", type=Path, required=True, help="writes metrics.csv and curves.json")

    p = sub.add_parser("predict", help="early-exit inference of a stopping checkpoint on a data file")
    _common(p)
    p.add_argument("--model", type=Path, required=True, help="stopping checkpoint")
    p.add_argument("--data", type=Path, required=True, help="problem .npz (its test set) or .npy of y (N, m)")
    p.add_argument("--out", type=Path, required=True, help="predictions .npz (x_hat, stop_step)")
    p.add_argument("--sampled", action="store_true", help="sampled stopping (seeded by --seed)")

    p = sub.add_parser("report", help="aggregate seeds into summary.csv and write the report")
    _common(p)
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder")

    p = sub.add_parser("mlflow-server", help="start a local MLflow tracking server for cluster runs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--backend-store-uri", default="sqlite:///mlflow.db")
    p.add_argument("--artifacts-destination", default="./mlartifacts")
    p.add_argument("--workers", type=int, default=1, help="server worker processes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return _dispatch(args)
    except (FileNotFoundError, KeyError, ValueError, FloatingPointError, RuntimeError) as err:
        print(f"l2o {args.command}: error: {err}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:  # noqa: C901 - a flat switch over commands
    if args.command == "mlflow-server":
        import os

        cmd = ["mlflow", "server", "--host", args.host, "--port", str(args.port),
               "--backend-store-uri", args.backend_store_uri,
               "--artifacts-destination", args.artifacts_destination, "--workers", str(args.workers)]
        print("running:", " ".join(cmd), file=sys.stderr)
        os.execvp(cmd[0], cmd)  # replace this process: signals reach the server itself

    from l2o.device import set_threads

    set_threads(args.threads)
    cfg = _load_config(args.config)
    common = {"device": args.device}
    train = {"seed": args.seed, "progress": not args.no_progress, **common}
    if args.command == "data":
        from l2o.tasks.sparse_recovery.data import ProblemConfig, write_problem
        from l2o.train.loop import take_fields

        meta = write_problem(take_fields(ProblemConfig, _section(cfg, "problem", args.config), "config section 'problem'"), args.out)
        print(f"wrote {args.out} (hash {meta['hash'][:12]}, lambda_max(AtA)={meta['lambda_max_AtA']:.3f})")
    elif args.command == "classical":
        from l2o.classical import run_classical

        df = run_classical(data=args.data, out_table=args.out_dir / "metrics.csv",
                           out_json=args.out_dir / "classical.json",
                           classical=cfg.get("classical", {}), **common)
        print(df[df.condition == "mixed"].to_string(index=False))
    elif args.command == "baseline":
        from l2o.train import baseline

        print(baseline.run(data=args.data, out=args.out, model=_section(cfg, "model", args.config),
                           baseline=_section(cfg, "baseline", args.config), **train))
    elif args.command == "matched":
        from l2o.train import matched

        settings = matched.matched_settings(cfg.get("baseline", {}), _section(cfg, "stage1", args.config))
        print(matched.run(data=args.data, out=args.out, init=args.init, model=_section(cfg, "model", args.config),
                          matched=settings, **train))
    elif args.command == "stage1":
        from l2o.train import stage1

        print(stage1.run(data=args.data, out=args.out, init=args.init, model=_section(cfg, "model", args.config),
                         stage1=_section(cfg, "stage1", args.config), **train))
    elif args.command == "stage2":
        from l2o.train import stage2

        print(stage2.run(data=args.data, model_ckpt=args.model, out=args.out,
                         policy=_section(cfg, "policy", args.config),
                         stage2=_section(cfg, "stage2", args.config), **train))
    elif args.command == "finetune":
        from l2o.train import finetune

        print(finetune.run(data=args.data, stop_ckpt=args.model, out=args.out,
                           finetune=_section(cfg, "finetune", args.config), **train))
    elif args.command == "aevb":
        from l2o.train import aevb

        print(aevb.run(data=args.data, out=args.out, model=_section(cfg, "model", args.config),
                       policy=_section(cfg, "policy", args.config), aevb=_section(cfg, "aevb", args.config), **train))
    elif args.command == "evaluate":
        from l2o.evaluate import run_models

        ckpts = {m: p for m, p in [("lista", args.lista), ("lista_matched", args.lista_matched),
                                   ("lista_stop", args.lista_stop),
                                   ("lista_stop_ft", args.lista_stop_ft), ("aevb", args.aevb)] if p}
        if not ckpts:
            raise ValueError("evaluate: give at least one checkpoint (--lista, --lista-stop, ...)")
        df = run_models(data=args.data, checkpoints=ckpts, out_table=args.out_dir / "metrics.csv",
                        out_json=args.out_dir / "curves.json", seed=args.seed,
                        sample_seed=cfg.get("evaluate", {}).get("sample_seed", 0), **common)
        print(df[df.condition == "mixed"].to_string(index=False))
    elif args.command == "predict":
        from l2o.predict import predict_file

        print(predict_file(model=args.model, data=args.data, out=args.out,
                           sampled=args.sampled, seed=args.seed, **common))
    elif args.command == "report":
        from l2o.report import build_report

        r = args.results
        seeds = cfg.get("seeds", [0])
        build_report(
            tables=[r / f"seed{s}/evaluation/metrics.csv" for s in seeds],
            curves=[r / f"seed{s}/evaluation/curves.json" for s in seeds],
            classical=r / "classical/metrics.csv",
            classical_info=r / "classical/classical.json",
            problem_meta=r / "data/problem.json",
            out_summary=r / "summary.csv",
            out_markdown=r / "report.md",
            out_html=r / "report.html",
            out_plots=r / "plots",
            config={k: v for k, v in cfg.items() if k != "tracking"},
            ablations={v: {"tables": [r / f"seed{s}/ablations/{v}/evaluation/metrics.csv" for s in seeds],
                           "overrides": over} for v, over in cfg.get("ablations", {}).items()},
        )
        print(f"wrote {r / 'report.html'}, {r / 'report.md'} and {r / 'summary.csv'}")
    return 0
