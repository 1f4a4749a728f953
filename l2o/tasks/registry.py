"""The registry of tasks: a plain dict from a task's name to its class.

Classes are named by import path (``"package.module:Class"``) and imported on
first use, so the workflow can read the registry, and each task's
:class:`~l2o.tasks.spec.TaskSpec`, without importing torch. To add a task,
write its package (see ``docs/add-a-task.md``) and add one line here; or,
for a task that lives in your own package, list it in the environment
variable ``L2O_TASKS`` (``name=package.module:Class``, comma-separated), which
the workflow and every job it starts read; or call :func:`register` (tests
and notebooks).
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

ENV_VAR = "L2O_TASKS"

TASKS: dict[str, str] = {
    "sparse_recovery": "l2o.tasks.sparse_recovery.task:SparseRecoveryTask",
    "denoising": "l2o.tasks.denoising.task:DenoisingTask",
    "few_shot_classification": "l2o.tasks.few_shot.task:FewShotClassificationTask",
    "few_shot_regression": "l2o.tasks.few_shot.task:FewShotRegressionTask",
}

#: Variants: another name for a registered task, so that one config can hold several sections of it
#: (several data files, several trained models), e.g. the non-blind DnCNN of each noise level of the
#: standard denoising table beside the blind one. A variant runs its base's class under its own name
#: (rows, checkpoints and MLflow tags say the variant), its package's ``SPECS[variant]`` describes it,
#: and its schema is its base's (``workflow/schemas/tasks/<variant>.schema.yaml`` links to it).
VARIANTS: dict[str, str] = {
    "denoising_sigma15": "denoising",
    "denoising_sigma25": "denoising",
    "denoising_sigma50": "denoising",
}
TASKS.update({variant: TASKS[base] for variant, base in VARIANTS.items()})
_VARIANT_CLASSES: dict[str, type] = {}


def tasks_from_env(value: str | None) -> dict[str, str]:
    """``{name: class path}`` from ``L2O_TASKS`` (``name=pkg.module:Class,...``).

    >>> tasks_from_env("toy=toy_task:ToyTask, other=pkg.mod:Other")
    {'toy': 'toy_task:ToyTask', 'other': 'pkg.mod:Other'}
    """
    out = {}
    for item in (value or "").split(","):
        if not item.strip():
            continue
        name, sep, path = item.partition("=")
        if not sep or ":" not in path or not name.strip():
            raise ValueError(f"{ENV_VAR}: {item.strip()!r} is not name=package.module:Class")
        out[name.strip()] = path.strip()
    return out


def register(name: str, class_path: str) -> None:
    """Add (or replace) a task: ``register("mytask", "mypkg.task:MyTask")``."""
    if ":" not in class_path:
        raise ValueError(f"task class path must look like 'package.module:Class', got {class_path!r}")
    TASKS[name] = class_path


def _entry(name: str) -> str:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered tasks: {sorted(TASKS)}")
    return TASKS[name]


def task_class(name: str) -> type:
    """The task's class (imports its module, and so torch); for a variant, its base's class with
    ``name`` set to the variant's (one class per variant, made on first use)."""
    module, cls = _entry(name).split(":")
    base = getattr(importlib.import_module(module), cls)
    if name not in VARIANTS:
        return base
    if name not in _VARIANT_CLASSES:
        _VARIANT_CLASSES[name] = type(f"{base.__name__}_{name}", (base,),
                                      {"name": name, "__module__": base.__module__,
                                       "__doc__": f"{base.__name__} as the task variant {name!r}."})
    return _VARIANT_CLASSES[name]


def base_task(name: str) -> str:
    """The registered task a variant runs (a task is its own base).

    >>> base_task("denoising_sigma25"), base_task("denoising")
    ('denoising', 'denoising')
    """
    return VARIANTS.get(name, name)


def task_package(name: str) -> str:
    """The package holding the task (the class's module's parent): ``l2o.tasks.sparse_recovery``."""
    return _entry(name).split(":")[0].rsplit(".", 1)[0]


def task_spec(name: str):
    """The task's :class:`~l2o.tasks.spec.TaskSpec`: its package's ``SPEC``, or ``SPECS[name]`` for a
    package that holds several tasks (light import)."""
    package = importlib.import_module(task_package(name))
    spec = getattr(package, "SPECS", {}).get(name) or getattr(package, "SPEC", None)
    if spec is None:
        raise AttributeError(f"task package {task_package(name)} defines no SPEC (nor SPECS[{name!r}])")
    if spec.name != name:
        raise ValueError(f"task {name!r} is registered, but its SPEC is named {spec.name!r}")
    return spec


def check_section(name: str, section: dict) -> None:
    """The task's own checks of its (schema-validated) config section that need no torch, e.g. that the
    folders it names exist: its package's optional ``check_config(name, section)``. The workflow runs it
    at parse time, so a bad path stops the run before any job, naming the key."""
    check = getattr(importlib.import_module(task_package(name)), "check_config", None)
    if check is not None:
        check(name, section)


def task_dir(name: str) -> Path:
    """The folder of the task's package."""
    return Path(importlib.import_module(task_package(name)).__file__).parent


def task_classical(name: str):
    """The task's ``run_classical(*, data, out_table, out_json, classical, device=None)`` (its
    package's ``classical`` module), for tasks whose spec says ``has_classical``."""
    if not task_spec(name).has_classical:
        raise ValueError(f"task {name!r} has no classical baselines")
    run = importlib.import_module(f"{task_package(name)}.classical").run_classical
    return functools.partial(run, task=name) if name in VARIANTS else run


def load_task(name: str, data: Path, device: str | None = None):
    """The task ``name`` on its data file, on ``device`` (default: ``$L2O_DEVICE`` or auto)."""
    from l2o.device import resolve_device

    return task_class(name).load(Path(data), resolve_device(device))


TASKS.update(tasks_from_env(os.environ.get(ENV_VAR)))
