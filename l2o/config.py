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


def with_prior_sweep(name: str, section: dict) -> dict:
    """A task section with each lambda of its ``prior_sweep`` added as the ablation variant
    ``lambda_<value>`` (``stage2.prior_lambda`` overridden: a Stage II re-trained on the main
    Stage I model). The section is not modified; a name clash with a configured variant raises.

    >>> sorted(with_prior_sweep("t", {"prior_sweep": [0.5, 2], "ablations": {}})["ablations"])
    ['lambda_0.5', 'lambda_2']
    """
    ablations = dict(section.get("ablations") or {})
    for lam in section.get("prior_sweep") or []:
        variant = f"lambda_{lam:g}"
        if variant in ablations:
            raise ValueError(f"{name}.prior_sweep: lambda {lam} would be the variant {variant!r}, which "
                             f"{name}.ablations already defines; drop one of them")
        ablations[variant] = {"stage2": {"prior_lambda": float(lam)}}
    return {**section, "ablations": ablations}
