"""Task-imbalanced few-shot learning (paper Sec. 5.2, Tables 4-5): MAML-stop learns how many
inner gradient steps each task takes. Two tasks share this package: image classification
(rendered glyphs offline; Omniglot, MiniImagenet from local folders) and regression
(sinusoids, linear functions).

Light on purpose (no torch): the workflow reads :data:`SPECS` at parse time.
"""

from l2o.tasks.spec import TaskSpec

_COMMON = ("tasks/few_shot/task.py", "tasks/few_shot/policy.py", "tasks/few_shot/sampler.py", "tasks/few_shot/regression.py",
           "models/maml.py", "models/meta_nets.py", "models/stop_policy.py")
_DATA = ("tasks/few_shot/data.py", "tasks/few_shot/sampler.py", "tasks/few_shot/regression.py",
         "tasks/few_shot/glyphs.py", "tasks/few_shot/glyph_render.py", "tasks/few_shot/folders.py")



def _spec(name: str, title: str) -> TaskSpec:
    """Both few-shot tasks: MAML, the same sources and report module."""
    return TaskSpec(name=name, title=title, model_label="maml", model_name="MAML",
                    sources={"data": _DATA, "model": _COMMON + ("tasks/few_shot/data.py",),
                             "report": ("tasks/few_shot/report.py",)},
                    report="l2o.tasks.few_shot.report")


SPECS = {
    "few_shot_classification": _spec("few_shot_classification",
                                     "Task-imbalanced few-shot classification (MAML-stop, paper Sec. 5.2)"),
    "few_shot_regression": _spec("few_shot_regression", "Few-shot regression with task-imbalanced shots (MAML-stop)"),
}
