"""Sparse recovery (paper Sec. 5.1): LISTA on ``y = A x* + noise``."""
