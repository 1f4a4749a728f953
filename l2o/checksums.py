"""SHA-256 checksums of data files: hashing, ``SHA256SUMS`` lists, and checking a folder against one.

A folder laid out by ``l2o fetch-data`` holds a ``SHA256SUMS`` file in the
format of coreutils' ``sha256sum`` (``<64 hex digits>  <file name>`` per
line), so ``sha256sum -c SHA256SUMS`` checks it too. :func:`check_folder`
compares the folder with its list: a listed file that is missing, a file whose
bytes differ, or an image file that is not listed is an error naming the file
and the command that fixes it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

#: name of the checksum list inside a fetched folder
SUMS_FILE = "SHA256SUMS"
#: what a user runs to download missing or altered files again
FIX_COMMAND = "l2o fetch-data"

_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def format_sums(sums: dict[str, str]) -> str:
    """``SHA256SUMS`` text: one ``<hex>  <name>`` line per file, sorted by name.

    >>> format_sums({"b.png": "1" * 64, "a.png": "0" * 64}).splitlines()[0]
    '0000000000000000000000000000000000000000000000000000000000000000  a.png'
    """
    for name in sums:
        if "/" in name or "\n" in name or not name:
            raise ValueError(f"checksum list: {name!r} is not a plain file name")
    return "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))


def parse_sums(text: str, where: str) -> dict[str, str]:
    """``{file name: hex digest}`` from ``SHA256SUMS`` text; a malformed line raises naming ``where``.

    >>> parse_sums("0" * 64 + "  a.png\\n", "x")
    {'a.png': '0000000000000000000000000000000000000000000000000000000000000000'}
    """
    sums = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None:
            raise ValueError(f"{where}, line {number}: not '<sha256>  <file>': {line[:80]!r}")
        sums[match.group(2)] = match.group(1)
    return sums


def read_sums(folder: Path) -> dict[str, str] | None:
    """The folder's ``SHA256SUMS`` as a dict, or None when it has none."""
    path = Path(folder) / SUMS_FILE
    if not path.is_file():
        return None
    return parse_sums(path.read_text(), str(path))


def folder_problems(folder: Path, sums: dict[str, str], suffixes: tuple[str, ...]) -> list[str]:
    """What differs between ``folder`` and its checksum list, one line per file (empty: all good).

    :param suffixes: file suffixes (lower case) that count as data files: an unlisted one is a problem.
    """
    folder = Path(folder)
    problems = []
    for name, digest in sorted(sums.items()):
        path = folder / name
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif sha256_file(path) != digest:
            problems.append(f"{path} is altered (its SHA-256 differs from {folder / SUMS_FILE})")
    extra = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in suffixes and p.name not in sums)
    problems += [f"{folder / name} is not in {folder / SUMS_FILE}" for name in extra]
    return problems


def check_folder(folder: Path, key: str, suffixes: tuple[str, ...]) -> int:
    """Check ``folder`` against its ``SHA256SUMS`` when it has one; return the number of files checked.

    :param key: the config key naming the folder, quoted in the error.
    :raises ValueError: naming every missing, altered or unlisted file and the command that fixes it.
    """
    sums = read_sums(folder)
    if sums is None:
        return 0
    problems = folder_problems(folder, sums, suffixes)
    if problems:
        shown = problems[:10] + ([f"... and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise ValueError(
            f"{key}: image folder {folder} does not match its checksum list:\n  " + "\n  ".join(shown)
            + f"\nRun `{FIX_COMMAND}` to download missing or altered files again (an extra file: remove it)."
        )
    return len(sums)
