"""Sparse-recovery data: the dictionary, the examples' statistics, determinism, load checks."""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import asdict

import numpy as np
import pytest

from l2o.tasks.sparse_recovery.data import (
    SPLITS_REQUIRED,
    ProblemConfig,
    blocks,
    content_hash,
    generate_problem,
    load_problem,
    make_dictionary,
    problem_summary,
    write_problem,
)


@pytest.fixture(scope="module")
def big_problem():
    """Paper-sized A (250 x 500) with 200 examples per SNR block (val, test, extra 10 dB)."""
    config = ProblemConfig(m=250, n=500, n_val_per_snr=200, n_test_per_snr=200,
                           extra_test_snr_db=[10.0], seed=1)
    return generate_problem(config)


# -- the dictionary -----------------------------------------------------------------


def test_unit_column_norms(tiny_problem, big_problem):
    for A in (tiny_problem.arrays["A"], big_problem[0]["A"]):
        assert A.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(A.astype(np.float64), axis=0), 1.0, atol=1e-6)


def test_condition_number_before_normalisation(tiny_problem, big_problem):
    for meta in (tiny_problem.meta, big_problem[1]):
        assert meta["cond_A_before_normalisation"] == pytest.approx(5.0, rel=1e-9)


@pytest.mark.parametrize("m, n, cond", [(20, 40, 5.0), (30, 30, 10.0), (10, 4, 2.0)])
def test_make_dictionary(m, n, cond):
    A, cond_before = make_dictionary(m, n, cond, np.random.default_rng(0))
    assert A.shape == (m, n) and A.dtype == np.float32
    assert cond_before == pytest.approx(cond, rel=1e-9)
    np.testing.assert_allclose(np.linalg.norm(A.astype(np.float64), axis=0), 1.0, atol=1e-6)
    # column scaling by factors of order one keeps the condition number of the same order
    assert np.linalg.cond(A.astype(np.float64)) < 3 * cond


def test_meta_spectrum_values(tiny_problem):
    A = tiny_problem.arrays["A"].astype(np.float64)
    meta = tiny_problem.meta
    assert meta["lambda_max_AtA"] == pytest.approx(np.linalg.eigvalsh(A.T @ A)[-1], rel=1e-9)
    assert meta["cond_A"] == pytest.approx(np.linalg.cond(A), rel=1e-9)
    assert meta["config"] == asdict(tiny_problem.config)
    assert meta["shapes"]["A"] == [20, 40]


# -- the examples -------------------------------------------------------------------


def test_sparsity(big_problem):
    """Fraction of non-zeros in x* ~ 0.1: 700k Bernoulli(0.1) entries, std 3.6e-4; 5 std."""
    arrays, _ = big_problem
    x = np.concatenate([arrays["val_x"], arrays["test_x"], arrays["extra_x"]])
    N = x.size
    frac = np.count_nonzero(x) / N
    assert abs(frac - 0.1) < 5 * np.sqrt(0.1 * 0.9 / N)


def test_empirical_snr_per_block(big_problem):
    """Mean over a block of 20 log10(std(clean) / std(noise)) within 0.2 dB of the level.

    With m = 250 the per-example estimate has std ~ 8.69 / sqrt(2 m) = 0.39 dB and a
    positive bias of about 8.69 / m = 0.035 dB (log of a sample std); over a block of
    200 that is 0.035 +- 0.027 dB, so 0.2 dB is > 5 standard errors away.
    """
    arrays, _ = big_problem
    A = arrays["A"].astype(np.float64)
    for split, levels in (("val", [20, 30, 40]), ("test", [20, 30, 40]), ("extra", [10])):
        y = arrays[f"{split}_y"].astype(np.float64)
        x = arrays[f"{split}_x"].astype(np.float64)
        snr = arrays[f"{split}_snr"]
        clean = x @ A.T
        noise = y - clean
        measured = 20 * np.log10(clean.std(axis=1) / noise.std(axis=1))
        assert sorted(np.unique(snr).tolist()) == levels
        for level in levels:
            block = snr == level
            assert block.sum() == 200
            assert abs(measured[block].mean() - level) < 0.2, (split, level)


def test_snr_blocks_layout(tiny_problem):
    arrays = tiny_problem.arrays
    np.testing.assert_array_equal(arrays["val_snr"], np.repeat([20.0, 30.0, 40.0], 50))
    np.testing.assert_array_equal(arrays["test_snr"], np.repeat([20.0, 30.0, 40.0], 50))
    np.testing.assert_array_equal(arrays["extra_snr"], np.full(50, 10.0))
    np.testing.assert_array_equal(blocks([1.0, 2.0], 2), [1.0, 1.0, 2.0, 2.0])
    assert arrays["val_y"].shape == (150, 20) and arrays["val_x"].shape == (150, 40)
    assert arrays["extra_y"].shape == (50, 20)
    assert arrays["val_y"].dtype == arrays["val_x"].dtype == np.float32
    np.testing.assert_array_equal(arrays["meta_snr_db"], [20.0, 30.0, 40.0])
    assert float(arrays["meta_sparsity"]) == pytest.approx(0.1)
    assert "train_y" not in arrays


def test_fixed_training_set():
    arrays, _ = generate_problem(ProblemConfig(m=5, n=10, n_val_per_snr=2, n_test_per_snr=2,
                                               train_examples=30))
    assert arrays["train_y"].shape == (30, 5) and arrays["train_x"].shape == (30, 10)
    assert set(arrays["train_snr"].tolist()) <= {20.0, 30.0, 40.0}


def test_val_and_test_sets_differ(tiny_problem):
    assert not np.array_equal(tiny_problem.arrays["val_x"], tiny_problem.arrays["test_x"])


# -- determinism ----------------------------------------------------------------------


def test_same_seed_byte_identical_files(tmp_path, tiny_problem, monkeypatch):
    config = tiny_problem.config
    a, b = tmp_path / "a" / "problem.npz", tmp_path / "b" / "problem.npz"
    meta_a = write_problem(config, a)
    # a later wall clock must not leak into the archive (e.g. zip member timestamps)
    later = time.time() + 86400 * 3
    monkeypatch.setattr(zipfile, "time", type("Clock", (), {
        "time": staticmethod(lambda: later),
        "localtime": staticmethod(time.localtime),
    }))
    meta_b = write_problem(config, b)
    monkeypatch.undo()
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() == tiny_problem.path.read_bytes()
    assert meta_a["hash"] == meta_b["hash"] == tiny_problem.meta["hash"]
    assert load_problem(a)[1] == load_problem(b)[1] == meta_a["hash"]
    assert a.with_suffix(".json").read_text() == b.with_suffix(".json").read_text()


def test_different_seed_different_hash(tiny_problem):
    other = ProblemConfig(**{**asdict(tiny_problem.config), "seed": tiny_problem.config.seed + 1})
    _, meta = generate_problem(other)
    assert meta["hash"] != tiny_problem.meta["hash"]


def test_content_hash_is_order_independent_and_content_sensitive():
    a = {"x": np.arange(3, dtype=np.float32), "y": np.ones((2, 2))}
    b = {"y": np.ones((2, 2)), "x": np.arange(3, dtype=np.float32)}
    assert content_hash(a) == content_hash(b)
    assert content_hash(a) != content_hash({**a, "x": np.arange(3, dtype=np.float64)})
    assert content_hash(a) != content_hash({**a, "y": np.ones((4, 1))})
    assert content_hash(a) != content_hash({"z": a["x"], "y": a["y"]})


def test_sidecar_and_no_temporary_files(tiny_problem):
    folder = tiny_problem.path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["problem.json", "problem.npz"]
    side = problem_summary(tiny_problem.path.with_suffix(".json"))
    assert side["hash"] == tiny_problem.data_hash
    assert json.loads(tiny_problem.path.with_suffix(".json").read_text()) == side


def test_load_problem_round_trip(tiny_problem):
    arrays, h = load_problem(tiny_problem.path)
    assert h == tiny_problem.meta["hash"]
    assert set(SPLITS_REQUIRED) <= set(arrays)


# -- load errors ------------------------------------------------------------------------


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_problem(path)


def test_load_garbage_file(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip archive\x00\x01\x02")
    with pytest.raises(ValueError, match="garbage.npz"):
        load_problem(path)


def test_load_npz_lacking_arrays(tmp_path, tiny_problem):
    path = tmp_path / "partial.npz"
    arrays = {k: v for k, v in tiny_problem.arrays.items() if k not in ("test_y", "val_snr")}
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"partial\.npz.*(test_y|val_snr)"):
        load_problem(path)


@pytest.mark.parametrize("key, bad", [
    ("val_y", lambda a: a["val_y"][:, :-1]),  # m does not match A
    ("test_x", lambda a: a["test_x"][:, :-1]),  # n does not match A
    ("extra_x", lambda a: a["extra_x"][:-1]),  # example counts differ
    ("val_y", lambda a: a["val_y"][:, :, None]),  # wrong rank
])
def test_load_mismatched_shapes(tmp_path, tiny_problem, key, bad):
    path = tmp_path / "mismatch.npz"
    np.savez(path, **{**tiny_problem.arrays, key: bad(tiny_problem.arrays)})
    with pytest.raises(ValueError, match=r"mismatch\.npz"):
        load_problem(path)


@pytest.mark.parametrize("missing", ["extra_x", "extra_snr"])
def test_load_optional_split_lacking_arrays(tmp_path, tiny_problem, missing):
    # an optional split (extra, train) present with only some of its arrays
    path = tmp_path / f"no_{missing}.npz"
    np.savez(path, **{k: v for k, v in tiny_problem.arrays.items() if k != missing})
    with pytest.raises(ValueError, match=rf"no_{missing}\.npz.*{missing}"):
        load_problem(path)


@pytest.mark.parametrize("key, bad", [
    ("val_snr", lambda a: a["val_snr"][:-1]),  # one SNR label short
    ("test_snr", lambda a: np.concatenate([a["test_snr"], a["test_snr"]])),
    ("A", lambda a: a["A"].ravel()),  # A not a matrix
])
def test_load_mismatched_labels_and_matrix(tmp_path, tiny_problem, key, bad):
    path = tmp_path / "mismatch.npz"
    np.savez(path, **{**tiny_problem.arrays, key: bad(tiny_problem.arrays)})
    with pytest.raises(ValueError, match=r"mismatch\.npz"):
        load_problem(path)


@pytest.mark.parametrize("field, value", [("m", 0), ("cond", 0.5), ("sparsity", 0.0),
                                          ("sparsity", 1.5), ("snr_db", []), ("train_examples", -1)])
def test_problem_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        ProblemConfig(**{field: value})
