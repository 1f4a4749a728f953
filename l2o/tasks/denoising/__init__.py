"""Blind Gaussian denoising (paper Sec. 5.3, Table 6): DnCNN with an output head per layer.

Light on purpose (no torch): the workflow reads :data:`SPEC` at parse time.
"""

from dataclasses import replace

from l2o.tasks.spec import TaskSpec

SPEC = TaskSpec(
    name="denoising",
    title="Blind denoising (DnCNN-stop, paper Sec. 5.3)",
    model_label="dncnn",
    model_name="DnCNN",
    step_outputs_are_heads=True,
    sources={
        "data": ("tasks/denoising/data.py", "tasks/denoising/images.py", "checksums.py"),
        "model": ("tasks/denoising/task.py", "tasks/denoising/data.py", "tasks/denoising/patches.py", "tasks/denoising/metrics.py",
                  "tasks/denoising/policy.py", "models/dncnn.py", "models/conv_policy.py", "models/stop_policy.py"),
        "classical": ("tasks/denoising/classical.py", "tasks/denoising/denoisers.py", "tasks/denoising/data.py",
                      "tasks/denoising/metrics.py"),
        "report": ("tasks/denoising/report.py", "tasks/denoising/published.py"),
    },
    has_classical=True,
    report="l2o.tasks.denoising.report",
)

#: The task variants of denoising (``l2o.tasks.registry.VARIANTS``): one non-blind DnCNN per noise
#: level of the standard table (DnCNN-S of Zhang et al. 2017), trained and tested at that sigma alone.
SPECS = {SPEC.name: SPEC, **{
    f"denoising_sigma{s}": replace(SPEC, name=f"denoising_sigma{s}",
                                   title=f"Non-blind denoising at σ = {s} (one DnCNN for this noise level, as DnCNN-S)")
    for s in (15, 25, 50)}}


def check_config(name: str, section: dict) -> None:
    """Parse-time checks of a denoising section (image folders exist and hold the expected number of
    images); the workflow calls it through :func:`l2o.tasks.registry.check_section`."""
    from l2o.tasks.denoising.preflight import check_folders

    check_folders(name, section.get("data") or {})
