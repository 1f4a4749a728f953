"""l2o: learning to stop while learning to predict.

Importing this package does no work: no argument parsing, no device probing,
no file writes and no heavy imports. Import the submodules you need, e.g.
``from l2o.stopping.distribution import stop_log_distribution``.
"""

__version__ = "0.1.0"
