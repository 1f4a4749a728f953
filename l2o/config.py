"""Config sections to dataclasses, with errors that name the section and the key."""

from __future__ import annotations


def take_fields(cls, section: dict, where: str):
    """Build dataclass ``cls`` from the keys of ``section`` it declares; unknown keys raise.

    :param where: how the error names the section, e.g. ``config section 'stage1'``.
    """
    if not isinstance(section, dict):
        raise ValueError(f"{where} must be a mapping, got {type(section).__name__}")
    names = set(cls.__dataclass_fields__)
    unknown = sorted(set(section) - names)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(names)}")
    try:
        return cls(**section)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from err
