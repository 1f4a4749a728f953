"""Sparse recovery (paper Sec. 5.1): LISTA on ``y = A x* + noise``.

Light on purpose (no torch): the workflow reads :data:`SPEC` at parse time.
"""

from l2o.tasks.spec import TaskSpec

SPEC = TaskSpec(
    name="sparse_recovery",
    title="Sparse recovery (LISTA-stop, paper Sec. 5.1)",
    model_label="lista",
    model_name="LISTA",
    sources={
        "data": ("tasks/sparse_recovery/data.py", "io.py"),
        "model": ("tasks/sparse_recovery/task.py", "models/lista.py",
                  "models/lista_fused.py", "models/stop_policy.py"),
        "classical": ("algorithms/ista.py", "algorithms/grid_search.py", "tasks/sparse_recovery/classical.py",
                      "tasks/sparse_recovery/data.py", "metrics.py", "tradeoff.py"),
        "report": ("tasks/sparse_recovery/report.py",),
    },
    has_classical=True,
    report="l2o.tasks.sparse_recovery.report",
)
