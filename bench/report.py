"""The report: the issue's targets evaluated on the results (:func:`evaluate_targets`), the
Markdown tables (:func:`render_markdown`), and the JSON + Markdown files (:func:`write_results`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.training import TRAINING_KINDS


def _get(results: dict, *keys):
    for k in keys:
        if not isinstance(results, dict) or k not in results:
            return None
        results = results[k]
    return results


def targets_for(sizes: dict) -> list[tuple]:
    """The issue's targets: (name, path into the results, comparison, threshold, unit)."""
    b1 = sizes["batch_stage1"]
    return [
        (f"Stage I iteration (batch {b1}) within 1.25x of the FLOP lower bound",
         ("training", "stage1", "ratio_to_bound"), "<=", 1.25, "x bound"),
        ("Stage II iteration >= 3x faster than with the frozen model under autograd",
         ("training", "stage2_speedup", "median"), ">=", 3.0, "x"),
        ("Early exit realises >= 80% of the ideal speed-up",
         ("inference", "efficiency"), ">=", 0.8, "of ideal"),
        ("snakemake with nothing to do returns in < 3 s",
         ("snakemake", "timing", "median"), "<", 3.0, "s"),
        (f"Stage I (batch {b1}) peaks under 1 GiB (RSS)",
         ("training", "stage1", "peak_rss_mib"), "<", 1024.0, "MiB"),
    ]


def evaluate_targets(results: dict) -> list[dict]:
    """Each target with its measured value (median) and met / not met / not measured."""
    ops = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}
    rows = []
    for name, path, op, threshold, unit in targets_for(results["sizes"]):
        value = _get(results, *path)
        met = None if value is None else bool(ops[op](value, threshold))
        rows.append({"target": name, "value": value, "op": op, "threshold": threshold, "unit": unit,
                     "met": met, "status": {None: "not measured", True: "met", False: "NOT met"}[met]})
    return rows


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"
    return str(x)


def _spread(t: dict | None) -> str:
    return "-" if not t else f"{_fmt(t['min'])}–{_fmt(t['max'])} (IQR {_fmt(t['q1'])}–{_fmt(t['q3'])}, n={t['repeats']})"


def render_markdown(results: dict) -> str:
    """The targets table and a details table, with the machine and load in the header."""
    m, s = results["machine"], results["sizes"]
    lines = [f"# l2o benchmark — {m['date']}", ""]
    if results["quick"]:
        lines += ["**QUICK RUN (tiny sizes): the targets refer to the paper sizes; these values only "
                  "check that the suite works.**", ""]
    if results["loaded"]:
        lines += ["**LOADED MACHINE: other processes used the cores during "
                  f"{', '.join(results['loaded_measurements'])} (--allow-loaded); those timings are not "
                  "trustworthy.**", ""]
    checks = results["load_checks"]
    during = [c["other_cores"] for c in checks if c.get("accepted")]
    repeated = sum(1 for c in checks if "during" in c and not c.get("accepted"))
    waits = sum(1 for c in checks if "before" in c and c["loaded"])
    lines += [
        f"Machine: {m['cpu_model']}, {m['cores_usable']} usable cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), device `{m['device']}`, host `{m['host']}`.  ",
        f"Sizes: m={s['m']}, n={s['n']}, T={s['T']}, policy {'-'.join(map(str, s['hidden']))}; "
        f"{s['warmup']} warm-up + {s['repeats']} timed repeats.  ",
        f"Load: other processes used at most {_fmt(max(during, default=None))} cores (average over a "
        f"measurement; limit {results['options']['max_other_cpu']}); {waits} busy checks waited out, "
        f"{repeated} disturbed measurements repeated.",
        "", "## Targets", "", "| Target | Measured (median) | Target | Status |", "|---|---|---|---|",
    ]
    for row in results["targets"]:
        lines.append(f"| {row['target']} | {_fmt(row['value'])} {row['unit']} | {row['op']} {_fmt(row['threshold'])} "
                     f"| {'**' + row['status'] + '**' if row['met'] is False else row['status']} |")
    lines += ["", "## Details", "", "| Measurement | Median | Spread: min–max | Bound / reference | Ratio | Peak RSS |",
              "|---|---|---|---|---|---|"]
    mm = results.get("matmul")
    if mm:
        lines.append(f"| float32 matmul {mm['n']}² | {_fmt(mm['timing']['median'])} s "
                     f"| {_spread(mm['timing'])} | best {_fmt(mm['flops_per_s'] / 1e9)} GFLOP/s | - | - |")
        for name, r in mm.get("lista_shapes", {}).items():
            lines.append(f"| float32 matmul {name} | {_fmt(r['timing']['median'])} s | {_spread(r['timing'])} "
                         f"| best {_fmt(r['flops_per_s'] / 1e9)} GFLOP/s | {_fmt(r['flops_per_s'] / mm['flops_per_s'])}× "
                         "the square rate | - |")
    tr = results.get("training") or {}
    for kind in TRAINING_KINDS:
        r = tr.get(kind)
        if r:
            lines.append(f"| {r['description']}, batch {r['batch']}: s/iteration | {_fmt(r['timing']['median'])} s "
                         f"| {_spread(r['timing'])} | FLOP bound {_fmt(r['bound_s'])} s "
                         f"| {_fmt(r['ratio_to_bound'])}× bound | {_fmt(r['peak_rss_mib'])} MiB |")
    if "stage2_speedup" in tr:
        sp = tr["stage2_speedup"]
        lines.append(f"| Stage II speed-up of no_grad over autograd | {_fmt(sp['median'])}× "
                     f"| {_fmt(sp['worst'])}–{_fmt(sp['best'])}× | FLOP ratio {_fmt(sp['flop_ratio'])}× "
                     f"({_fmt(sp.get('flop_ratio_free_policy'))}× were the policy free) | - | - |")
    inf = results.get("inference")
    if inf:
        for name, label in (("lista", "LISTA (T steps)"), ("lista_stop_all_steps", "LISTA-stop, every step"),
                            ("lista_stop_early_exit", "LISTA-stop, early exit")):
            r = inf[name]
            lines.append(f"| Inference {label}, {inf['examples']} examples | {_fmt(r['examples_per_s'])} ex/s "
                         f"| {_spread(r['timing'])} | - | - | - |")
        lines.append(f"| Early-exit speed-up over every-step (mean stop {_fmt(inf['mean_stop_step'])} of T={inf['T']}) "
                     f"| {_fmt(inf['realised_speedup'])}× | - | ideal {_fmt(inf['ideal_speedup'])}× "
                     f"| {_fmt(inf['efficiency'])} of ideal | - |")
        lines.append(f"| Early-exit speed-up over plain LISTA (no policy) | {_fmt(inf['speedup_vs_lista'])}× "
                     "| - | - | - | - |")
    tta = results.get("time_to_accuracy")
    if tta:
        f = tta["fista"]
        reached = "" if f["reached"] else " (NOT reached)"
        lines.append(f"| FISTA to LISTA-stop's NMSE {_fmt(tta['lista_stop']['nmse_db'])} dB: {f['steps']} steps{reached}, "
                     f"L={f['L']}, rho={f['rho']} | {_fmt(f['timing']['median'])} s | {_spread(f['timing'])} "
                     f"| LISTA-stop {_fmt(tta['lista_stop']['timing']['median'])} s "
                     f"| {_fmt(tta['fista_over_lista_stop'])}× | - |")
    sm = results.get("snakemake")
    if sm:
        lines.append(f"| `snakemake --cores 2`, nothing to do (tiny config) | {_fmt(sm['timing']['median'])} s "
                     f"| {_spread(sm['timing'])} | - | - | - |")
    notes = []
    env = (sm or {}).get("environment") or {}
    if env.get("scontrol") and any("slurm" in p.lower() for p in env.get("executor_plugins", [])):
        notes.append("The SLURM executor plugin is installed and `scontrol` is on PATH: every snakemake start "
                     "runs `scontrol show config` (up to 10 s when no SLURM controller answers).")
    if inf:
        notes.append(f"Inference/time-to-accuracy model: {inf['source']}.")
    for name, err in results["errors"].items():
        notes.append(f"Error in `{name}`: {err.splitlines()[0] if err else err}")
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: Path) -> tuple[Path, Path]:
    """``<out>/<host>-<date>[-quick].json`` and ``<out>/latest.md``."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = results["machine"]["date"].replace(":", "").replace("+0000", "Z")
    name = f"{results['machine']['host']}-{stamp}{'-quick' if results['quick'] else ''}.json"
    json_path = out / name
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path = out / "latest.md"
    md_path.write_text(render_markdown(results))
    return json_path, md_path
