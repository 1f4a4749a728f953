"""The report: seeds aggregated (mean +- 95% CI), each task's tables beside the
paper's, the skeptic's questions answered, figures.

Writes ``summary.csv`` (tidy: ``task, method, condition, metric, value,
ci95, n_seeds``; the one machine-readable result), ``report.md`` and a
self-contained ``report.html`` (plots embedded), plus PNGs in a folder.
Modules: :mod:`~l2o.report.stats` (numbers), :mod:`~l2o.report.results` (a
task's files, loaded), :mod:`~l2o.report.skeptic`, :mod:`~l2o.report.ablations`,
:mod:`~l2o.report.plots`, :mod:`~l2o.report.sections`, :mod:`~l2o.report.render`,
:mod:`~l2o.report.build`. A task's own part lives in its package
(``l2o/tasks/<task>/report.py``).
"""
