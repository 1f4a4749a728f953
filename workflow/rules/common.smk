# Helpers (no rules): config validation, per-task and per-stage parameters and sources,
# the list of final outputs, and the MLflow parent run of this invocation.
# Nothing here imports torch: `snakemake` with nothing to do must start fast.
import os
from pathlib import Path

from snakemake.utils import validate

from l2o.config import with_prior_sweep
from l2o.tasks.registry import TASKS as REGISTERED, check_section, task_spec


validate(config, schema="../schemas/config.schema.yaml")

REPO = Path(workflow.basedir)
PKG = REPO / "l2o"
ENV = "../../envs/l2o.yaml"
TASK_NAMES = list(config["tasks"])
OPTIM_KEYS = ("iterations", "batch_size", "lr", "weight_decay", "val_every", "lr_milestones", "lr_gamma")
ABLATION_DIR = "results/{task}/seed{seed}/ablations/{variant}"


def check_tasks():
    """Every listed task is registered and has a schema; every other top-level key is a task section."""
    for name in TASK_NAMES:
        if name not in REGISTERED:
            raise ValueError(f"tasks: unknown task {name!r}; registered tasks: {sorted(REGISTERED)} "
                             "(l2o/tasks/registry.py)")
    known = {"tasks", "seeds", "tracking", "threads"} | set(REGISTERED)
    unknown = sorted(set(config) - known)
    if {"problem", "model", "stage1"} & set(unknown):
        raise ValueError(f"config sections {unknown} are in the old flat layout: put each task's sections under "
                         "its name (sparse_recovery: {data: ..., model: ..., stage1: ...}; 'problem' is now 'data'), "
                         "as config.yaml does")
    if unknown:
        raise ValueError(f"unknown config section(s) {unknown}; top-level keys are tasks, seeds, tracking, threads "
                         f"and the section of a registered task ({sorted(REGISTERED)})")


def validate_task_section(name, section):
    """Check a task's section against workflow/schemas/tasks/<name>.schema.yaml and fill its defaults."""
    schema = Path(workflow.basedir) / "workflow" / "schemas" / "tasks" / f"{name}.schema.yaml"
    if not schema.is_file():
        raise ValueError(f"task {name!r} has no config schema {schema} (every task needs one)")
    try:
        validate(section, schema=str(schema))
    except Exception as err:
        raise ValueError(f"config section {name!r} is invalid: {err}") from None


# Rule priorities (the `priority:` of each rule): training chains first, so that the longest chains
# (few-shot classification's evaluation, sparse recovery's baseline -> Stage I -> Stage II) do not start
# last and run alone; the classical baselines, which nothing waits for but the report, fill the gaps.


def rule_threads(rule):
    """The threads of a rule's jobs (config key ``threads.<rule>``)."""
    return int(config["threads"][rule])


def check_threads():
    """On a local run, no rule may ask for more threads than ``--cores`` gives (Snakemake would
    silently run it on fewer): an error naming the key, before any job."""
    cores = getattr(workflow, "_cores", None)
    if not workflow.local_exec or workflow.remote_exec or not isinstance(cores, int):
        return
    over = {rule: n for rule, n in config["threads"].items() if int(n) > cores}
    if over:
        keys = ", ".join(f"threads.{rule} = {n}" for rule, n in sorted(over.items()))
        raise ValueError(f"{keys}: more threads than the {cores} core(s) of this run (--cores {cores}); "
                         f"lower it in the config or give snakemake more cores")


check_tasks()
check_threads()
for _name in TASK_NAMES:
    config.setdefault(_name, {})
    validate_task_section(_name, config[_name])
    check_section(_name, config[_name])  # the task's own checks (image folders exist), before any job
    config[_name] = with_prior_sweep(_name, config[_name])  # the lambda sweep as ablation variants


wildcard_constraints:
    task="|".join(TASK_NAMES) or "-",
    seed=r"\d+",
    variant=r"[A-Za-z0-9][A-Za-z0-9_.-]*",


# --- sources: an edit to a file re-runs the stages that run it, nothing else -------------
GENERIC_SOURCES = {
    "data": ["io.py"],
    "classical": ["io.py", "metrics.py"],
    "baseline": ["train/baseline.py"],
    "stage1": ["train/stage1.py", "stopping/objectives.py", "stopping/oracle.py", "stopping/prior.py"],
    "stage2": ["train/stage2.py", "stopping/imitation.py", "stopping/distribution.py", "stopping/candidates.py",
               "stopping/oracle.py", "stopping/prior.py", "stopping/rules.py"],
    "finetune": ["train/finetune.py", "train/joint.py", "stopping/objectives.py", "stopping/distribution.py",
                 "stopping/prior.py"],
    "aevb": ["train/aevb.py", "train/joint.py", "stopping/candidates.py", "stopping/objectives.py",
             "stopping/distribution.py", "stopping/prior.py"],
    "matched": ["train/matched.py", "train/baseline.py"],
    "evaluate": ["evaluate.py", "readings.py", "paired.py", "tradeoff.py", "metrics.py", "stopping/inference.py",
                 "stopping/distribution.py", "stopping/rules.py"],
    "report": ["report/build.py", "report/results.py", "report/stats.py", "report/skeptic.py",
               "report/ablations.py", "report/plots.py", "report/tradeoff.py", "report/tradeoff_points.py",
               "report/sections.py", "report/render.py", "tasks/spec.py"],
}
# what every stage that builds or runs a model uses, besides its own files
MODEL_STAGES = ("baseline", "stage1", "stage2", "finetune", "aevb", "matched", "evaluate")
MODEL_SOURCES = ["train/loop.py", "train/common.py", "outputs.py", "checkpoints.py", "tasks/base.py",
                 "tasks/registry.py", "models/step_model.py", "config.py", "stopping/rules.py"]
TASK_ROLE = {"data": "data", "classical": "classical", "evaluate": "evaluate", "report": "report"}


def stage_files(task, stage):
    """The l2o source files (relative to l2o/) a stage of a task depends on."""
    spec = task_spec(task)
    files = list(GENERIC_SOURCES[stage])
    if stage in MODEL_STAGES:
        files += MODEL_SOURCES + list(spec.sources.get("model", ()))
    if stage in TASK_ROLE:
        files += list(spec.sources.get(TASK_ROLE[stage], ()))
    return sorted(set(files))


def task_sources(stage):
    """Input function: the stage's source files for the job's task (declared as inputs, so edits
    trigger reruns), relative to the working directory so a moved run dir keeps the same inputs."""

    def sources(wildcards):
        return [os.path.relpath(PKG / f) for f in stage_files(wildcards.task, stage)]

    return sources


def report_sources():
    files = set()
    for name in TASK_NAMES:
        files.update(stage_files(name, "report"))
    return [os.path.relpath(PKG / f) for f in sorted(files)]


# --- config sections as params -------------------------------------------------
def canonical(value):
    """Plain dicts with sorted keys, recursively: params are compared by repr, so the
    order of keys in a config file must not trigger a re-run."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def task_config(task):
    return config[task]


def task_param(name):
    """Params function: config section ``name`` of the job's task, as a plain dict."""

    def param(wildcards):
        return canonical(task_config(wildcards.task)[name])

    return param


def task_seeds(task):
    return [int(s) for s in task_config(task).get("seeds", config["seeds"])]


def is_activated(task, name):
    return bool(task_config(task)[name]["enabled"])


def data_file(task="{task}"):
    return f"results/{task}/data/data.npz"


def data_meta(task="{task}"):
    return f"results/{task}/data/data.json"


def stage_model(stage, task="{task}", seed="{seed}"):
    return f"results/{task}/seed{seed}/{stage}/model.pt"


def stage1_inputs(wildcards):
    """Stage I's inputs (the main run's, or an ablation variant's: its own stage1.init)."""
    inputs = {"data": data_file(wildcards.task), "code": task_sources("stage1")(wildcards)}
    stage1 = task_config(wildcards.task)["stage1"]
    if "variant" in wildcards.keys():
        stage1 = {**stage1, **task_config(wildcards.task)["ablations"][wildcards.variant].get("stage1", {})}
    if stage1["init"] == "baseline":
        inputs["init"] = stage_model("baseline", wildcards.task, wildcards.seed)
    return inputs


def matched_inputs(wildcards):
    inputs = {"data": data_file(wildcards.task), "code": task_sources("matched")(wildcards)}
    if task_config(wildcards.task)["stage1"]["init"] == "baseline":
        inputs["init"] = stage_model("baseline", wildcards.task, wildcards.seed)
    return inputs


def matched_section(wildcards):
    """The matched-budget control's settings: Stage I's optimiser, budget and init, the baseline's
    gamma (l2o.train.matched.matched_settings; computed here so parsing never imports torch)."""
    cfg = task_config(wildcards.task)
    settings = {k: cfg["stage1"][k] for k in OPTIM_KEYS}
    settings.update(gamma=cfg["baseline"]["gamma"], init=cfg["stage1"]["init"])
    return canonical(settings)


def evaluation_inputs(wildcards):
    """The job's models by role (l2o.evaluate.ROLES)."""
    task, seed = wildcards.task, wildcards.seed
    models = {"baseline": stage_model("baseline", task, seed), "stop": stage_model("stage2", task, seed)}
    if is_activated(task, "matched"):
        models["matched"] = stage_model("matched", task, seed)
    if is_activated(task, "finetune"):
        models["stop_ft"] = stage_model("finetune", task, seed)
    if is_activated(task, "aevb"):
        models["aevb"] = stage_model("aevb", task, seed)
    return models


# --- ablations: named variants of the stopping pipeline, per task -------------------------
def check_ablations(task):
    """Fail at parse time, naming the task, variant and key, on overrides that are unknown, badly
    typed (the task's schema, applied to the merged section) or that change nothing."""
    section = task_config(task)
    for name, variant in section["ablations"].items():
        merged = {**section, "ablations": {}}
        for section_name, overrides in variant.items():
            unknown = sorted(set(overrides) - set(section[section_name]))
            if unknown:
                raise ValueError(f"{task}.ablations.{name}.{section_name}: unknown key(s) {unknown}; "
                                 f"section {section_name!r} has {sorted(section[section_name])}")
            merged[section_name] = {**section[section_name], **overrides}
        if all(merged[s] == section[s] for s in variant):
            raise ValueError(f"{task}.ablations.{name} changes nothing: each override equals the main config")
        try:
            validate_task_section(task, merged)
        except Exception as err:
            raise ValueError(f"{task}.ablations.{name}: the overridden config is invalid: {err}") from None


for _name in TASK_NAMES:
    check_ablations(_name)


def ablation_section(name):
    """Params function: section ``name`` with the variant's overrides applied."""

    def param(wildcards):
        section = task_config(wildcards.task)
        return canonical({**section[name], **section["ablations"][wildcards.variant].get(name, {})})

    return param


def ablation_stage1_model(wildcards):
    """The variant's own Stage I model if it overrides stage1, else the main run's."""
    if "stage1" in task_config(wildcards.task)["ablations"][wildcards.variant]:
        return f"{ABLATION_DIR}/stage1/model.pt".format(**dict(wildcards.items()))
    return stage_model("stage1", wildcards.task, wildcards.seed)


def ablation_tables(task, name="metrics.csv"):
    variants = sorted(task_config(task)["ablations"])
    return expand(f"{ABLATION_DIR}/evaluation/{name}", task=task, seed=task_seeds(task), variant=variants)


# --- the report ---------------------------------------------------------------------
def report_inputs(wildcards):
    """Every task's files, named ``<task>__<kind>`` (the report script regroups them)."""
    inputs = {}
    for task in TASK_NAMES:
        seeds = task_seeds(task)
        inputs[f"{task}__tables"] = expand("results/{task}/seed{seed}/evaluation/metrics.csv", task=task, seed=seeds)
        inputs[f"{task}__curves"] = expand("results/{task}/seed{seed}/evaluation/curves.json", task=task, seed=seeds)
        inputs[f"{task}__showcase"] = expand("results/{task}/seed{seed}/evaluation/showcase.npz", task=task,
                                             seed=seeds)
        inputs[f"{task}__data_meta"] = data_meta(task)
        inputs[f"{task}__ablation_tables"] = ablation_tables(task)
        inputs[f"{task}__ablation_curves"] = ablation_tables(task, "curves.json")
        if task_spec(task).has_classical:
            inputs[f"{task}__classical"] = f"results/{task}/classical/metrics.csv"
            inputs[f"{task}__classical_info"] = f"results/{task}/classical/classical.json"
            inputs[f"{task}__classical_showcase"] = f"results/{task}/classical/showcase.npz"
    return inputs


def report_config():
    """What the report shows of the config (the tasks run and their sections; not tracking,
    which never re-runs anything)."""
    return canonical({"tasks": TASK_NAMES, "seeds": config["seeds"], **{t: task_config(t) for t in TASK_NAMES}})


def classical_tasks():
    return [t for t in TASK_NAMES if task_spec(t).has_classical]


def final_outputs():
    return ["results/summary.csv", "results/report.md", "results/report.html"]


onstart:
    if config["tracking"]["enabled"]:
        from l2o.tracking import config_hash, start_invocation

        run_id = start_invocation(
            config["tracking"]["experiment"],
            run_name="snakemake",
            tags={"config_hash": config_hash(report_config()), "workdir": str(Path.cwd()),
                  "tasks": ",".join(TASK_NAMES)},
            orphan_after_hours=config["tracking"]["orphan_after_hours"],
            retry_s=config["tracking"]["retry_seconds"],
        )
        print(f"MLflow parent run {run_id}")


onsuccess:
    if config["tracking"]["enabled"]:
        from l2o.tracking import end_invocation

        end_invocation(success=True, retry_s=config["tracking"]["retry_seconds"])


onerror:
    if config["tracking"]["enabled"]:
        from l2o.tracking import end_invocation

        end_invocation(success=False, log_file=log, retry_s=config["tracking"]["retry_seconds"])


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
