"""Decoded-image cache: every image decoded and resized once, stored as a uint8 memory-mapped
array so later epochs never touch a JPEG.

A cache is keyed by a fingerprint of the source files (path, size, mtime) and the resolution,
so editing, adding or removing a source file builds a new cache instead of serving stale pixels.
It is written under a temporary name and renamed when complete, so a killed build leaves
nothing that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from facefair.data.images import try_decode

# 2: EXIF orientation applied, 16-bit scaled, transparency over white (data/images.py).
CACHE_VERSION = 2


@dataclass
class ImageCache:
    directory: Path
    images: np.ndarray  # (N, size, size, 3) uint8, memory-mapped
    paths: list[str]
    bad: dict[str, str]  # path -> why it could not be decoded
    size: int

    def indices(self, paths: Iterable[str]) -> np.ndarray:
        """Row in ``images`` per path; -1 for images that failed to decode."""
        lookup = {p: i for i, p in enumerate(self.paths)}
        return np.array([-1 if p in self.bad else lookup[p] for p in paths], dtype=np.int64)


def fingerprint(paths: Sequence[str], size: int) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{size}".encode())
    for path in sorted(paths):
        try:
            stat = os.stat(path)
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()[:20]


def _decode_one(job: tuple[int, str, int]):
    index, path, size = job
    array, error = try_decode(path, size)
    return index, array, error


def build_cache(paths: Sequence[str], size: int, cache_root: str | Path, *, workers: Optional[int] = None,
                progress: bool = True) -> ImageCache:
    """Load the cache for these files at this size, building it first if it does not exist."""
    paths = sorted(set(paths))
    key = fingerprint(paths, size)
    directory = Path(cache_root) / f"{size}px-{key}"
    if (directory / "meta.json").exists():
        return load_cache(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(directory.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    images = np.lib.format.open_memmap(staging / "images.npy", mode="w+", dtype=np.uint8,
                                       shape=(len(paths), size, size, 3))
    bad: dict[str, str] = {}
    workers = workers or max(1, (os.cpu_count() or 1))
    jobs = [(i, p, size) for i, p in enumerate(paths)]
    started = time.perf_counter()
    bar = tqdm(total=len(jobs), desc=f"caching {size}px", unit="img", disable=not progress)
    if workers > 1:
        with get_context("fork").Pool(workers) as pool:
            results = pool.imap_unordered(_decode_one, jobs, chunksize=64)
            for index, array, error in results:
                _store(images, bad, paths, index, array, error)
                bar.update()
    else:
        for job in jobs:
            _store(images, bad, paths, *_decode_one(job))
            bar.update()
    bar.close()
    images.flush()
    del images
    (staging / "paths.txt").write_text("\n".join(paths) + "\n")
    meta = {"version": CACHE_VERSION, "size": size, "count": len(paths), "fingerprint": key, "bad": bad,
            "seconds": round(time.perf_counter() - started, 2)}
    (staging / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        staging.rename(directory)
    except OSError:  # another process finished the same cache first
        shutil.rmtree(staging, ignore_errors=True)
    return load_cache(directory)


def _store(images, bad, paths, index, array, error) -> None:
    if array is None:
        bad[paths[index]] = error
    else:
        images[index] = array


def load_cache(directory: str | Path) -> ImageCache:
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    paths = (directory / "paths.txt").read_text().splitlines()
    images = np.load(directory / "images.npy", mmap_mode="r")
    return ImageCache(directory, images, paths, meta["bad"], meta["size"])
