"""Checks of the denoising config that need the file system but no torch, run when the workflow
parses the config (before any job): every image folder the config names exists, and holds the
number of images ``data.expect_images`` asks for. The data stage checks the rest (checksums,
readable images, modes, sizes) before it writes anything."""

from __future__ import annotations

from pathlib import Path

from l2o.tasks.denoising.images import IMAGE_SUFFIXES

SPLITS = ("train", "val", "test")
#: folders laid out by ``l2o fetch-data`` end with one of these (``<dest>/denoising/<set>``)
STANDARD_SETS = ("Train400", "Set12", "BSD68")


def fix_hint(folder: str) -> str:
    """How to get a missing folder: ``l2o fetch-data`` when it is a standard set's place.

    >>> fix_hint("data/denoising/BSD68")
    'run `l2o fetch-data --dest data` to download the standard sets there, or point the key at your copy'
    >>> fix_hint("/my/photos")
    'point the key at an existing folder of images'
    """
    path = Path(folder)
    if path.name in STANDARD_SETS and path.parent.name == "denoising":
        dest = path.parent.parent
        return f"run `l2o fetch-data --dest {dest}` to download the standard sets there, or point the key at your copy"
    return "point the key at an existing folder of images"


def check_folders(task: str, data: dict, cwd: Path | None = None) -> None:
    """Raise ``ValueError`` naming ``<task>.data.<split>_dir`` and the folder when a folder is missing,
    empty, or holds another number of images than ``data.expect_images`` says.

    :param task: the config section's name (``denoising``), quoted in the message.
    :param data: the task's ``data`` section.
    :param cwd: where relative folders are resolved (default: the working directory).
    """
    if (data or {}).get("source") != "folders":
        return
    cwd = Path.cwd() if cwd is None else Path(cwd)
    expect = data.get("expect_images") or {}
    for split in SPLITS:
        key, folder = f"{task}.data.{split}_dir", data.get(f"{split}_dir")
        if not folder:
            raise ValueError(f"{key} is not set, but {task}.data.source is 'folders'")
        path = Path(folder) if Path(folder).is_absolute() else cwd / folder
        if not path.is_dir():
            raise ValueError(f"{key}: image folder {folder} does not exist (looked for {path}): {fix_hint(folder)}")
        n = sum(1 for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if n == 0:
            raise ValueError(f"{key}: image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                             f"{fix_hint(folder)}")
        if split in expect and n != expect[split]:
            raise ValueError(f"{key}: image folder {folder} holds {n} images, {task}.data.expect_images.{split} "
                             f"says {expect[split]}: {fix_hint(folder)}")
