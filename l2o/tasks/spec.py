"""What the workflow and the report need to know of a task, without importing it.

Each task package defines ``SPEC = TaskSpec(...)`` in its ``__init__.py``,
which must stay light (no torch): the Snakefile reads it at parse time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Roles of a task's source files. An edit to a file re-runs the stages of its role:
#: ``data`` the data rule; ``model`` every training stage and the evaluation (the task
#: class, its model and policy); ``classical`` the classical baselines; ``evaluate``
#: the evaluation; ``report`` the report.
SOURCE_ROLES = ("data", "model", "classical", "evaluate", "report")


@dataclass(frozen=True)
class TaskSpec:
    """A task's static description.

    :param name: the registry key, the config section and the ``task`` column.
    :param title: a heading for the report.
    :param model_label: the predictive model's name in method names (``lista``).
    :param model_name: its display name (``LISTA``, ``DnCNN``); default ``model_label`` upper-cased.
    :param sources: ``{role: files under l2o/}`` (roles: :data:`SOURCE_ROLES`).
    :param has_classical: whether the task has a ``classical`` rule (non-learned baselines).
    :param report: the module whose ``sections(...)`` writes the task's part of the report.
    :param step_outputs_are_heads: each step's output is a read-out head of its own (DnCNN-stop),
        untrained in a plain model trained on its last output only (``baseline.gamma: 0``), whose
        earlier depths the accuracy-vs-compute plot then leaves out (LISTA's iterates and MAML's
        inner steps are meaningful at any depth).
    """

    name: str
    title: str
    model_label: str
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    has_classical: bool = False
    report: str | None = None
    model_name: str = ""
    step_outputs_are_heads: bool = False

    def __post_init__(self):
        unknown = sorted(set(self.sources) - set(SOURCE_ROLES))
        if unknown:
            raise ValueError(f"task {self.name!r}: unknown source role(s) {unknown}; known: {SOURCE_ROLES}")

    @property
    def display(self) -> str:
        return self.model_name or self.model_label.upper()

    def method(self, role: str) -> str:
        """A method name from a role: ``stop`` -> ``lista_stop``; ``aevb`` stays ``aevb``.

        >>> TaskSpec("t", "T", "lista").method("stop_ft")
        'lista_stop_ft'
        >>> TaskSpec("t", "T", "lista").method("baseline")
        'lista'
        """
        return METHOD_NAMES[role].format(model=self.model_label)


#: Method names by role (``{model}`` is the task's ``model_label``).
METHOD_NAMES = {
    "baseline": "{model}",
    "stop": "{model}_stop",
    "stop_ft": "{model}_stop_ft",
    "aevb": "aevb",
    "matched": "{model}_matched",
    "fixed_depth": "{model}_fixed_depth",
    "best_depth": "{model}_best_depth",
    "condition_depth": "{model}_condition_depth",
    "heuristic": "{model}_stop_heuristic",
}
