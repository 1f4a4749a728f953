"""N-way, k-shot task sampling over classes of images (task-imbalanced few-shot, paper Sec. 5.2).

A *class-image set* is ``images`` (C, M, ...) (C classes, M instances each;
uint8 in [0, 255] or float in [0, 1]) or a list of per-class arrays (M_c, ...)
when the classes have different numbers of instances, with a split
``{"train": class indices, "val": ..., "test": ...}``.
:class:`~l2o.tasks.few_shot.class_images.ClassImages` bundles them, and
:mod:`l2o.tasks.few_shot.class_images` stores them in an ``.npz`` with a JSON sidecar.

A task draws ``ways`` distinct classes of one split in a random order (label j
is the j-th class drawn, so the labelling is a random permutation), one shot
count k ~ U{k1, ..., k2} shared by its classes (as the released
``RandClassSplitter``), and k + ``query_shots`` distinct instances of each
class: the first k go to the support set, the rest to the query set.

A batch of B tasks is a dict of CPU tensors (S = ways k2, Q = ways query_shots):

- ``support_x`` (B, S, ...) float32 in [0, 1]; ``support_y`` (B, S) int64
  labels in 0..ways-1; ``support_mask`` (B, S) float32, 1 for a real example
  and 0 for padding. Real examples come first (label-major: the k examples of
  label 0, then of label 1, ...), padding last; padded examples are zero
  images with label 0, so a masked loss needs no special case.
- ``query_x`` (B, Q, ...) float32; ``query_y`` (B, Q) int64 (label-major, no padding).
- ``shots`` (B,) int64: the task's shots per class (its *condition*).
- extras: ``classes`` (B, ways) int64, the class index of each label;
  ``class_shots`` (B, ways) int64, the shots of each label (all equal to
  ``shots`` unless ``per_class_shots``).

All randomness comes from the ``torch.Generator`` passed in. Fixed evaluation
sets (:func:`fixed_tasks`) draw task i from its own generator seeded by
(seed, split, i), so they do not depend on the chunk size.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from l2o.tasks.few_shot.class_images import as_class_tensor, split_class_indices, to_float_images

SPLITS = ("train", "val", "test")

# Integer code of each split in a fixed task set's seed (see task_seed).
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


# -- config ---------------------------------------------------------------------------


def check_int(value, key: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum``, or a ValueError naming ``key``.

    >>> check_int(3, "data.ways", 2)
    3
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_shot_range(value, key: str, minimum: int = 1) -> list[int]:
    """``value`` as ``[k1, k2]`` with ``minimum <= k1 <= k2``, or a ValueError naming ``key``."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{key} must be a pair [k1, k2], got {value!r}")
    k1 = check_int(value[0], f"{key}[0] (k1)", minimum)
    k2 = check_int(value[1], f"{key}[1] (k2)", minimum)
    if k1 > k2:
        raise ValueError(f"{key} = [{k1}, {k2}]: k1 must be <= k2")
    return [k1, k2]


@dataclass
class TaskSamplerConfig:
    """How tasks are drawn (config section ``data``).

    :param int ways: classes per task (N).
    :param list shots: ``[k1, k2]``: each task's shots per class k ~ U{k1..k2};
        ``k1 == k2`` is the balanced (vanilla) setting.
    :param int query_shots: query examples per class.
    :param bool per_class_shots: each class of a task draws its own k. The
        paper's "k1-k2-shot" text does not say whether k is per task or per
        class; the released code (``RandClassSplitter``) draws one k per task,
        shared by its classes, which is the default here.
    """

    ways: int = 5
    shots: list[int] = field(default_factory=lambda: [1, 5])
    query_shots: int = 1
    per_class_shots: bool = False

    def __post_init__(self):
        self.ways = check_int(self.ways, "data.ways", 2)
        self.shots = check_shot_range(self.shots, "data.shots")
        self.query_shots = check_int(self.query_shots, "data.query_shots", 1)
        if not isinstance(self.per_class_shots, bool):
            raise ValueError(f"data.per_class_shots must be true or false, got {self.per_class_shots!r}")

    @property
    def support_size(self) -> int:
        """S = ways k2, the padded support size."""
        return self.ways * self.shots[1]

    @property
    def query_size(self) -> int:
        """Q = ways query_shots."""
        return self.ways * self.query_shots


def _check_split(cls: Tensor, counts: Tensor, config: TaskSamplerConfig, split: str, names) -> None:
    if cls.numel() < config.ways:
        raise ValueError(
            f"split {split!r} has {cls.numel()} classes, fewer than data.ways = {config.ways}"
        )
    need = config.shots[1] + config.query_shots
    short = (counts[cls] < need).nonzero().reshape(-1)
    if short.numel():
        c = int(cls[short[0]])
        label = f" ({names[c]})" if names is not None else ""
        raise ValueError(
            f"split {split!r}: class {c}{label} has {int(counts[c])} instances, fewer than "
            f"data.shots[1] + data.query_shots = {need}"
            + (f" ({short.numel()} such classes)" if short.numel() > 1 else "")
        )


# -- sampling ---------------------------------------------------------------------------


def _draw_indices(counts: Tensor, cls: Tensor, config: TaskSamplerConfig, B: int, generator) -> tuple[Tensor, ...]:
    """The random part of B tasks: classes (B, N), class_shots (B, N), instances (B, N, k2 + q)."""
    N, (k1, k2), q = config.ways, config.shots, config.query_shots
    # Classes: a random ordered subset of `ways` classes; label j = the j-th drawn.
    pick = torch.rand(B, cls.numel(), generator=generator, dtype=torch.float64).argsort(dim=1)[:, :N]
    classes = cls[pick]
    if config.per_class_shots:
        class_shots = torch.randint(k1, k2 + 1, (B, N), generator=generator)
    else:
        class_shots = torch.randint(k1, k2 + 1, (B, 1), generator=generator).expand(B, N)
    # Instances: a random order of each class's valid instances; the first k2 + q.
    M = int(counts.max())
    keys = torch.rand(B, N, M, generator=generator, dtype=torch.float64)
    keys = keys.masked_fill(torch.arange(M) >= counts[classes].unsqueeze(-1), 2.0)
    return classes, class_shots, keys.argsort(dim=-1)[..., : k2 + q]


def _assemble(data: Tensor, classes: Tensor, class_shots: Tensor, inst: Tensor, config: TaskSamplerConfig) -> dict:
    """The batch dict of tasks given their random draws (see the module docstring)."""
    B, N = classes.shape
    k2, q = config.shots[1], config.query_shots
    # Support: label-major, real examples first (stable sort on "is padding").
    real = torch.arange(k2) < class_shots.unsqueeze(-1)  # (B, N, k2)
    order = torch.sort((~real).reshape(B, N * k2).to(torch.int8), dim=1, stable=True).indices  # (B, S)
    sup_cls = classes.unsqueeze(-1).expand(B, N, k2).reshape(B, N * k2).gather(1, order)
    sup_inst = inst[..., :k2].reshape(B, N * k2).gather(1, order)
    mask = real.reshape(B, N * k2).gather(1, order)
    support_y = torch.arange(N).repeat_interleave(k2).expand(B, -1).gather(1, order)
    support_x = to_float_images(data[sup_cls, sup_inst])  # (B, S, ...)
    support_x[~mask] = 0.0
    query_x = to_float_images(data[classes.unsqueeze(-1), inst[..., k2:]])  # (B, N, q, ...)
    return {
        "support_x": support_x,
        "support_y": torch.where(mask, support_y, 0),
        "support_mask": mask.to(torch.float32),
        "query_x": query_x.reshape(B, N * q, *data.shape[2:]),
        "query_y": torch.arange(N).repeat_interleave(q).expand(B, -1).clone(),
        "shots": class_shots[:, 0].clone() if not config.per_class_shots else class_shots.sum(1) // N,
        "classes": classes,
        "class_shots": class_shots.contiguous(),
    }


def sample_tasks(
    images,
    classes,
    config: TaskSamplerConfig,
    batch_size: int,
    generator: torch.Generator,
    *,
    split: str = "train",
    names: Sequence[str] | None = None,
) -> dict[str, Tensor]:
    """A batch of ``batch_size`` N-way, k-shot classification tasks from one split.

    :param images: (C, M, ...) array/tensor (uint8 0-255 or float 0-1) or a list
        of per-class arrays (M_c, ...).
    :param classes: the split's class indices into ``images``.
    :param TaskSamplerConfig config: ways, shot range, query shots.
    :param int batch_size: B.
    :param torch.Generator generator: the only source of randomness (CPU).
    :param str split: the split's name, for error messages.
    :param names: class names, for error messages.
    :return: the batch dict described in the module docstring. With
        ``per_class_shots``, ``shots`` is the number of real support examples
        divided by ways (rounded down) and ``class_shots`` holds each label's k.

    >>> imgs = np.zeros((6, 4, 1, 2, 2), dtype=np.uint8)
    >>> cfg = TaskSamplerConfig(ways=3, shots=[1, 2], query_shots=1)
    >>> b = sample_tasks(imgs, [0, 1, 2, 3], cfg, 2, torch.Generator().manual_seed(0))
    >>> tuple(b["support_x"].shape), tuple(b["query_y"].shape), b["support_mask"].sum(1).tolist() == (3 * b["shots"]).tolist()
    ((2, 6, 1, 2, 2), (2, 3), True)
    """
    check_int(batch_size, "batch_size", 1)
    data, counts = as_class_tensor(images)
    cls = split_class_indices(classes, data.shape[0], split)
    _check_split(cls, counts, config, split, names)
    draws = _draw_indices(counts, cls, config, int(batch_size), generator)
    return _assemble(data, *draws, config)


def task_seed(seed: int, split: str, index: int) -> int:
    """The seed of task ``index`` of a fixed task set (distinct per split and seed).

    >>> task_seed(0, "test", 3) == task_seed(0, "test", 3) != task_seed(0, "val", 3)
    True
    """
    code = SPLIT_CODES.get(split, zlib.crc32(split.encode()) + len(SPLIT_CODES))
    state = np.random.SeedSequence([int(seed), int(code), int(index)]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1  # < 2**63


def iter_fixed_tasks(
    images,
    classes,
    config: TaskSamplerConfig,
    n_tasks: int = 600,
    seed: int = 0,
    chunk: int = 100,
    *,
    split: str = "test",
    names: Sequence[str] | None = None,
) -> Iterator[dict[str, Tensor]]:
    """The batches of :func:`fixed_tasks`, built one chunk at a time (bounded memory).

    The 600 MiniImagenet test tasks (5-way, 10 + 5 shots, 84 x 84 RGB) take
    3.8 GB as float32: iterate instead of keeping them all.
    """
    check_int(n_tasks, "n_tasks", 1)
    check_int(chunk, "chunk", 1)
    data, counts = as_class_tensor(images)
    cls = split_class_indices(classes, data.shape[0], split)
    _check_split(cls, counts, config, split, names)
    for lo in range(0, n_tasks, chunk):
        draws = [
            _draw_indices(counts, cls, config, 1, torch.Generator().manual_seed(task_seed(seed, split, i)))
            for i in range(lo, min(lo + chunk, n_tasks))
        ]
        yield _assemble(data, *(torch.cat(parts) for parts in zip(*draws)), config)


def fixed_tasks(
    images,
    classes,
    config: TaskSamplerConfig,
    n_tasks: int = 600,
    seed: int = 0,
    chunk: int = 100,
    *,
    split: str = "test",
    names: Sequence[str] | None = None,
) -> list[dict[str, Tensor]]:
    """A fixed, seeded set of ``n_tasks`` tasks (meta-validation / meta-test), in chunks.

    Task i is drawn from its own generator, seeded by ``task_seed(seed, split,
    i)``: the set is the same for any ``chunk``, and differs between splits.
    The paper evaluates 600 tasks (the released loop ran one batch too many,
    610 on Omniglot: not copied). See :func:`iter_fixed_tasks` for large images.

    :return: ``ceil(n_tasks / chunk)`` batches (the last may be smaller).
    """
    return list(iter_fixed_tasks(images, classes, config, n_tasks, seed, chunk, split=split, names=names))
