"""Data for sparse recovery, generated exactly as in the paper (numpy, seeded, CPU).

``A`` (m x n): N(0, 1/m) entries; singular values replaced by
``logspace(0, log10(1/cond), m)`` rescaled to norm ``sqrt(n)``, so the
condition number is ``cond``; then each column normalised to unit norm.
``x*``: Bernoulli(sparsity) support with N(0, 1) values. ``y = A x* + e``,
with per-example noise std ``std(A x*) 10^(-SNR/20)``.

The problem file (``.npz``) holds ``A``, the validation and test sets (and
optionally a fixed training set and test sets at extra SNR levels); a JSON
sidecar records the content hash, ``lambda_max(A^T A)`` and ``cond(A)``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from l2o.io import atomic_path, content_hash, write_json_atomic

SPLITS_REQUIRED = ("A", "meta_snr_db", "meta_sparsity", "val_y", "val_x", "val_snr", "test_y", "test_x", "test_snr")


@dataclass
class ProblemConfig:
    """Settings of the sparse-recovery problem (config section ``problem``)."""

    m: int = 250
    n: int = 500
    cond: float = 5.0
    sparsity: float = 0.1
    snr_db: list[float] = field(default_factory=lambda: [20.0, 30.0, 40.0])
    n_val_per_snr: int = 1000
    n_test_per_snr: int = 1000
    extra_test_snr_db: list[float] = field(default_factory=list)
    train_examples: int = 0
    seed: int = 2020

    def __post_init__(self):
        if self.m < 1 or self.n < 1:
            raise ValueError(f"problem.m and problem.n must be >= 1, got {self.m}, {self.n}")
        if self.cond < 1:
            raise ValueError(f"problem.cond must be >= 1, got {self.cond}")
        if not 0 < self.sparsity <= 1:
            raise ValueError(f"problem.sparsity must be in (0, 1], got {self.sparsity}")
        if not self.snr_db:
            raise ValueError("problem.snr_db must list at least one SNR level")
        if self.n_val_per_snr < 1 or self.n_test_per_snr < 1:
            raise ValueError("problem.n_val_per_snr and problem.n_test_per_snr must be >= 1")
        if self.train_examples < 0:
            raise ValueError("problem.train_examples must be >= 0 (0 = fresh examples)")


def make_dictionary(m: int, n: int, cond: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The measurement matrix, (m, n) float32, and its condition number before column scaling."""
    A = rng.normal(0.0, 1.0 / np.sqrt(m), size=(m, n))
    U, _, Vt = np.linalg.svd(A, full_matrices=False)  # U (m, k), Vt (k, n), k = min(m, n)
    k = min(m, n)
    s = np.logspace(0.0, np.log10(1.0 / cond), k)
    s *= np.sqrt(n) / np.linalg.norm(s)
    A = (U * s) @ Vt
    cond_before = float(s[0] / s[-1])
    A /= np.linalg.norm(A, axis=0, keepdims=True)
    return A.astype(np.float32), cond_before


def sample_examples(
    A: np.ndarray, snr_db: np.ndarray, sparsity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(y, x*)`` for one example per entry of ``snr_db``: (N, m), (N, n) float32."""
    N, n = len(snr_db), A.shape[1]
    support = rng.random((N, n)) < sparsity
    x = np.where(support, rng.normal(size=(N, n)), 0.0)
    clean = x @ A.T.astype(np.float64)
    noise_std = clean.std(axis=1, keepdims=True) * 10.0 ** (-snr_db[:, None] / 20.0)
    y = clean + noise_std * rng.normal(size=clean.shape)
    return y.astype(np.float32), x.astype(np.float32)


def blocks(levels: list[float], per_level: int) -> np.ndarray:
    """SNR of each example of a fixed set: ``per_level`` examples per level, in blocks."""
    return np.repeat(np.asarray(levels, dtype=np.float64), per_level)




def generate_problem(config: ProblemConfig) -> tuple[dict[str, np.ndarray], dict]:
    """All arrays of the problem and their metadata; deterministic in ``config.seed``."""
    rng = np.random.default_rng(config.seed)
    A, cond_before = make_dictionary(config.m, config.n, config.cond, rng)
    arrays: dict[str, np.ndarray] = {
        "A": A,
        "meta_snr_db": np.asarray(config.snr_db, dtype=np.float32),
        "meta_sparsity": np.asarray(config.sparsity, dtype=np.float32),
    }
    sets = {
        "val": blocks(config.snr_db, config.n_val_per_snr),
        "test": blocks(config.snr_db, config.n_test_per_snr),
    }
    if config.extra_test_snr_db:
        sets["extra"] = blocks(config.extra_test_snr_db, config.n_test_per_snr)
    if config.train_examples:
        sets["train"] = rng.choice(np.asarray(config.snr_db, dtype=np.float64), config.train_examples)
    for split, snr in sets.items():
        y, x = sample_examples(A, snr, config.sparsity, rng)
        arrays[f"{split}_y"], arrays[f"{split}_x"] = y, x
        arrays[f"{split}_snr"] = snr.astype(np.float32)
    gram = A.astype(np.float64).T @ A.astype(np.float64)
    meta = {
        "config": asdict(config),
        "hash": content_hash(arrays),
        "lambda_max_AtA": float(np.linalg.eigvalsh(gram)[-1]),
        "cond_A_before_normalisation": cond_before,
        "cond_A": float(np.linalg.cond(A.astype(np.float64))),
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
    }
    return arrays, meta


def write_problem(config: ProblemConfig, out: Path, meta_out: Path | None = None) -> dict:
    """Generate the problem and write ``out`` (.npz) and its JSON sidecar atomically."""
    arrays, meta = generate_problem(config)
    out = Path(out)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    write_json_atomic(meta, Path(meta_out) if meta_out else out.with_suffix(".json"))
    return meta


def load_problem(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """Read a problem file, check it, and return ``(arrays, content hash)``.

    Raises ``FileNotFoundError``/``ValueError`` naming the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"problem file {path} does not exist (run the data stage first)")
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as err:  # zip/pickle errors: the file is not a valid .npz
        raise ValueError(f"problem file {path} is not a readable .npz file: {err}") from err
    missing = [k for k in SPLITS_REQUIRED if k not in arrays]
    if missing:
        raise ValueError(f"problem file {path} lacks arrays {missing}")
    if arrays["A"].ndim != 2:
        raise ValueError(f"problem file {path}: A must be 2-D, got shape {arrays['A'].shape}")
    m, n = arrays["A"].shape
    for split in ("val", "test", "train", "extra"):
        present = [f"{split}_{k}" for k in ("y", "x", "snr") if f"{split}_{k}" in arrays]
        if not present:
            continue
        if len(present) != 3:
            lacking = [f"{split}_{k}" for k in ("y", "x", "snr") if f"{split}_{k}" not in arrays]
            raise ValueError(f"problem file {path}: split {split!r} lacks {lacking}")
        y, x, snr = arrays[f"{split}_y"], arrays[f"{split}_x"], arrays[f"{split}_snr"]
        if y.ndim != 2 or y.shape[1] != m or x.shape != (y.shape[0], n) or snr.shape != (y.shape[0],):
            raise ValueError(
                f"problem file {path}: {split}_y {y.shape} / {split}_x {x.shape} / {split}_snr "
                f"{snr.shape} do not match A {arrays['A'].shape}"
            )
    return arrays, content_hash(arrays)


def problem_summary(meta_path: Path) -> dict:
    """The JSON sidecar of a problem file."""
    return json.loads(Path(meta_path).read_text())
