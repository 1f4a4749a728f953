# Helpers (no rules): config validation, per-stage parameters and sources,
# the list of final outputs, and the MLflow parent run of this invocation.
import os
from pathlib import Path

from snakemake.utils import validate


validate(config, schema="../schemas/config.schema.yaml")

REPO = Path(workflow.basedir)
PKG = REPO / "l2o"
SEEDS = [int(s) for s in config["seeds"]]
ENV = "../../envs/l2o.yaml"
ABLATIONS = sorted(config["ablations"])
ABLATION_DIR = "results/seed{seed}/ablations/{variant}"
OPTIM_KEYS = ("iterations", "batch_size", "lr", "weight_decay", "val_every")


wildcard_constraints:
    seed=r"\d+",
    variant=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


# l2o source files each stage depends on: an edit re-runs that stage (and what follows), nothing else.
STAGE_SOURCES = {
    "data": ["tasks/sparse_recovery/data.py", "io.py"],
    "classical": ["algorithms/ista.py", "algorithms/grid_search.py", "classical.py", "metrics.py"],
    "baseline": ["train/baseline.py", "train/loop.py", "train/common.py", "models/lista.py",
                 "models/lista_fused.py", "tasks/sparse_recovery/task.py", "checkpoints.py"],
    "stage1": ["train/stage1.py", "train/loop.py", "train/common.py", "models/lista.py",
               "models/lista_fused.py", "stopping/objectives.py", "stopping/oracle.py", "tasks/sparse_recovery/task.py",
               "checkpoints.py"],
    "stage2": ["train/stage2.py", "train/loop.py", "train/common.py", "models/stop_policy.py",
               "stopping/imitation.py", "stopping/distribution.py", "stopping/candidates.py",
               "stopping/oracle.py", "checkpoints.py"],
    "finetune": ["train/finetune.py", "train/joint.py", "train/loop.py", "train/common.py",
                 "stopping/objectives.py", "stopping/distribution.py", "checkpoints.py"],
    "aevb": ["train/aevb.py", "train/joint.py", "train/loop.py", "train/common.py",
             "stopping/objectives.py", "stopping/distribution.py", "models/stop_policy.py",
             "models/lista.py", "models/lista_fused.py", "checkpoints.py"],
    "lista_matched": ["train/matched.py", "train/baseline.py", "train/loop.py", "train/common.py",
                      "models/lista.py", "models/lista_fused.py", "tasks/sparse_recovery/task.py",
                      "checkpoints.py"],
    "evaluate": ["evaluate.py", "metrics.py", "stopping/inference.py", "stopping/distribution.py"],
    "report": ["report.py"],
}


def stage_sources(stage):
    """The l2o source files of a stage (declared as inputs, so edits trigger reruns)."""
    # relative to the working directory, so a moved or copied run dir keeps the same input set
    return [os.path.relpath(PKG / f) for f in STAGE_SOURCES[stage]]


def canonical(value):
    """Plain dicts with sorted keys, recursively: params are compared by repr, so the
    order of keys in a config file must not trigger a re-run."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def section(name):
    """A config section as a plain dict: the stage's params (tracked by repr for reruns)."""
    return canonical(config[name])


def is_activated(name):
    return bool(config[name]["enabled"])


def stage_model(stage, seed="{seed}"):
    return f"results/seed{seed}/{stage}/model.pt"


def stage1_inputs(wildcards):
    """Stage I's inputs (the main run's, or an ablation variant's: its own stage1.init)."""
    inputs = {"data": "results/data/problem.npz", "code": stage_sources("stage1")}
    stage1 = config["stage1"]
    if "variant" in wildcards.keys():
        stage1 = {**stage1, **config["ablations"][wildcards.variant].get("stage1", {})}
    if stage1["init"] == "baseline":
        inputs["init"] = stage_model("baseline", wildcards.seed)
    return inputs


def matched_inputs(wildcards):
    inputs = {"data": "results/data/problem.npz", "code": stage_sources("lista_matched")}
    if config["stage1"]["init"] == "baseline":
        inputs["init"] = stage_model("baseline", wildcards.seed)
    return inputs


def matched_section():
    """The matched-budget LISTA's settings: Stage I's optimiser, budget and init, the baseline's
    gamma (l2o.train.matched.matched_settings; computed here so parsing never imports torch)."""
    stage1 = config["stage1"]
    settings = {k: stage1[k] for k in OPTIM_KEYS}
    settings.update(gamma=config["baseline"]["gamma"], init=stage1["init"])
    return canonical(settings)


def evaluation_inputs(wildcards):
    models = {"lista": stage_model("baseline", wildcards.seed),
              "lista_stop": stage_model("stage2", wildcards.seed)}
    if is_activated("matched_lista"):
        models["lista_matched"] = stage_model("lista_matched", wildcards.seed)
    if is_activated("finetune"):
        models["lista_stop_ft"] = stage_model("finetune", wildcards.seed)
    if is_activated("aevb"):
        models["aevb"] = stage_model("aevb", wildcards.seed)
    return models


# --- ablations: named variants of the stopping pipeline -------------------------------
def check_ablations():
    """Fail at parse time, naming the variant and key, on overrides that are unknown, badly
    typed (the schema, applied to the merged config) or that change nothing."""
    for name, variant in config["ablations"].items():
        merged = {**config, "ablations": {}}
        for section_name, overrides in variant.items():
            unknown = sorted(set(overrides) - set(config[section_name]))
            if unknown:
                raise ValueError(f"ablations.{name}.{section_name}: unknown key(s) {unknown}; "
                                 f"config section {section_name!r} has {sorted(config[section_name])}")
            merged[section_name] = {**config[section_name], **overrides}
        if all(merged[s] == config[s] for s in variant):
            raise ValueError(f"ablations.{name} changes nothing: each override equals the main config")
        try:
            validate(merged, schema="../schemas/config.schema.yaml")
        except Exception as err:
            raise ValueError(f"ablations.{name}: the overridden config is invalid: {err}") from None


check_ablations()


def ablation_section(variant, name):
    """Config section ``name`` with variant's overrides applied (a stage's params)."""
    return canonical({**config[name], **config["ablations"][variant].get(name, {})})


def ablation_stage1_model(wildcards):
    """The variant's own Stage I model if it overrides stage1, else the main run's."""
    if "stage1" in config["ablations"][wildcards.variant]:
        return f"{ABLATION_DIR}/stage1/model.pt".format(seed=wildcards.seed, variant=wildcards.variant)
    return stage_model("stage1", wildcards.seed)


def ablation_outputs():
    return expand(f"{ABLATION_DIR}/evaluation/metrics.csv", seed=SEEDS, variant=ABLATIONS)


def report_config():
    """What the report shows of the config (all but tracking, which never re-runs anything)."""
    return canonical({k: v for k, v in config.items() if k != "tracking"})


def final_outputs():
    return ["results/summary.csv", "results/report.md", "results/report.html"]


onstart:
    if config["tracking"]["enabled"]:
        from l2o.tracking import config_hash, start_parent_run

        run_id = start_parent_run(
            config["tracking"]["experiment"],
            run_name="snakemake",
            tags={"config_hash": config_hash(report_config()), "workdir": str(Path.cwd())},
        )
        print(f"MLflow parent run {run_id}")


onsuccess:
    if config["tracking"]["enabled"]:
        from l2o.tracking import end_parent_run

        end_parent_run("FINISHED")


onerror:
    if config["tracking"]["enabled"]:
        from l2o.tracking import end_parent_run

        end_parent_run("FAILED")


SITE_PLACEHOLDER = "CHANGE_ME"


def check_site_settings():
    """Stop before any job when a cluster profile's site settings are still placeholders."""
    settings = workflow.resource_settings
    places = []
    groups = [("default-resources", settings.default_resources)]
    groups += [(f"set-resources.{rule}", res) for rule, res in (settings.overwrite_resources or {}).items()]
    for where, resources in groups:
        for key, resource in (resources or {}).items():
            if SITE_PLACEHOLDER in str(getattr(resource, "raw", resource)):
                places.append(f"{where}: {key}")
    if places:
        raise ValueError(
            f"the profile's site settings are still {SITE_PLACEHOLDER}: {'; '.join(places)}. "
            "Set your SLURM account and partition in the profile (or pass --default-resources)."
        )


check_site_settings()
