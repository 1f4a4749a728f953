"""Command line: ``python -m l2o <command>`` (or ``l2o <command>``), one command per stage.

Every command reads the experiment config (``--config``, the same YAML the
workflow uses), picks a task (``--task``; optional when the config lists one
task), reads only that task's sections, and reads/writes the files it is
given. Example, from data to evaluation::

    l2o data --task denoising --out results/denoising/data/data.npz
    l2o classical --task denoising --data results/denoising/data/data.npz --out-dir results/denoising/classical
    l2o baseline --task denoising --data ... --out results/denoising/seed0/baseline/model.pt
    l2o stage1 --task denoising --data ... --init results/denoising/seed0/baseline/model.pt --out .../stage1/model.pt
    l2o matched --task denoising --data ... --init .../baseline/model.pt --out .../matched/model.pt
    l2o stage2 --task denoising --data ... --model .../stage1/model.pt --out .../stage2/model.pt
    l2o finetune --task denoising --data ... --model .../stage2/model.pt --out .../finetune/model.pt
    l2o evaluate --task denoising --data ... --baseline .../baseline/model.pt --stop .../stage2/model.pt --out-dir ...
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

OLD_LAYOUT_KEYS = ("problem", "model", "stage1", "stage2", "baseline")


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


def _pick_task(cfg: dict, task: str | None, path: Path) -> str:
    """The task a command runs: ``--task``, or the config's only task."""
    from l2o.tasks.registry import TASKS

    if any(k in cfg for k in OLD_LAYOUT_KEYS):
        raise ValueError(f"config file {path} has the old flat layout (top-level {sorted(set(cfg) & set(OLD_LAYOUT_KEYS))}); "
                         "put each task's sections under its name, e.g. sparse_recovery: {data: ..., model: ...} "
                         "(see config.yaml); the section 'problem' is now 'data'")
    if task is None:
        listed = cfg.get("tasks") or [t for t in cfg if t in TASKS]
        if len(listed) != 1:
            raise ValueError(f"config file {path} has tasks {listed}: pass --task (one of {sorted(TASKS)})")
        task = listed[0]
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (--task); registered tasks: {sorted(TASKS)}")
    if not isinstance(cfg.get(task), dict):
        raise KeyError(f"config file {path} has no section {task!r}")
    return task


def _section(cfg: dict, name: str, path: Path) -> dict:
    if name not in cfg or not isinstance(cfg[name], dict):
        raise KeyError(f"config file {path} has no section {name!r} for this task")
    return cfg[name]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=Path("config.yaml"), help="experiment config YAML")
    p.add_argument("--task", default=None, help="task to run (default: the config's only task)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default=None, help="cpu, cuda, or auto (default: $L2O_DEVICE or auto)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="l2o", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="write the task's data file (config: data)")
    _common(p)
    p.add_argument("--out", type=Path, required=True, help="data file (.npz); JSON sidecar beside it")

    p = sub.add_parser("classical", help="tune and evaluate the task's classical baselines (config: classical)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out-dir", type=Path, required=True, help="writes metrics.csv, classical.json, showcase.npz")

    p = sub.add_parser("baseline", help="train the predictive model alone (config: model, baseline)")
    _common(p)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)

    p = sub.add_parser("matched", help="matched-budget control: Stage I's budget, plain loss (config: model, stage1, baseline)")
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
    for role, what in (("baseline", "baseline"), ("matched", "matched control"), ("stop", "Stage II"),
                       ("stop-ft", "Stage III"), ("aevb", "AEVB")):
        p.add_argument(f"--{role}", type=Path, default=None, help=f"{what} checkpoint")
    p.add_argument("--out-dir", type=Path, required=True, help="writes metrics.csv, curves.json, showcase.npz")

    p = sub.add_parser("predict", help="early-exit inference of a stopping checkpoint on a data file")
    _common(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="stopping checkpoint")
    which.add_argument("--run-id", default=None, help="the MLflow run of a training job: its stored checkpoint "
                       "(store: $MLFLOW_TRACKING_URI, default sqlite:///mlflow.db)")
    p.add_argument("--data", type=Path, required=True, help="the task's data file (its test set is predicted)")
    p.add_argument("--inputs", type=Path, default=None,
                   help=".npy inputs instead of the test set (sparse recovery: y (N, m); denoising: images (N, H, W))")
    p.add_argument("--out", type=Path, required=True, help="predictions .npz (prediction, stop_step)")
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

    p = sub.add_parser("fetch-data", help="download the standard denoising sets (Train400, Set12, BSD68) and "
                                          "check every file's SHA-256")
    p.add_argument("--dest", type=Path, default=Path("data"), help="where the sets go (default: data; "
                   "the configs read data/denoising/<set>)")
    p.add_argument("--sets", nargs="+", default=None, help="only these sets (default: all)")
    p.add_argument("--base-url", default=None, help="download from this mirror instead (default: "
                   "$L2O_DATA_BASE_URL, else the list's URL)")
    p.add_argument("--manifest", type=Path, default=None, help="checksum list (default: the one in the package)")
    p.add_argument("--check", action="store_true", help="only check what is there (offline); exit 1 on a problem")
    p.add_argument("--workers", type=int, default=8, help="parallel downloads")

    p = sub.add_parser("runs", help="list this work dir's MLflow runs: status, reason, which run replaced which")
    p.add_argument("--experiment", default="l2o", help="MLflow experiment (config: tracking.experiment)")
    p.add_argument("--status", action="append", choices=["RUNNING", "FINISHED", "FAILED", "KILLED"],
                   help="only runs with this status (repeatable)")
    p.add_argument("--all-workdirs", action="store_true", help="also runs of other work dirs")
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

        # the mlflow of this interpreter, whether or not its venv is on PATH
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", args.host, "--port", str(args.port),
               "--backend-store-uri", args.backend_store_uri,
               "--artifacts-destination", args.artifacts_destination, "--workers", str(args.workers)]
        print("running:", " ".join(cmd), file=sys.stderr)
        os.execvp(cmd[0], cmd)  # replace this process: signals reach the server itself

    if args.command == "fetch-data":
        return _fetch_data(args)

    if args.command == "runs":
        import pandas as pd

        from l2o.tracking import runs_table

        table = runs_table(args.experiment, statuses=args.status, all_workdirs=args.all_workdirs)
        with pd.option_context("display.max_colwidth", 70, "display.width", 250):
            print(table.to_string(index=False) if len(table) else "no runs")
        return 0

    from l2o.device import set_threads

    set_threads(args.threads)
    cfg = _load_config(args.config)
    if args.command == "report":
        return _report(args, cfg)
    task = _pick_task(cfg, args.task, args.config)
    tcfg = cfg[task]

    def section(name):
        return _section(tcfg, name, args.config)

    common = {"device": args.device, "task": task}
    train = {"seed": args.seed, "progress": not args.no_progress, **common}
    if args.command == "data":
        from l2o.tasks.registry import task_class

        meta = task_class(task).prepare_data(section("data"), args.out)
        print(f"wrote {args.out} (hash {meta['hash'][:12]})")
    elif args.command == "classical":
        from l2o.tasks.registry import task_classical

        df = task_classical(task)(data=args.data, out_table=args.out_dir / "metrics.csv",
                                  out_json=args.out_dir / "classical.json",
                                  out_showcase=args.out_dir / "showcase.npz", classical=tcfg.get("classical", {}),
                                  device=args.device)
        print(df[df.condition == "mixed"].to_string(index=False))
    elif args.command == "baseline":
        from l2o.train import baseline

        print(baseline.run(data=args.data, out=args.out, model=section("model"), baseline=section("baseline"), **train))
    elif args.command == "matched":
        from l2o.train import matched

        settings = matched.matched_settings(tcfg.get("baseline", {}), section("stage1"))
        print(matched.run(data=args.data, out=args.out, init=args.init, model=section("model"), matched=settings,
                          **train))
    elif args.command == "stage1":
        from l2o.train import stage1

        print(stage1.run(data=args.data, out=args.out, init=args.init, model=section("model"), stage1=section("stage1"),
                         **train))
    elif args.command == "stage2":
        from l2o.train import stage2

        print(stage2.run(data=args.data, model_ckpt=args.model, out=args.out, policy=section("policy"),
                         stage2=section("stage2"), **train))
    elif args.command == "finetune":
        from l2o.train import finetune

        print(finetune.run(data=args.data, stop_ckpt=args.model, out=args.out, finetune=section("finetune"), **train))
    elif args.command == "aevb":
        from l2o.train import aevb

        print(aevb.run(data=args.data, out=args.out, model=section("model"), policy=section("policy"),
                       aevb=section("aevb"), **train))
    elif args.command == "evaluate":
        from l2o.evaluate import run_models

        ckpts = {r: getattr(args, r) for r in ("baseline", "matched", "stop", "stop_ft", "aevb") if getattr(args, r)}
        if not ckpts:
            raise ValueError("evaluate: give at least one checkpoint (--baseline, --stop, ...)")
        df = run_models(data=args.data, checkpoints=ckpts, out_table=args.out_dir / "metrics.csv",
                        out_json=args.out_dir / "curves.json", out_showcase=args.out_dir / "showcase.npz",
                        seed=args.seed, sample_seed=tcfg.get("evaluate", {}).get("sample_seed", 0),
                        timing_examples=tcfg.get("evaluate", {}).get("timing_examples", 256),
                        timing_repeats=tcfg.get("evaluate", {}).get("timing_repeats", 3), **common)
        print(df[df.condition == "mixed"].to_string(index=False))
    elif args.command == "predict":
        import tempfile

        from l2o.predict import predict_file

        with tempfile.TemporaryDirectory(prefix="l2o-run-") as tmp:
            model = args.model
            if args.run_id:
                from l2o.artifacts import checkpoint_from_run

                model = checkpoint_from_run(args.run_id, Path(tmp))
            print(predict_file(model=model, data=args.data, out=args.out, inputs=args.inputs,
                               sampled=args.sampled, seed=args.seed, **common))
    return 0


def _fetch_data(args) -> int:
    """``l2o fetch-data``: download and check the standard sets, or (``--check``) only check them."""
    from l2o.fetch import FetchError, check_sets, fetch_sets

    if args.check:
        problems = check_sets(args.dest, args.sets, args.manifest)
        for line in problems:
            print(line, file=sys.stderr)
        if problems:
            print(f"l2o fetch-data: {len(problems)} problem(s); run `l2o fetch-data` to download missing or "
                  "altered files again", file=sys.stderr)
            return 1
        print(f"every file under {args.dest} matches the checksum list")
        return 0
    try:
        summary = fetch_sets(args.dest, args.sets, args.base_url, args.manifest, workers=args.workers)
    except FetchError as err:
        print(f"l2o fetch-data: error: {err}", file=sys.stderr)
        return 1
    for name, counts in summary.items():
        print(f"{name}: {counts['downloaded']} downloaded, {counts['kept']} already there and intact")
    return 0


def _with_schema_defaults(task: str, section: dict) -> dict:
    """A task's config section checked against its schema (workflow/schemas/tasks/) with the
    schema's defaults filled in, as the workflow sees it; as given when the schema is not there
    (an installed package without the workflow)."""
    schema = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "tasks" / f"{task}.schema.yaml"
    if not schema.is_file():
        return section
    from snakemake.utils import validate

    import copy

    filled = copy.deepcopy(section)
    try:
        validate(filled, schema=str(schema))
    except Exception as err:
        raise ValueError(f"config section {task!r} is invalid: {err}") from None
    return filled


def _report(args, cfg: dict) -> int:
    """``l2o report``: the workflow's report from a results folder (every task of the config)."""
    from l2o.config import with_prior_sweep
    from l2o.report.build import build_report
    from l2o.report.results import TaskInputs
    from l2o.tasks.registry import task_spec

    r = args.results
    tasks = {}
    for task in cfg.get("tasks") or []:
        tcfg = with_prior_sweep(task, _with_schema_defaults(task, cfg.get(task, {})))
        cfg[task] = tcfg
        seeds = tcfg.get("seeds", cfg.get("seeds", [0]))
        base = r / task
        classical = task_spec(task).has_classical
        tasks[task] = TaskInputs(
            tables=[base / f"seed{s}/evaluation/metrics.csv" for s in seeds],
            curves=[base / f"seed{s}/evaluation/curves.json" for s in seeds],
            showcase=[base / f"seed{s}/evaluation/showcase.npz" for s in seeds],
            data_meta=base / "data/data.json",
            classical=base / "classical/metrics.csv" if classical else None,
            classical_info=base / "classical/classical.json" if classical else None,
            classical_showcase=base / "classical/showcase.npz" if classical else None,
            ablations={v: {"tables": [base / f"seed{s}/ablations/{v}/evaluation/metrics.csv" for s in seeds],
                           "curves": [base / f"seed{s}/ablations/{v}/evaluation/curves.json" for s in seeds],
                           "overrides": over} for v, over in tcfg.get("ablations", {}).items()},
        )
    if not tasks:
        raise ValueError(f"config file {args.config} lists no tasks")
    build_report(tasks=tasks, config={k: v for k, v in cfg.items() if k != "tracking"}, out_summary=r / "summary.csv",
                 out_markdown=r / "report.md", out_html=r / "report.html", out_plots=r / "plots")
    print(f"wrote {r / 'report.html'}, {r / 'report.md'} and {r / 'summary.csv'}")
    return 0
