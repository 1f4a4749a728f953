"""``l2o fetch-data``: download the standard denoising sets, check every file, lay them out.

The sets (Train400 for training, Set12 and BSD68 for testing) are the ones the
DnCNN authors keep in their public repository. Their list, with the SHA-256
and size of every file and the commit they were read at, ships inside the
package (:data:`MANIFEST`, ``l2o/standard_sets.json``); nothing is downloaded
at import or by any stage, only by this command.

Each file is fetched from ``<base_url>/<remote_dir>/<name>``, checked against
its size and SHA-256 *before* it is written, and written atomically to
``<dest>/<local_dir>/<name>`` (``data/denoising/BSD68/test001.png`` with the
defaults, where ``configs/denoising-standard.yaml`` looks). A file whose bytes
do not match is refused, naming it. Files already there and intact are kept;
missing or altered ones are downloaded again. Each set's folder gets a
``SHA256SUMS`` (:mod:`l2o.checksums`), written first, which the denoising data
stage checks before it reads an image.

``--base-url`` or the environment variable ``L2O_DATA_BASE_URL`` replaces the
manifest's base URL (a mirror; the tests' loopback server), ``--manifest`` the
list itself.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from l2o.checksums import SUMS_FILE, folder_problems, format_sums, sha256_bytes, sha256_file
from l2o.io import atomic_path, write_text_atomic

#: the list of the standard sets that ships inside the package
MANIFEST = Path(__file__).with_name("standard_sets.json")
#: environment variable that replaces the manifest's base URL
BASE_URL_ENV = "L2O_DATA_BASE_URL"
#: suffixes that count as data files when a folder is checked
DATA_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: a file larger than this is refused while it downloads (the standard images are < 1 MB)
MAX_BYTES = 64 << 20


class FetchError(RuntimeError):
    """A download that failed or did not match its checksum; the message names every file."""


def load_manifest(path: Path | None = None) -> dict:
    """The list of sets: ``{"base_url", "sets": {name: {"remote_dir", "local_dir", "files": {file: [sha256, bytes]}}}}``.

    Raises ``ValueError`` naming the file and the key on a malformed list.
    """
    path = Path(path) if path is not None else MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"checksum list {path} does not exist (--manifest)") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"checksum list {path} is not valid JSON: {err}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sets"), dict) or not manifest["sets"]:
        raise ValueError(f"checksum list {path}: needs a non-empty mapping 'sets'")
    if not isinstance(manifest.get("base_url"), str):
        raise ValueError(f"checksum list {path}: needs a string 'base_url'")
    for name, entry in manifest["sets"].items():
        for key in ("remote_dir", "local_dir", "files"):
            if key not in entry:
                raise ValueError(f"checksum list {path}: set {name!r} lacks {key!r}")
        for file, value in entry["files"].items():
            ok = (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and len(value[0]) == 64
                  and isinstance(value[1], int))
            if not ok or "/" in file:
                raise ValueError(f"checksum list {path}: set {name!r}, file {file!r}: expected [sha256, bytes]")
    return manifest


def build_manifest(root: Path, sets: dict[str, tuple[str, str]], base_url: str, **info) -> dict:
    """A checksum list from a local copy of the remote tree (how ``standard_sets.json`` was made).

    :param root: the folder that holds each set's ``remote_dir``.
    :param sets: ``{set name: (remote_dir, local_dir)}``; every data file directly inside
        ``root / remote_dir`` is listed.
    :param info: extra top-level keys (``source``, ``commit``, ``licence``, ...).
    """
    out = {**info, "base_url": base_url, "sets": {}}
    for name, (remote_dir, local_dir) in sets.items():
        folder = Path(root) / remote_dir
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
        if not files:
            raise ValueError(f"set {name}: no data files in {folder}")
        out["sets"][name] = {"remote_dir": remote_dir, "local_dir": local_dir,
                             "files": {p.name: [sha256_file(p), p.stat().st_size] for p in files}}
    return out


def select_sets(manifest: dict, names: list[str] | None) -> list[str]:
    """The sets to fetch (all when ``names`` is empty); an unknown name raises listing the known ones."""
    if not names:
        return list(manifest["sets"])
    unknown = [n for n in names if n not in manifest["sets"]]
    if unknown:
        raise ValueError(f"unknown set(s) {unknown} (--sets); the checksum list has {sorted(manifest['sets'])}")
    return list(dict.fromkeys(names))


def _download(url: str, timeout: float, tries: int = 3) -> bytes:
    """The bytes at ``url``; retries connection errors and 5xx answers with a growing wait."""
    request = urllib.request.Request(url, headers={"User-Agent": "l2o-fetch-data"})
    for attempt in range(1, tries + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) URLs only
                data = response.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise FetchError(f"{url}: larger than {MAX_BYTES} bytes; refused")
            return data
        except urllib.error.HTTPError as err:
            if err.code < 500 or attempt == tries:
                raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            if attempt == tries:
                reason = getattr(err, "reason", err)
                raise FetchError(f"{url}: cannot download ({reason}); are you online, and is the base URL right "
                                 f"(--base-url or ${BASE_URL_ENV})?") from None
        time.sleep(0.5 * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _fetch_one(url: str, path: Path, digest: str, size: int, timeout: float) -> str:
    """Download one file, check it, write it atomically; returns what happened."""
    data = _download(url, timeout)
    got = sha256_bytes(data)
    if len(data) != size or got != digest:
        raise FetchError(
            f"{url}: refused, {path} not written: got {len(data)} bytes with SHA-256 {got[:16]}..., the checksum "
            f"list says {size} bytes with {digest[:16]}... (the file at the source changed, or the download was "
            f"altered on the way). Run `l2o fetch-data` again; if it persists, this file no longer matches "
            f"the sets this l2o release was checked against.")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return "downloaded"


def fetch_sets(dest: Path = Path("data"), sets: list[str] | None = None, base_url: str | None = None,
               manifest: Path | None = None, workers: int = 8, timeout: float = 60.0,
               say: Callable[[str], None] = print) -> dict[str, dict[str, int]]:
    """Download the sets that are missing or altered under ``dest``; check and lay out every file.

    :param base_url: replaces the list's base URL (default ``$L2O_DATA_BASE_URL``, else the list's).
    :return: ``{set: {"kept": n, "downloaded": n}}``.
    :raises FetchError: after trying every file, naming each one that failed.
    """
    listing = load_manifest(manifest)
    base = (base_url or os.environ.get(BASE_URL_ENV) or listing["base_url"]).rstrip("/")
    dest = Path(dest)
    summary, failures = {}, []
    for name in select_sets(listing, sets):
        entry = listing["sets"][name]
        folder = dest / entry["local_dir"]
        # the list first: a run cut short leaves a folder the data stage refuses, naming what is missing
        write_text_atomic(format_sums({f: v[0] for f, v in entry["files"].items()}), folder / SUMS_FILE)
        jobs, counts = [], {"kept": 0, "downloaded": 0}
        for file, (digest, size) in sorted(entry["files"].items()):
            path = folder / file
            if path.is_file() and path.stat().st_size == size and sha256_file(path) == digest:
                counts["kept"] += 1
                continue
            if path.exists():
                say(f"{path}: altered or incomplete, downloading it again")
            jobs.append((f"{base}/{entry['remote_dir']}/{file}", path, digest, size))
        say(f"{name}: {len(entry['files'])} files, {counts['kept']} already there, {len(jobs)} to download "
            f"into {folder}")
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [(job, pool.submit(_fetch_one, *job, timeout)) for job in jobs]
            for (url, path, _, _), future in futures:
                try:
                    counts[future.result()] += 1
                except FetchError as err:
                    failures.append(str(err))
        summary[name] = counts
    if failures:
        raise FetchError(f"{len(failures)} file(s) failed:\n  " + "\n  ".join(failures[:20])
                         + (f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""))
    return summary


def check_sets(dest: Path = Path("data"), sets: list[str] | None = None, manifest: Path | None = None) -> list[str]:
    """Offline check of the fetched sets against the list: one line per missing, altered or extra file."""
    listing = load_manifest(manifest)
    problems = []
    for name in select_sets(listing, sets):
        entry = listing["sets"][name]
        folder = Path(dest) / entry["local_dir"]
        if not folder.is_dir():
            problems.append(f"{folder} does not exist (set {name})")
            continue
        problems += folder_problems(folder, {f: v[0] for f, v in entry["files"].items()}, DATA_SUFFIXES)
    return problems
