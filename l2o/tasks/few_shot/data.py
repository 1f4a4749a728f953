"""The few-shot tasks' config section ``data`` and their data files.

Classification: the class images (rendered glyphs, Omniglot or MiniImagenet)
with their meta-train / meta-val / meta-test class split, and the task sampler's
settings (N-way, k1-k2 shots, query shots). Regression: the task family
(sinusoids, linear functions). Both files also fix the seed and the number of
the meta-validation and meta-test tasks, which are drawn at load time, one
generator per task (:func:`~l2o.tasks.few_shot.sampler.task_seed`), so they
are the same every time. The config is stored in the file (``config_json``),
so the data hash changes with any setting.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from l2o.config import take_fields
from l2o.io import content_hash, read_npz, write_json_atomic, write_npz_atomic
from l2o.tasks.few_shot.regression import LinearConfig, SinusoidConfig
from l2o.tasks.few_shot.class_images import ClassImages
from l2o.tasks.few_shot.sampler import TaskSamplerConfig, check_int, check_shot_range

SOURCES = ("glyphs", "omniglot", "miniimagenet")
FAMILIES = ("sinusoid", "linear")


@dataclass
class ClassificationDataConfig:
    """Config section ``data`` of ``few_shot_classification``.

    :param source: ``glyphs`` (characters rendered from matplotlib's fonts, offline),
        ``omniglot`` or ``miniimagenet`` (local folders under ``root``).
    :param root: the dataset's folder (Omniglot: ``images_background``/``images_evaluation``;
        MiniImagenet: ``images/`` + ``{train,val,test}.csv``, or one folder per split).
    :param image_size: side in pixels (Omniglot 28, MiniImagenet 84).
    :param ways: N classes per task; ``shots``: [k1, k2], k ~ U{k1..k2} per task, shared by its
        classes (the released sampler); ``per_class_shots``: each class draws its own k.
    :param query_shots: query examples per class.
    :param val_tasks, test_tasks: fixed meta-validation / meta-test tasks (paper: 600 test tasks).
    :param seed: seed of the fixed tasks.
    :param glyphs: settings of the glyph set (:class:`~l2o.tasks.few_shot.glyphs.GlyphConfig`).
    :param rotations: Omniglot's rotation class augmentation (90/180/270) of meta-train classes.
    :param split_file: Omniglot: a file listing the characters in the split order (Finn et al.'s).
    """

    source: str = "glyphs"
    root: str | None = None
    image_size: int = 28
    ways: int = 5
    shots: list[int] = field(default_factory=lambda: [1, 5])
    query_shots: int = 1
    per_class_shots: bool = False
    val_tasks: int = 100
    test_tasks: int = 600
    seed: int = 0
    glyphs: dict = field(default_factory=dict)
    rotations: bool = False
    split_file: str | None = None

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"data.source must be one of {SOURCES}, got {self.source!r}")
        if self.source != "glyphs" and not self.root:
            raise ValueError(f"data.root: give the folder of {self.source} (source {self.source!r} reads local files)")
        check_int(self.image_size, "data.image_size", 16)
        check_int(self.val_tasks, "data.val_tasks", 1)
        check_int(self.test_tasks, "data.test_tasks", 1)
        self.sampler  # validates ways, shots, query_shots

    @property
    def sampler(self) -> TaskSamplerConfig:
        return TaskSamplerConfig(ways=self.ways, shots=list(self.shots), query_shots=self.query_shots,
                                 per_class_shots=self.per_class_shots)


@dataclass
class RegressionDataConfig:
    """Config section ``data`` of ``few_shot_regression``.

    :param family: ``sinusoid`` (Finn et al. 2017: amplitude, phase and inputs uniform) or
        ``linear`` (w ~ N(0, weight_std^2 I_d), x ~ N(0, I/d): the query-optimal number of
        inner steps grows with the shots and is known exactly).
    :param shots: [k1, k2] support points per task, k ~ U{k1..k2}.
    :param query_points: noisy query points per task (the honest oracle chooses each task's step on
        them and scores it on the noise-free error).
    :param clean_points: points on which each task's noise-free error is measured (the headline
        metric): an even grid over ``x_range`` (sinusoid) or draws from the input distribution (linear).
    """

    family: str = "sinusoid"
    shots: list[int] = field(default_factory=lambda: [1, 10])
    query_points: int = 10
    clean_points: int = 200
    noise_std: float = 0.0
    amplitude: list[float] = field(default_factory=lambda: [0.1, 5.0])
    phase: list[float] = field(default_factory=lambda: [0.0, float(np.pi)])
    x_range: list[float] = field(default_factory=lambda: [-5.0, 5.0])
    dim: int = 20
    weight_std: float = 1.0
    val_tasks: int = 100
    test_tasks: int = 600
    seed: int = 0

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"data.family must be one of {FAMILIES}, got {self.family!r}")
        self.shots = check_shot_range(self.shots, "data.shots")
        check_int(self.clean_points, "data.clean_points", 1)
        check_int(self.val_tasks, "data.val_tasks", 1)
        check_int(self.test_tasks, "data.test_tasks", 1)
        self.family_config  # validates the family's settings

    @property
    def family_config(self) -> SinusoidConfig | LinearConfig:
        if self.family == "sinusoid":
            return SinusoidConfig(amplitude=list(self.amplitude), phase=list(self.phase), x_range=list(self.x_range),
                                  noise_std=self.noise_std, shots=list(self.shots), query_points=self.query_points,
                                  clean_points=self.clean_points)
        return LinearConfig(dim=self.dim, noise_std=self.noise_std, weight_std=self.weight_std,
                            shots=list(self.shots), query_points=self.query_points, clean_points=self.clean_points)


def class_images(cfg: ClassificationDataConfig) -> ClassImages:
    """The class images of a classification config, from their source."""
    if cfg.source == "glyphs":
        from l2o.tasks.few_shot.glyphs import GlyphConfig, build_glyph_dataset

        glyph_cfg = take_fields(GlyphConfig, {"image_size": cfg.image_size, **cfg.glyphs}, "config section 'data.glyphs'")
        return build_glyph_dataset(glyph_cfg)
    from l2o.tasks.few_shot.folders import load_miniimagenet, load_omniglot

    if cfg.source == "omniglot":
        return load_omniglot(cfg.root, cfg.image_size, cfg.rotations, split_file=cfg.split_file, ways=cfg.ways)
    return load_miniimagenet(cfg.root, cfg.image_size, ways=cfg.ways)


def write_classification_data(cfg: ClassificationDataConfig, out: Path) -> dict:
    """Write the class images, the split and the config to ``out`` (+ JSON sidecar), atomically."""
    from l2o.tasks.few_shot.class_images import as_class_tensor

    data = class_images(cfg)
    images, counts = as_class_tensor(data.images)
    for split in ("train", "val", "test"):
        if len(data.splits.get(split, [])) < cfg.ways:
            raise ValueError(f"data.ways = {cfg.ways}, but the {split} split of {cfg.source} has only "
                             f"{len(data.splits.get(split, []))} classes")
    arrays = {
        "images": images.numpy(), "counts": counts.numpy(),
        "names": np.asarray(data.names, dtype=str), "alphabets": np.asarray(data.alphabets, dtype=str),
        "config_json": np.asarray(json.dumps(asdict(cfg), sort_keys=True)),
        **{f"split/{k}": np.asarray(v, dtype=np.int64) for k, v in data.splits.items()},
    }
    return _write(arrays, out, {"config": asdict(cfg), "classes": {k: int(len(v)) for k, v in data.splits.items()},
                                "image_shape": list(arrays["images"].shape[2:]),
                                "alphabets": {k: sorted({data.alphabets[int(c)] for c in v})
                                              for k, v in data.splits.items()}})


def write_regression_data(cfg: RegressionDataConfig, out: Path) -> dict:
    """Write the regression config to ``out`` (+ JSON sidecar): the tasks are drawn from it."""
    arrays = {"config_json": np.asarray(json.dumps(asdict(cfg), sort_keys=True))}
    return _write(arrays, out, {"config": asdict(cfg)})


def _write(arrays: dict, out: Path, meta: dict) -> dict:
    out = Path(out)
    write_npz_atomic(arrays, out)
    sidecar = {"hash": content_hash(arrays), **meta}
    write_json_atomic(sidecar, out.with_suffix(".json"))
    return sidecar


def read_data(path: Path) -> tuple[dict, dict, str]:
    """``(arrays, config dict, content hash)`` of a few-shot data file; errors name the file."""
    arrays = read_npz(path, "few-shot data file")
    if "config_json" not in arrays:
        raise ValueError(f"few-shot data file {path} has no config_json (not written by the data stage)")
    return arrays, json.loads(str(arrays["config_json"])), content_hash(arrays)
