"""The rendered-glyph stand-in for Omniglot: a small build is deterministic, split by alphabet, no boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from l2o.tasks.few_shot.class_images import load_class_images
from l2o.tasks.few_shot.glyph_classes import glyph_distances
from l2o.tasks.few_shot.glyphs import (
    GlyphConfig,
    build_glyph_dataset,
    list_fonts,
    render_clean,
    render_notdef,
    write_glyph_dataset,
)

SMALL = {"instances_per_class": 4, "image_size": 16, "max_classes_per_script": 3}


@pytest.fixture(scope="module")
def small():
    return build_glyph_dataset(GlyphConfig(**SMALL), return_info=True)


def test_small_build_shapes_and_splits(small):
    data, info = small
    C = len(data.names)
    assert data.images.shape == (C, 4, 1, 16, 16) and data.images.dtype == np.uint8
    assert len(set(data.names)) == C and len(data.alphabets) == C
    assert all(n.startswith(a + "/U+") for n, a in zip(data.names, data.alphabets))
    idx = np.concatenate(list(data.splits.values()))
    assert sorted(idx.tolist()) == list(range(C))  # every class in exactly one split
    alph = {s: {data.alphabets[c] for c in v} for s, v in data.splits.items()}
    assert alph["val"] == {"Greek"} and alph["test"] == {"Armenian", "Georgian"}
    assert {"Latin", "Cyrillic", "Digits"} <= alph["train"]
    assert not (alph["train"] & alph["val"]) and not (alph["train"] & alph["test"]) and not (alph["val"] & alph["test"])
    assert info["instance_font"].shape == (C, 4)
    # the 4 instances of a class come from 4 different fonts (each class has >= min_fonts = 8)
    assert all(len(set(row)) == 4 for row in info["instance_font"].tolist())


def test_build_is_deterministic(small):
    data, _ = small
    again = build_glyph_dataset(GlyphConfig(**SMALL))
    assert np.array_equal(again.images, data.images) and again.names == data.names
    other = build_glyph_dataset(GlyphConfig(**SMALL, seed=1))
    assert other.names == data.names and not np.array_equal(other.images, data.images)


def test_no_blank_or_box_glyphs(small):
    data, info = small
    x = data.images.astype(np.float32) / 255
    assert x.reshape(len(data.names), 4, -1).max(-1).min() > 0.5  # every instance has ink
    ink = (x > 0.5).mean(axis=(2, 3, 4))
    assert ink.min() > 0.02 and ink.max() < 0.6  # and is not a filled box
    fonts = list_fonts()
    boxes = {f: render_notdef(fonts[f], 16) for f in set(info["instance_font"].ravel().tolist())}
    for c, cp in enumerate(info["code_points"]):
        for f in set(info["instance_font"][c].tolist()):
            clean = render_clean(cp, fonts[f], 16)
            assert clean is not None
            if boxes[f] is not None:
                assert np.sqrt(((clean - boxes[f]) ** 2).mean()) > 0.05, (data.names[c], fonts[f].name)


def test_homoglyphs_are_close_and_letters_far():
    font = next(p for p in list_fonts() if p.name == "DejaVuSans.ttf")
    imgs = [render_clean(ord(ch), font, 28) for ch in "AАЖ"]  # Latin A, Cyrillic A, Zhe
    D = glyph_distances({(i, 0): im for i, im in enumerate(imgs)}, 3, 1)
    assert D[0, 1] < 0.02  # look-alikes: far below the dedup threshold 0.08
    assert D[0, 2] > 0.08


def test_write_and_load(tmp_path, small):
    config = GlyphConfig(**SMALL)
    meta = write_glyph_dataset(config, tmp_path / "glyphs.npz")
    data, data_hash = load_class_images(tmp_path / "glyphs.npz")
    assert data_hash == meta["hash"]
    assert np.array_equal(data.images, small[0].images)
    side = json.loads((tmp_path / "glyphs.json").read_text())
    assert side["meta"]["config"]["image_size"] == 16 and "DejaVuSans.ttf" in side["meta"]["fonts"]
    assert side["splits"]["val"]["alphabets"] == ["Greek"]


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"val_scripts": ["Greek"], "test_scripts": ["Greek"]}, "data.val_scripts"),
        ({"image_size": 4}, "data.image_size"),
        ({"instances_per_class": 0}, "data.instances_per_class"),
        ({"scale": [1.2, 0.9]}, "data.scale"),
        ({"val_scripts": "Greek"}, "data.val_scripts"),
    ],
)
def test_config_errors(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        GlyphConfig(**kwargs)


def test_unknown_script_and_font_dir(tmp_path):
    with pytest.raises(ValueError, match=r"data\.test_scripts names scripts \['Klingon'\]"):
        build_glyph_dataset(GlyphConfig(**SMALL, test_scripts=["Klingon"]))
    with pytest.raises(FileNotFoundError, match="data.font_dir"):
        build_glyph_dataset(GlyphConfig(**SMALL, font_dir=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="no usable"):
        build_glyph_dataset(GlyphConfig(**SMALL, font_dir=str(tmp_path)))


def test_missing_glyph_box_is_detected():
    from l2o.tasks.few_shot.glyphs import _is_box, _Renderer, font_coverage

    font = next(p for p in list_fonts() if p.name == "DejaVuSans.ttf")
    cov = font_coverage(font)
    assert 0x4E00 not in cov  # a CJK ideograph: DejaVu Sans draws its missing-glyph box
    r = _Renderer([font], 64)
    box = r.notdef(0, cov)
    assert box is not None and _is_box(r.raw(0x4E00, 0), box)
    assert not _is_box(r.raw(ord("A"), 0), box)
