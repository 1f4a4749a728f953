"""Honest classical baselines: (L, rho) of ISTA/FISTA tuned on the validation set
for each iteration budget, guarded against divergence, then evaluated on test.

A setting is *diverged* on an example when its error is non-finite or
exceeds ``10^(divergence_db/10)`` times the mean signal energy (default +10 dB:
ten times worse than the all-zero estimate on an average example). A setting that diverges on any validation example is rejected,
so a step size beyond the stable range can never be picked.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor

from l2o.algorithms.ista import step_squared_errors

log = logging.getLogger("l2o")

ALGORITHMS = {"ista": False, "fista": True}  # name -> fast


@dataclass
class ClassicalConfig:
    """Config section ``classical``."""

    budgets: list[int] = field(default_factory=lambda: [20, 100])
    L_grid: list[float] = field(default_factory=lambda: [2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0])
    rho_grid: list[float] = field(default_factory=lambda: [0.02, 0.05, 0.1, 0.15, 0.2, 0.3])
    divergence_db: float = 10.0
    paper_settings: dict = field(
        default_factory=lambda: {
            "ista_t20": [2.7, 0.2],
            "ista_t100": [3.0, 0.11],
            "fista_t20": [4.0, 0.21],
            "fista_t100": [4.5, 0.05],
        }
    )
    settings_per_chunk: int = 8

    def __post_init__(self):
        if not self.budgets or min(self.budgets) < 1:
            raise ValueError(f"classical.budgets must be positive step counts, got {self.budgets}")
        if min(self.L_grid) <= 0 or min(self.rho_grid) < 0:
            raise ValueError("classical.L_grid must be > 0 and classical.rho_grid >= 0")


def method_name(algorithm: str, budget: int) -> str:
    return f"{algorithm}_t{budget}"


def search(A: Tensor, batch: dict[str, Tensor], cfg: ClassicalConfig) -> tuple[dict, list[dict]]:
    """Grid search on ``batch`` (validation). Returns ``({method: (L, rho)}, grid rows)``."""
    grid = list(itertools.product(cfg.L_grid, cfg.rho_grid))
    energy = batch["x"].pow(2).sum(-1)  # (B,)
    limit = energy.mean() * 10.0 ** (cfg.divergence_db / 10.0)
    rows: list[dict] = []
    chosen: dict[str, tuple[float, float]] = {}
    for algorithm, fast in ALGORITHMS.items():
        for i in range(0, len(grid), cfg.settings_per_chunk):
            chunk = grid[i : i + cfg.settings_per_chunk]
            L = torch.tensor([g[0] for g in chunk])
            rho = torch.tensor([g[1] for g in chunk])
            errs = step_squared_errors(A, batch["y"], batch["x"], L, rho, max(cfg.budgets), fast, cfg.budgets)
            for budget in cfg.budgets:
                e = errs[budget]  # (S, B)
                diverged = (~torch.isfinite(e) | (e > limit)).sum(dim=1)
                mean = torch.where(torch.isfinite(e), e, torch.zeros_like(e)).double().mean(dim=1)
                for s, (Ls, rs) in enumerate(chunk):
                    nmse = float(10 * torch.log10(mean[s] / energy.double().mean()))
                    rows.append(
                        {"method": method_name(algorithm, budget), "L": Ls, "rho": rs,
                         "val_nmse_db": nmse if diverged[s] == 0 else float("nan"),
                         "diverged": int(diverged[s])}
                    )
        for budget in cfg.budgets:
            name = method_name(algorithm, budget)
            ok = [r for r in rows if r["method"] == name and r["diverged"] == 0]
            if not ok:
                raise RuntimeError(f"every (L, rho) setting of {name} diverged on validation; widen classical.L_grid")
            best = min(ok, key=lambda r: r["val_nmse_db"])
            chosen[name] = (best["L"], best["rho"])
            edge = best["L"] in (min(cfg.L_grid), max(cfg.L_grid)) or best["rho"] in (
                min(cfg.rho_grid), max(cfg.rho_grid))
            if edge:
                log.warning("%s: best setting %s lies on the edge of the grid; consider widening it", name, chosen[name])
            log.info("%s: chose L=%s rho=%s (val NMSE %.2f dB)", name, *chosen[name], best["val_nmse_db"])
    return chosen, rows


def per_step_errors(A: Tensor, batch, algorithm: str, L: float, rho: float, num_steps: int) -> Tensor:
    """Squared error of one setting at every step 1..num_steps: (B, num_steps)."""
    steps = list(range(1, num_steps + 1))
    errs = step_squared_errors(A, batch["y"], batch["x"], L, rho, num_steps, ALGORITHMS[algorithm], steps)
    return torch.stack([errs[t][0] for t in steps], dim=1)
