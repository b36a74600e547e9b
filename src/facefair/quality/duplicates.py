"""Exact and near-duplicate images, grouped into clusters.

Three signals, each a well-kept library's or a plain definition: identical file bytes (SHA-1),
perceptual hashes (imagehash's pHash: the low frequencies of a 32x32 grayscale DCT, so a
re-saved, resized or slightly re-coloured copy keeps its hash up to a few bits), and optionally
the cosine similarity of the image embeddings (catches crops and shifts pHash misses; by
default it also has to confirm each pHash match, see ``confirm_cosine``).  Any
pair that one signal links joins one cluster (connected components), so a cluster is "these
files show the same picture".
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd

PAIR_COLUMNS = ["path_a", "path_b", "signal", "hash_distance", "cosine"]


@dataclass(frozen=True)
class DuplicateConfig:
    hash_size: int = 8             # pHash side: 8 -> 64-bit hashes (imagehash's default)
    max_distance: int = 4          # pHash bits that may differ for a near-duplicate
    min_cosine: Optional[float] = None   # also link pairs whose embeddings are this similar (None: off)
    # A pHash match must also look alike to the embedding: on UTKFace, pHash pairs at 4 bits with
    # cosine 0.70-0.78 were different people (and chained unrelated faces into one cluster),
    # while copies scored above 0.9.  None: pHash alone decides.
    confirm_cosine: Optional[float] = 0.85
    chunk: int = 512               # rows compared at once (memory: chunk x n x 8 bytes)


def file_digests(paths: Sequence[str]) -> list[Optional[str]]:
    out = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                out.append(hashlib.sha1(handle.read()).hexdigest())
        except OSError:
            out.append(None)
    return out


def perceptual_hashes(images: np.ndarray, image_index: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """pHash bits, (n, hash_size**2) bool, from the decoded-image cache (no JPEG decoded twice)."""
    import imagehash  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    bits = np.zeros((len(image_index), hash_size * hash_size), dtype=bool)
    for row, cache_row in enumerate(image_index):
        bits[row] = imagehash.phash(Image.fromarray(np.asarray(images[cache_row])), hash_size=hash_size).hash.ravel()
    return bits


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(n, bits) bool -> (n, words) uint64, so a Hamming distance is one XOR and a popcount per word."""
    packed = np.packbits(bits, axis=1)
    packed = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _close_pairs(packed: np.ndarray, max_distance: int, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose packed bit strings differ in at most ``max_distance`` bits."""
    rows, cols, dists = [], [], []
    for start in range(0, len(packed), chunk):
        block = packed[start:start + chunk]
        distance = np.bitwise_count(block[:, None, :] ^ packed[None, :, :]).sum(axis=2)
        i, j = np.nonzero(distance <= max_distance)
        i = i + start
        keep = i < j
        rows.append(i[keep]), cols.append(j[keep]), dists.append(distance[i[keep] - start, j[keep]])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(dists)


def _similar_pairs(features: np.ndarray, min_cosine: float, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols, sims = [], [], []
    for start in range(0, len(features), chunk):
        similarity = features[start:start + chunk] @ features.T
        i, j = np.nonzero(similarity >= min_cosine)
        i = i + start
        keep = i < j
        rows.append(i[keep]), cols.append(j[keep]), sims.append(similarity[i[keep] - start, j[keep]])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)


def find_pairs(paths: Sequence[str], images: np.ndarray, image_index: np.ndarray, features: Optional[np.ndarray],
               config: DuplicateConfig = DuplicateConfig()) -> pd.DataFrame:
    """Every linked pair with the signal that linked it (``exact``, ``phash``, ``embedding``), the
    pHash distance and the embedding cosine (when features are given)."""
    paths = list(paths)
    found: dict[tuple[int, int], str] = {}
    by_digest: dict[str, int] = {}
    for i, digest in enumerate(file_digests(paths)):
        if digest is None:
            continue
        if digest in by_digest:
            found[(by_digest[digest], i)] = "exact"
        else:
            by_digest[digest] = i
    packed = pack_bits(perceptual_hashes(images, image_index, config.hash_size))
    i, j, _ = _close_pairs(packed, config.max_distance, config.chunk)
    if features is not None and config.confirm_cosine is not None and len(i):
        alike = np.einsum("ij,ij->i", features[i], features[j]) >= config.confirm_cosine
        i, j = i[alike], j[alike]
    for a, b in zip(i, j):
        found.setdefault((int(a), int(b)), "phash")
    if features is not None and config.min_cosine is not None:
        for i, j, _ in zip(*_similar_pairs(features, config.min_cosine, config.chunk)):
            found.setdefault((int(i), int(j)), "embedding")
    if not found:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    a = np.array([p[0] for p in found]), np.array([p[1] for p in found])
    hash_distance = np.bitwise_count(packed[a[0]] ^ packed[a[1]]).sum(axis=1)
    cosine = (np.einsum("ij,ij->i", features[a[0]], features[a[1]]) if features is not None
              else np.full(len(a[0]), np.nan))
    names = np.asarray(paths, dtype=object)
    return pd.DataFrame({"path_a": names[a[0]], "path_b": names[a[1]], "signal": list(found.values()),
                         "hash_distance": hash_distance, "cosine": np.round(cosine, 4)})


def cluster_pairs(pairs: pd.DataFrame, labels: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """One row per image that has a duplicate: ``cluster`` (numbered largest first), ``cluster_size``,
    and the image's labels (``labels``: a frame with ``path`` and label columns), so the rows of
    a cluster that disagree on a label show side by side."""
    from scipy.sparse import coo_matrix  # noqa: PLC0415
    from scipy.sparse.csgraph import connected_components  # noqa: PLC0415

    if pairs.empty:
        return pd.DataFrame(columns=["cluster", "cluster_size", "path"])
    members = pd.Index(pd.unique(pd.concat([pairs["path_a"], pairs["path_b"]])))
    a, b = members.get_indexer(pairs["path_a"]), members.get_indexer(pairs["path_b"])
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(members), len(members)))
    _, component = connected_components(graph, directed=False)
    frame = pd.DataFrame({"path": members, "component": component})
    sizes = frame["component"].map(frame["component"].value_counts())
    # Number clusters largest first, then by their first path, so ids are stable across runs.
    first = frame.groupby("component")["path"].transform("min")
    order = frame.assign(size=-sizes, first=first).sort_values(["size", "first", "path"])
    ids = {c: i for i, c in enumerate(pd.unique(order["component"]))}
    out = pd.DataFrame({"cluster": order["component"].map(ids).to_numpy(), "cluster_size": -order["size"].to_numpy(),
                        "path": order["path"].to_numpy()})
    if labels is not None:
        columns = [c for c in ("age", "gender", "race", "age_group") if c in labels]
        out = out.merge(labels[["path", *columns]].drop_duplicates("path"), on="path", how="left")
    return out.reset_index(drop=True)


def disagreements(clusters: pd.DataFrame) -> dict[str, int]:
    """Clusters whose members disagree on each label (age: by 10 years or more counted apart)."""
    out = {}
    for column in ("gender", "race", "age_group", "age"):
        if column not in clusters:
            continue
        spread = clusters.groupby("cluster")[column].nunique(dropna=True)
        out[column] = int((spread > 1).sum())
        if column == "age":
            ages = pd.to_numeric(clusters["age"], errors="coerce")
            gap = ages.groupby(clusters["cluster"]).agg(lambda s: s.max() - s.min())
            out["age_by_10_or_more"] = int((gap >= 10).sum())
    return out


def crossing_clusters(clusters: pd.DataFrame, splits: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """Clusters whose images sit in more than one split, with the splits each one spans; the
    split comes from ``clusters``' own column or from ``splits`` (path, split)."""
    with_split = clusters if splits is None else clusters.drop(columns="split", errors="ignore").merge(
        splits[["path", "split"]], on="path", how="left")
    spans = with_split.groupby("cluster")["split"].agg(lambda s: "+".join(sorted(set(s.dropna()))))
    crossing = spans[spans.str.contains(r"\+")]
    return pd.DataFrame({"cluster": crossing.index, "splits": crossing.to_numpy()})
