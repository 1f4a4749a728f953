"""Benchmark suite of l2o: training-step cost against a FLOP lower bound, memory,
early-exit inference, time to accuracy against FISTA, and workflow overhead.

Run ``python -m bench.run [--quick] [--out bench/results]``; see ``bench/README.md``.
"""
