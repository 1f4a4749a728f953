"""Ablation variants of the stopping pipeline, compared with the main model paired over seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from l2o.report.results import TaskResults
from l2o.report.stats import fmt, mean_ci, paired_difference, seed_values

NOTE = ("Δ is the variant minus the main Stages I+II model, seed by seed, averaged (± 95% CI over seeds); "
        "{direction} is better. A variant re-trains only what its overrides touch (a Stage II override "
        "re-uses the main Stage I model).")


def _overrides_text(overrides: dict) -> str:
    return ", ".join(f"{sec}.{k}={v}" for sec, over in sorted(overrides.items()) for k, v in sorted(over.items()))


def ablation_stats(main_tables: list[pd.DataFrame], ablations: dict, config: dict, *, stop: str = "lista_stop",
                   stop_ft: str = "lista_stop_ft", metric: str = "nmse_db",
                   conditions: list[str] = ("snr20", "snr30", "snr40")) -> list[dict]:
    """Numbers per variant of the stopping pipeline (and the main run's Stage III and AEVB):
    the metric mixed and per condition over seeds, the paired difference to the main Stage I+II
    model (same seeds, same data), the model at its last step and at the oracle's best step,
    the mean stop.

    ``ablations`` maps a variant name to ``{"tables": [per-seed DataFrames], "overrides": {...}}``;
    ``stop``/``stop_ft`` are the task's method names, ``metric`` its headline metric."""
    def setting(section, key):
        return config.get(section, {}).get(key, "default")

    main_desc = (f"stage1.loss={setting('stage1', 'loss')}, stage1.beta={setting('stage1', 'beta')}, "
                 f"stage2.loss={setting('stage2', 'loss')}")
    entries = [("main: Stages I+II", main_desc, main_tables, stop),
               ("main + Stage III", "Stage III fine-tuning", main_tables, stop_ft),
               ("AEVB", "joint training from scratch", main_tables, "aevb")]
    entries += [(name, _overrides_text(spec["overrides"]), spec["tables"], stop)
                for name, spec in sorted(ablations.items())]
    reference = seed_values(main_tables, stop, metric=metric)
    stats = []
    for i, (name, what, tables, method) in enumerate(entries):
        mixed = seed_values(tables, method, metric=metric)
        if not mixed:
            continue
        row = {"variant": name, "settings": what, "is_main": i == 0, "seeds": len(mixed), "conditions": list(conditions)}
        row["mixed"], row["mixed_ci"] = mean_ci(list(mixed.values()))
        row["delta"], row["delta_ci"], _ = paired_difference(mixed, reference)
        for cond in conditions:
            row[cond] = mean_ci(list(seed_values(tables, method, cond, metric).values()))[0]
        for key, name_ in (("last", f"{metric}_last"), ("oracle", f"{metric}_oracle"), ("mean_stop", "mean_stop")):
            row[key] = mean_ci(list(seed_values(tables, method, "mixed", name_).values()))[0]
        stats.append(row)
    return stats


def ablation_table(stats: list[dict]) -> pd.DataFrame:
    """:func:`ablation_stats` as a display table."""
    return pd.DataFrame([{
        "variant": r["variant"], "settings": r["settings"], "mixed": fmt(r["mixed"], r["mixed_ci"]),
        "Δ vs main (paired)": "–" if r["is_main"] else fmt(r["delta"], r["delta_ci"]),
        **{c: fmt(r[c]) for c in r["conditions"]},
        "last step": fmt(r["last"]), "oracle best": fmt(r["oracle"]),
        "mean stop": fmt(r["mean_stop"]), "seeds": r["seeds"],
    } for r in stats])


def ablation_findings(stats: list[dict], higher_is_better: bool = False, unit: str = "dB") -> list[str]:
    """Which variants differ from the main model beyond their paired 95% CI."""
    out = []
    for r in stats:
        if r["is_main"] or not np.isfinite(r["delta"]):
            continue
        d, ci = r["delta"], r["delta_ci"]
        better = d > 0 if higher_is_better else d < 0
        if not np.isfinite(ci):
            out.append(f"{r['variant']} ({r['settings']}): {d:+.2f} {unit} vs the main model (one seed: no CI).")
        elif abs(d) > ci:
            out.append(f"{r['variant']} ({r['settings']}) is {'better' if better else 'worse'} than the main "
                       f"Stages I+II model by {abs(d):.2f} {unit} (paired 95% CI ± {ci:.2f}, {r['seeds']} seeds).")
        else:
            out.append(f"{r['variant']} ({r['settings']}) is not distinguishable from the main model: "
                       f"{d:+.2f} ± {ci:.2f} {unit} (paired, {r['seeds']} seeds).")
    return out


def ablation_section(res: TaskResults) -> tuple[str, list] | None:
    """The report section of a task's ablations (None when the run has none)."""
    from l2o.report.skeptic import metric_unit

    conditions = [c for c in res.conditions() if c != "mixed"]
    stats = ablation_stats(res.tables, res.ablations, res.config, stop=res.method("stop"),
                           stop_ft=res.method("stop_ft"), metric=res.metric, conditions=conditions)
    if not res.ablations:
        return None
    return ("Ablations: variants of the stopping pipeline, same seeds and data", [
        ablation_table(stats),
        NOTE.format(direction="positive" if res.higher_is_better else "negative"),
        "\n".join(f"- {s}" for s in ablation_findings(stats, res.higher_is_better, metric_unit(res.metric))),
    ])
