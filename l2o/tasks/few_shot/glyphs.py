"""An Omniglot-like few-shot image set rendered from the fonts matplotlib ships (offline).

**What it is.** A class is one character (a Unicode code point, a letter or a
digit); an instance is that character drawn in one font with a random affine
jitter (rotation, scale, aspect, shear, shift) and a random stroke width. The
fonts are the 12 DejaVu text faces (Sans, Sans Mono, Serif, each in 4 styles)
and the 4 STIXGeneral faces inside matplotlib's wheel
(``matplotlib.get_data_path()/fonts/ttf``); a character needs ``min_fonts`` of
them. Images are ``image_size`` x ``image_size`` gray, **white glyph on black**
(as Omniglot after the released code's ``ImageOps.invert``), stored uint8
(255 = ink; the sampler maps to [0, 1]).

**Alphabets and splits.** A class's alphabet is its script, read from the
character's Unicode name (``LATIN SMALL LETTER A`` -> Latin; ASCII digits are
their own alphabet, Digits). Splits are by alphabet, like Omniglot's
background / evaluation split: ``val_scripts`` (default Greek) go to
meta-validation, ``test_scripts`` (default Armenian and Georgian) to
meta-test, every other script to meta-train (Latin, Cyrillic, Digits, Lao with
the defaults). Classes and scripts are disjoint across splits.

**Which characters.** Unicode categories Lu, Ll, Lt, Lo and Nd (no modifier
letters, which are tiny marks); no precomposed accented letters or
compatibility forms (a character is kept only if its NFD and NFKC forms are
itself: one class per base letter, not "a" plus its 20 accented variants,
which differ by a few pixels); no small capitals (``SMALL CAPITAL`` in the
name: with the glyph centred and the scale jittered, a small capital is its
capital or a Cyrillic/Greek lowercase letter); a font counts for a character
if its cmap has it and the rendering has ink and is not the font's
missing-glyph box. Then look-alikes are removed: two characters are
duplicates when their clean renderings (no jitter, same font, at
``image_size``) differ by less than ``dedup_distance`` (0.08) in RMS pixel
difference (0-1 scale), averaged over the fonts both have. Measured at 28 x 28:
Latin A / Greek Alpha / Cyrillic A are 0.006-0.008 apart, Greek kappa /
Cyrillic ka 0.068, Latin n / Cyrillic pe 0.078, Armenian yi / Latin dotless j
0.080 (all duplicates); Latin l / l with bar 0.090 and t / t with stroke 0.099
stay distinct classes, like Omniglot's near-identical characters; the median
nearest-neighbour distance is about 0.17. Greedily, in code-point order, a
character is dropped if it duplicates one already kept, so the earlier
(mostly Latin) form stays and homoglyphs in later scripts go: this keeps tasks
well posed and keeps meta-test glyphs out of meta-train. (Greek eta goes, as a
duplicate of Latin n with long right leg, U+019E.)

With the defaults: 742 classes, 20 instances each: meta-train 503 (Latin 344,
Cyrillic 119, Lao 30, Digits 10), meta-val 54 (Greek), meta-test 185 (Georgian
119, Armenian 66); 103 look-alikes dropped; 11.7 MB as uint8; built in 13-25 s
on the shared two-core machine. ``min_fonts = 4`` adds scripts only the DejaVu
Sans faces carry (Canadian Syllabics, Hebrew, Arabic, Lisu, Old Italic,
Coptic; to meta-train unless named).

**Why it is a fair stand-in for Omniglot** (1,623 characters of 50 alphabets,
20 drawings each): many classes with few instances each, characters of several
scripts, and meta-test scripts never seen in meta-training, at the same 28 x 28
size and polarity; the within-class variation (16 typefaces x affine and
stroke jitter) plays the role of Omniglot's 20 drawers. What differs: printed,
not handwritten (no stroke-order or wobble variation, cleaner edges), fewer
alphabets (7 scripts against 50), fewer classes (742 against 1,623), and a
split by script where MAML's Omniglot split is by character (its 1,100 / 100
/ 423 characters mix alphabets), so ours is the harder, Lake-style transfer.

**Rendering** (:mod:`l2o.tasks.few_shot.glyph_render`). Each (character, font) is rendered once with PIL's FreeType at
4x the output size, cropped to its ink and centred; each instance is that
bitmap after a random dilation/erosion (stroke width) and an affine warp
(``torch.nn.functional.grid_sample``), averaged down 4x (anti-aliased).
Deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from l2o.tasks.few_shot.glyph_render import (  # noqa: F401 (render_*: part of this module's API)
    SUPERSAMPLE,
    _canvas,
    _is_box,
    _Renderer,
    _stroke,
    _warp,
    clean_images,
    font_coverage,
    list_fonts,
    render_clean,
    render_notdef,
)
from l2o.tasks.few_shot.class_images import ClassImages, write_class_images
from l2o.tasks.few_shot.glyph_classes import glyph_distances, greedy_dedup, is_candidate, script_of
from l2o.tasks.few_shot.sampler import check_int

def _check_float(value, key: str, lo: float, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{key} must be a number, got {value!r}")
    if not (value >= lo and (hi is None or value <= hi)):
        raise ValueError(f"{key} must be in [{lo}, {hi if hi is not None else 'inf'}], got {value!r}")
    return float(value)


def _check_names(value, key: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a list of script names, got {value!r}")
    return list(value)


@dataclass
class GlyphConfig:
    """Settings of the rendered-glyph few-shot set (config section ``data``).

    :param int instances_per_class: M, instances per character (fonts x jitters).
    :param int image_size: output side in pixels (Omniglot: 28).
    :param int min_fonts: a character needs at least this many fonts.
    :param int seed: seed of the jitter and of the font order per class.
    :param list val_scripts: scripts of meta-validation.
    :param list test_scripts: scripts of meta-test (every other script: meta-train).
    :param float dedup_distance: look-alike threshold (RMS pixel difference of
        clean renderings, 0-1 scale); 0 keeps every candidate.
    :param max_classes_per_script: keep only the first N candidates (code-point
        order) of each script, before rendering: a small, different set, for tests.
    :param float rotation: rotation ~ U[-r, r] degrees.
    :param list scale: isotropic scale ~ U[low, high].
    :param float aspect: log aspect ratio ~ U[-a, a].
    :param float shear: shear factor ~ U[-s, s].
    :param float shift: translation ~ U[-s, s] of the image side, per axis.
    :param bool stroke: thin, keep or thicken the strokes at random (1/3 each).
    :param font_dir: a folder of .ttf/.otf fonts to use instead of matplotlib's.
    """

    instances_per_class: int = 20
    image_size: int = 28
    min_fonts: int = 8
    seed: int = 0
    val_scripts: list[str] = field(default_factory=lambda: ["Greek"])
    test_scripts: list[str] = field(default_factory=lambda: ["Armenian", "Georgian"])
    dedup_distance: float = 0.08
    max_classes_per_script: int | None = None
    rotation: float = 10.0
    scale: list[float] = field(default_factory=lambda: [0.8, 1.05])
    aspect: float = 0.1
    shear: float = 0.2
    shift: float = 0.06
    stroke: bool = True
    font_dir: str | None = None

    def __post_init__(self):
        self.instances_per_class = check_int(self.instances_per_class, "data.instances_per_class", 1)
        self.image_size = check_int(self.image_size, "data.image_size", 8)
        self.min_fonts = check_int(self.min_fonts, "data.min_fonts", 1)
        self.seed = check_int(self.seed, "data.seed", 0)
        self.val_scripts = _check_names(self.val_scripts, "data.val_scripts")
        self.test_scripts = _check_names(self.test_scripts, "data.test_scripts")
        both = sorted(set(self.val_scripts) & set(self.test_scripts))
        if both:
            raise ValueError(f"data.val_scripts and data.test_scripts both name {both}")
        self.dedup_distance = _check_float(self.dedup_distance, "data.dedup_distance", 0.0, 1.0)
        if self.max_classes_per_script is not None:
            self.max_classes_per_script = check_int(self.max_classes_per_script, "data.max_classes_per_script", 1)
        self.rotation = _check_float(self.rotation, "data.rotation", 0.0, 45.0)
        if not isinstance(self.scale, (list, tuple)) or len(self.scale) != 2:
            raise ValueError(f"data.scale must be a pair [low, high], got {self.scale!r}")
        self.scale = [_check_float(s, "data.scale", 0.3, 2.0) for s in self.scale]
        if self.scale[0] > self.scale[1]:
            raise ValueError(f"data.scale = {self.scale}: low must be <= high")
        self.aspect = _check_float(self.aspect, "data.aspect", 0.0, 0.5)
        self.shear = _check_float(self.shear, "data.shear", 0.0, 0.5)
        self.shift = _check_float(self.shift, "data.shift", 0.0, 0.25)
        if not isinstance(self.stroke, bool):
            raise ValueError(f"data.stroke must be true or false, got {self.stroke!r}")
        if self.font_dir is not None and not isinstance(self.font_dir, str):
            raise ValueError(f"data.font_dir must be a folder path or null, got {self.font_dir!r}")


# -- jitter ------------------------------------------------------------------------------


def _affine_thetas(n: int, config: GlyphConfig, rng: np.random.Generator) -> Tensor:
    """(n, 2, 3) ``affine_grid`` matrices (output -> input, normalised coordinates)."""
    rot = np.deg2rad(rng.uniform(-config.rotation, config.rotation, n))
    scale = rng.uniform(config.scale[0], config.scale[1], n)
    log_aspect = rng.uniform(-config.aspect, config.aspect, n)
    shear = rng.uniform(-config.shear, config.shear, n)
    shift = rng.uniform(-config.shift, config.shift, (n, 2)) * 2.0  # normalised coords span 2
    thetas = np.zeros((n, 2, 3))
    for i in range(n):
        c, s = np.cos(rot[i]), np.sin(rot[i])
        A = (
            np.array([[c, -s], [s, c]])
            @ np.array([[1.0, shear[i]], [0.0, 1.0]])
            @ np.diag([scale[i] * np.exp(log_aspect[i] / 2), scale[i] * np.exp(-log_aspect[i] / 2)])
        )
        inv = np.linalg.inv(A)  # forward p_out = A p_in + t, so p_in = A^-1 (p_out - t)
        thetas[i, :, :2] = inv
        thetas[i, :, 2] = -inv @ shift[i]
    return torch.from_numpy(thetas).float()


# -- the dataset ---------------------------------------------------------------------------


def _file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def build_glyph_dataset(config: GlyphConfig, return_info: bool = False):
    """Render the glyph set: ``ClassImages(images, names, splits, alphabets)``.

    ``images`` is (C, M, 1, H, W) uint8 (255 = ink, white on black); ``names``
    are ``"<Script>/U+XXXX"``; ``splits`` maps train/val/test to int64 class
    indices (by script, see the module docstring); ``alphabets`` is each
    class's script. Classes are ordered by script, then code point.

    :param bool return_info: also return a dict: ``fonts`` (file names),
        ``font_sha`` (first 16 hex of each file's SHA-256), ``code_points``,
        ``instance_font`` (C, M) int16 (index into ``fonts``), ``duplicates``
        (dropped look-alikes, with the kept class and distance), ``scripts``
        (classes per script), ``seconds`` (build time).
    :return: ``ClassImages``, or ``(ClassImages, info)``.
    """
    start = time.perf_counter()
    size, M = config.image_size, config.instances_per_class
    R = SUPERSAMPLE * size
    fonts = list_fonts(config.font_dir)
    coverage = [font_coverage(p) for p in fonts]

    # 1. Candidates: base letters/digits of known scripts in >= min_fonts cmaps.
    counts: dict[int, int] = {}
    for cov in coverage:
        for cp in cov:
            counts[cp] = counts.get(cp, 0) + 1
    candidates = sorted(cp for cp, n in counts.items() if n >= config.min_fonts and is_candidate(cp))
    if config.max_classes_per_script is not None:
        per_script: dict[str, int] = {}
        kept_cps = []
        for cp in candidates:
            s = script_of(cp)
            if per_script.get(s, 0) < config.max_classes_per_script:
                per_script[s] = per_script.get(s, 0) + 1
                kept_cps.append(cp)
        candidates = kept_cps

    # 2. Render each (character, font) once; skip blanks and missing-glyph boxes.
    renderer = _Renderer(fonts, R)
    crops: dict[tuple[int, int], np.ndarray] = {}
    rendered: list[int] = []
    for cp in candidates:
        mine = {}
        for f, cov in enumerate(coverage):
            if cp not in cov:
                continue
            crop = renderer.raw(cp, f)
            if crop is None or _is_box(crop, renderer.notdef(f, cov)):
                continue
            mine[f] = crop
        if len(mine) >= config.min_fonts:
            for f, crop in mine.items():
                crops[(len(rendered), f)] = crop
            rendered.append(cp)

    # 3. Drop look-alikes (clean renderings at the output size), in code-point order.
    keys = list(crops)
    clean = clean_images([crops[k] for k in keys], size) if keys else np.zeros((0, size, size))
    D = glyph_distances(dict(zip(keys, clean)), len(rendered), len(fonts))
    kept, dropped = greedy_dedup(D, config.dedup_distance) if config.dedup_distance > 0 else (
        list(range(len(rendered))), [])
    duplicates = [
        {"dropped": f"U+{rendered[i]:04X} {chr(rendered[i])}", "kept": f"U+{rendered[j]:04X} {chr(rendered[j])}",
         "distance": round(float(D[i, j]), 4)}
        for i, j in dropped
    ]

    # 4. Classes ordered by script, then code point; split by script.
    scripts = {i: script_of(rendered[i]) for i in kept}
    order = sorted(kept, key=lambda i: (scripts[i], rendered[i]))
    present = sorted(set(scripts.values()))
    for key, named in (("data.val_scripts", config.val_scripts), ("data.test_scripts", config.test_scripts)):
        absent = [s for s in named if s not in present]
        if absent:
            raise ValueError(f"{key} names scripts {absent} that have no classes; scripts built: {present}")
    alphabets = [scripts[i] for i in order]
    split_of = {s: "val" for s in config.val_scripts} | {s: "test" for s in config.test_scripts}
    splits = {
        name: np.asarray([c for c, a in enumerate(alphabets) if split_of.get(a, "train") == name], dtype=np.int64)
        for name in ("train", "val", "test")
    }
    if splits["train"].size == 0:
        raise ValueError(f"no scripts left for meta-train: all of {present} are in data.val_scripts/test_scripts")

    # 5. Instances: fonts in a random order per class (cycled), each with its own jitter.
    rng = np.random.default_rng(config.seed)
    images = np.zeros((len(order), M, 1, size, size), dtype=np.uint8)
    instance_font = np.zeros((len(order), M), dtype=np.int16)
    fonts_of: dict[int, list[int]] = {}
    for i, f in crops:
        fonts_of.setdefault(i, []).append(f)
    chunk = max(1, 512 // M)  # instances per warp: small chunks stay in cache
    for lo in range(0, len(order), chunk):
        batch, where = [], []
        for c in range(lo, min(lo + chunk, len(order))):
            perm = rng.permutation(sorted(fonts_of[order[c]]))
            strokes = rng.integers(-1, 2, M) if config.stroke else np.zeros(M, dtype=int)
            for m in range(M):
                f = int(perm[m % len(perm)])
                instance_font[c, m] = f
                batch.append(_stroke(crops[(order[c], f)], int(strokes[m])))
                where.append((c, m))
        out = _warp(_canvas(batch, R), _affine_thetas(len(batch), config, rng))
        out = (out.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).numpy()
        for (c, m), img in zip(where, out):
            images[c, m, 0] = img

    data = ClassImages(
        images=images,
        names=[f"{scripts[i]}/U+{rendered[i]:04X}" for i in order],
        splits=splits,
        alphabets=alphabets,
    )
    if not return_info:
        return data
    info = {
        "fonts": [p.name for p in fonts],
        "font_sha": [_file_sha(p) for p in fonts],
        "code_points": [rendered[i] for i in order],
        "instance_font": instance_font,
        "duplicates": duplicates,
        "scripts": {s: alphabets.count(s) for s in present},
        "seconds": time.perf_counter() - start,
    }
    return data, info


def write_glyph_dataset(config: GlyphConfig, out: Path) -> dict:
    """Build the glyph set and write it with :func:`write_class_images` (.npz + JSON sidecar).

    The sidecar's ``meta`` holds the config, the fonts with their SHA-256
    prefixes, the matplotlib and Pillow versions, classes per script and
    split, the characters of each class, the dropped look-alikes and the build
    time. The ``.npz`` also gets nothing beyond the class images: the
    per-instance font is in the sidecar's summary only as counts.

    :return: the sidecar's contents.
    """
    import matplotlib
    import PIL

    data, info = build_glyph_dataset(config, return_info=True)
    meta = {
        "source": "glyphs rendered from matplotlib's fonts" if config.font_dir is None else "glyphs from data.font_dir",
        "config": asdict(config),
        "fonts": dict(zip(info["fonts"], info["font_sha"])),
        "versions": {"matplotlib": matplotlib.__version__, "Pillow": PIL.__version__},
        "scripts": info["scripts"],
        "characters": {n: chr(cp) for n, cp in zip(data.names, info["code_points"])},
        "duplicates_dropped": info["duplicates"],
        "build_seconds": round(info["seconds"], 2),
        "polarity": "white glyph (255) on black (0)",
    }
    return write_class_images(data, out, meta)
