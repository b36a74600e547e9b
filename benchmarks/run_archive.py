"""Keep what a benchmark's analysis reads from a training run, without the weights, so that seeds
trained in different sessions (run folders do not survive a session) can still be compared paired.

``archive_run(RUN, DEST)`` copies every file of RUN except the weights, checkpoints, TensorBoard
logs and derived subsets into DEST, CSVs gzipped (pandas and ``facefair audit`` read ``.csv.gz``
unchanged; the per-row predictions are what paired comparisons need); ``restore_run(DEST, RUN)``
puts them back as plain files, so a later analysis finds RUN as it was left.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

#: not kept: weights and resumable state (tens of MB a run), logs, and what an analysis derives
#: again from the kept predictions (row subsets, post-processed predictions, the HTML pages with
#: their embedded plots: ``facefair robustness --from-predictions`` redraws them)
SKIP_SUFFIXES = (".pt", ".safetensors", ".onnx", ".html")
SKIP_DIRS = ("tb", "subsets")
SKIP_DIR_PREFIXES = ("logit-adjusted", "predictions-adjusted", "thresholded")


def _skipped_dir(name: str) -> bool:
    return name in SKIP_DIRS or name.startswith(SKIP_DIR_PREFIXES)


def kept_files(run: Path) -> list[Path]:
    return sorted(p for p in run.rglob("*") if p.is_file() and not p.name.endswith(SKIP_SUFFIXES)
                  and not any(_skipped_dir(d) for d in p.relative_to(run).parts[:-1]))


def archive_run(run: str | Path, dest: str | Path) -> int:
    """Copy RUN's kept files to DEST (CSVs gzipped, deterministic: no timestamp in the gzip
    header, so an unchanged file re-archives byte-identical); returns the bytes written."""
    run, dest = Path(run), Path(dest)
    written = 0
    for path in kept_files(run):
        target = dest / path.relative_to(run)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".csv":
            target = target.with_name(target.name + ".gz")
            with open(path, "rb") as src, open(target, "wb") as raw, \
                    gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
                shutil.copyfileobj(src, out)
        else:
            shutil.copyfile(path, target)
        written += target.stat().st_size
    return written


def restore_run(src: str | Path, run: str | Path) -> int:
    """Put an archived run back under RUN (existing files are left alone); returns files restored."""
    src, run = Path(src), Path(run)
    restored = 0
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        target = run / path.relative_to(src)
        if path.name.endswith(".csv.gz"):
            target = target.with_name(target.name[:-3])
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(".csv.gz"):
            with gzip.open(path, "rb") as zipped, open(target, "wb") as out:
                shutil.copyfileobj(zipped, out)
        else:
            shutil.copyfile(path, target)
        restored += 1
    return restored
