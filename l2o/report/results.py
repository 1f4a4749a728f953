"""One task's results as the report sees them: per-seed tables and curves,
the aggregated summary, the classical baselines, ablation variants."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from l2o.report.stats import aggregate, gain_rows
from l2o.tasks.spec import TaskSpec

#: Role of each stopping model in the report, in display order.
STOPPING_ROLES = ("stop", "stop_ft", "aevb")
ABLATION_PREFIX = "ablation/"


@dataclass
class TaskInputs:
    """The files of one task that the report reads (all per-seed lists in seed order).

    ``ablations`` maps a variant name to ``{"tables": [per-seed metrics.csv], "curves": [per-seed
    curves.json], "overrides": {...}}``.
    """

    tables: list[Path]
    curves: list[Path]
    data_meta: Path
    classical: Path | None = None
    classical_info: Path | None = None
    classical_showcase: Path | None = None
    showcase: list[Path] = field(default_factory=list)
    ablations: dict = field(default_factory=dict)


@dataclass
class TaskResults:
    """Everything one task contributes to the report, loaded."""

    spec: TaskSpec
    config: dict
    tables: list[pd.DataFrame]
    curves: list[dict]
    summary: pd.DataFrame
    data_meta: dict
    classical_info: dict | None
    showcase: list[dict[str, np.ndarray]]
    classical_showcase: dict[str, np.ndarray]
    ablations: dict
    plots_dir: Path
    bench_dir: Path
    classical_table: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def metric(self) -> str:
        return self.curves[0]["metric"]

    @property
    def higher_is_better(self) -> bool:
        return bool(self.curves[0]["higher_is_better"])

    def method(self, role: str) -> str:
        return self.spec.method(role)

    def conditions(self, split: str = "test") -> list[str]:
        """The conditions of an evaluation set (``mixed`` first when it has one)."""
        return list(self.curves[0].get("conditions", {}).get(split, ["mixed"]))

    def stopping_methods(self) -> list[str]:
        """The stopping models present, in display order."""
        return [self.method(r) for r in STOPPING_ROLES if self.method(r) in self.curves[0]]

    @property
    def gain_floor(self) -> float:
        return float(self.curves[0].get("gain_floor", 0.5))

    @property
    def n_seeds(self) -> int:
        return len(self.tables)


def load_task_results(spec: TaskSpec, inputs: TaskInputs, config: dict, plots_dir: Path,
                      bench_dir: Path) -> TaskResults:
    """Read a task's files and aggregate its seeds (mean ± 95% CI), with the gain rows."""
    tables = [pd.read_csv(p) for p in inputs.tables]
    curves = [json.loads(Path(p).read_text()) for p in inputs.curves]
    metric, higher = curves[0]["metric"], bool(curves[0]["higher_is_better"])
    stopping = [spec.method(r) for r in STOPPING_ROLES]
    variants = {name: {"tables": [pd.read_csv(p) for p in v["tables"]],
                       "curves": [json.loads(Path(p).read_text()) for p in v.get("curves", [])],
                       "overrides": v["overrides"]}
                for name, v in (inputs.ablations or {}).items()}
    floor = float(curves[0].get("gain_floor", 0.5))
    seed_tables = tables + [gain_rows(t, stopping, metric, higher, floor) for t in tables]
    seed_tables += [ablation_rows(name, t, spec.method("stop")) for name, v in variants.items() for t in v["tables"]]
    summary = aggregate([t for t in seed_tables if not t.empty])
    classical_table = None
    if inputs.classical is not None:
        classical_table = pd.read_csv(inputs.classical)
        summary = pd.concat([classical_table.assign(ci95=float("nan"), n_seeds=1), summary], ignore_index=True)
    classical_info = json.loads(Path(inputs.classical_info).read_text()) if inputs.classical_info else None
    showcase = [_arrays(p) for p in inputs.showcase]
    classical_showcase = _arrays(inputs.classical_showcase) if inputs.classical_showcase else {}
    return TaskResults(spec, config, tables, curves, summary, json.loads(Path(inputs.data_meta).read_text()),
                       classical_info, showcase, classical_showcase, variants, Path(plots_dir), Path(bench_dir),
                       classical_table)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def ablation_rows(name: str, table: pd.DataFrame, stop_method: str) -> pd.DataFrame:
    """A variant's per-seed evaluation as summary rows: its stopping model's rows renamed
    ``ablation/<name>`` (the fixed-depth and rule rows of the variant are dropped)."""
    return table[table.method == stop_method].assign(method=ABLATION_PREFIX + name)
