"""Which characters become the glyph set's classes (:mod:`l2o.tasks.few_shot.glyphs`): a base letter
or digit (no precomposed accents, compatibility forms or small capitals) of a script read from its
Unicode name (``LATIN SMALL LETTER A`` -> Latin; ASCII digits are ``Digits``), that script being
its alphabet; and, among those, look-alikes across scripts removed (RMS pixel distance of their
clean renderings).
"""

from __future__ import annotations

import unicodedata

import numpy as np

LETTER_CATEGORIES = ("Lu", "Ll", "Lt", "Lo", "Nd")

# Unicode name prefix -> script (alphabet). Letters whose script is not listed are left out.
SCRIPT_PREFIXES = (
    ("LATIN ", "Latin"),
    ("GREEK ", "Greek"),
    ("CYRILLIC ", "Cyrillic"),
    ("ARMENIAN ", "Armenian"),
    ("GEORGIAN ", "Georgian"),
    ("LAO ", "Lao"),
    ("THAI ", "Thai"),
    ("HEBREW ", "Hebrew"),
    ("ARABIC", "Arabic"),
    ("EXTENDED ARABIC", "Arabic"),
    ("CANADIAN SYLLABICS ", "Canadian_Syllabics"),
    ("TIFINAGH ", "Tifinagh"),
    ("NKO ", "NKo"),
    ("LISU ", "Lisu"),
    ("OGHAM ", "Ogham"),
    ("COPTIC ", "Coptic"),
    ("OLD ITALIC ", "Old_Italic"),
    ("RUNIC ", "Runic"),
    ("CHEROKEE ", "Cherokee"),
    ("ETHIOPIC ", "Ethiopic"),
    ("DEVANAGARI ", "Devanagari"),
    ("BENGALI ", "Bengali"),
)


def script_of(cp: int) -> str | None:
    """The script (alphabet) of code point ``cp`` from its Unicode name; None if unknown.

    >>> script_of(ord("A")), script_of(ord("7")), script_of(ord("Ж")), script_of(ord("!"))
    ('Latin', 'Digits', 'Cyrillic', None)
    """
    ch = chr(cp)
    if "0" <= ch <= "9":
        return "Digits"
    name = unicodedata.name(ch, "")
    for prefix, script in SCRIPT_PREFIXES:
        if name.startswith(prefix):
            return script
    return None


def is_candidate(cp: int) -> bool:
    """A base letter or digit of a known script (see the module docstring).

    >>> is_candidate(ord("a")), is_candidate(ord("é")), is_candidate(ord("ʰ")), is_candidate(ord("ᴀ"))
    (True, False, False, False)
    """
    ch = chr(cp)
    if unicodedata.category(ch) not in LETTER_CATEGORIES:
        return False
    if unicodedata.normalize("NFD", ch) != ch or unicodedata.normalize("NFKC", ch) != ch:
        return False
    if "SMALL CAPITAL" in unicodedata.name(ch, ""):
        return False
    return script_of(cp) is not None


# -- look-alikes -------------------------------------------------------------------------


def glyph_distances(clean: dict[tuple[int, int], np.ndarray], n_classes: int, n_fonts: int) -> np.ndarray:
    """RMS pixel difference of every pair of classes, averaged over their shared fonts.

    :param dict clean: (class, font) -> (H, W) clean rendering.
    :return: (n_classes, n_classes) float64; inf where two classes share no font
        and on the diagonal.
    """
    if not clean:
        return np.full((n_classes, n_classes), np.inf)
    P = next(iter(clean.values())).size
    total = np.zeros((n_classes, n_classes))
    shared = np.zeros((n_classes, n_classes))
    for f in range(n_fonts):
        X = np.zeros((n_classes, P), dtype=np.float64)
        have = np.zeros(n_classes, dtype=bool)
        for (c, ff), img in clean.items():
            if ff == f:
                X[c] = img.ravel()
                have[c] = True
        if not have.any():
            continue
        sq = (X * X).sum(1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0) / P
        both = have[:, None] & have[None, :]
        total += np.where(both, np.sqrt(d2), 0.0)
        shared += both
    D = np.where(shared > 0, total / np.maximum(shared, 1), np.inf)
    np.fill_diagonal(D, np.inf)
    return D


def greedy_dedup(D: np.ndarray, threshold: float) -> tuple[list[int], list[tuple[int, int]]]:
    """Keep classes in index order unless closer than ``threshold`` to a kept one.

    :return: kept indices, and (dropped, the kept class it duplicates) pairs.

    >>> D = np.array([[np.inf, 0.01, 0.5], [0.01, np.inf, 0.5], [0.5, 0.5, np.inf]])
    >>> greedy_dedup(D, 0.06)
    ([0, 2], [(1, 0)])
    """
    kept: list[int] = []
    dropped: list[tuple[int, int]] = []
    for i in range(D.shape[0]):
        if kept:
            j = kept[int(np.argmin(D[i, kept]))]
            if D[i, j] < threshold:
                dropped.append((i, j))
                continue
        kept.append(i)
    return kept, dropped
