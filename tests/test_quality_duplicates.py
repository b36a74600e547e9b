"""Duplicate clusters from pixels (re-saved, resized and exact copies found, distinct images not),
clusters crossing a split, label disagreements, and per-group flag rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from facefair.quality.duplicates import DuplicateConfig, cluster_pairs, crossing_clusters, disagreements, find_pairs
from facefair.quality.rates import group_rates


def _smooth(rng, size=64):
    """A random smooth image (distinct ones differ in their low frequencies, like faces do)."""
    small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def test_copies_cluster_and_distinct_images_do_not(tmp_path):
    rng = np.random.default_rng(0)
    images = [_smooth(rng) for _ in range(30)]
    paths = []
    for i, pixels in enumerate(images):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    # image 0: re-saved as a lower-quality JPEG after resizing; image 1: copied byte for byte
    resized = np.asarray(Image.fromarray(images[0]).resize((48, 48)).resize((64, 64)))
    images.append(resized)
    paths.append(tmp_path / "img0_resized.jpg")
    Image.fromarray(resized).save(paths[-1], quality=70)
    images.append(images[1])
    paths.append(tmp_path / "img1_copy.png")
    paths[-1].write_bytes(paths[1].read_bytes())
    stack = np.stack(images)
    pairs = find_pairs([str(p) for p in paths], stack, np.arange(len(stack)), None, DuplicateConfig())
    linked = {frozenset((a.rsplit("/", 1)[-1], b.rsplit("/", 1)[-1])) for a, b in zip(pairs.path_a, pairs.path_b)}
    assert frozenset(("img0.png", "img0_resized.jpg")) in linked
    assert frozenset(("img1.png", "img1_copy.png")) in linked
    assert len(linked) == 2, linked  # none of the 28 distinct images is linked
    assert set(pairs["signal"]) == {"phash", "exact"}
    # A pHash match the embeddings disagree with (cosine below confirm_cosine) is not a link;
    # identical bytes need no confirmation.
    features = np.eye(len(stack), dtype=np.float32)
    features[-1] = features[1]
    confirmed = find_pairs([str(p) for p in paths], stack, np.arange(len(stack)), features, DuplicateConfig())
    assert confirmed["signal"].tolist() == ["exact"]
    features[-2] = features[0]
    confirmed = find_pairs([str(p) for p in paths], stack, np.arange(len(stack)), features, DuplicateConfig())
    assert sorted(confirmed["signal"]) == ["exact", "phash"] and (confirmed["cosine"] == 1).all()


def test_clusters_crossing_and_disagreements():
    pairs = pd.DataFrame({"path_a": ["a", "b", "x"], "path_b": ["b", "c", "y"], "signal": "phash",
                          "hash_distance": 0, "cosine": np.nan})
    labels = pd.DataFrame({"path": list("abcxy"), "gender": ["Male", "Male", "Female", "Male", "Male"],
                           "race": ["White"] * 5, "age": [30, 31, 45, 20, 20]})
    clusters = cluster_pairs(pairs, labels)
    assert clusters.groupby("cluster")["path"].apply(set).tolist() == [{"a", "b", "c"}, {"x", "y"}]
    assert clusters["cluster_size"].tolist() == [3, 3, 3, 2, 2]
    assert disagreements(clusters) == {"gender": 1, "race": 0, "age": 1, "age_by_10_or_more": 1}
    splits = pd.DataFrame({"path": list("abcxy"), "split": ["train", "train", "test", "val", "val"]})
    crossing = crossing_clusters(clusters, splits)
    assert crossing.to_dict(orient="records") == [{"cluster": 0, "splits": "test+train"}]
    # the split may also already be a column of the clusters
    assert crossing_clusters(clusters.merge(splits, on="path")).equals(crossing)


def test_group_rates_have_intervals_around_the_share():
    rng = np.random.default_rng(1)
    n = 400
    labels = pd.DataFrame({"path": [f"p{i}" for i in range(n)], "race": rng.choice(["A", "B"], n),
                           "gender": rng.choice(["Male", "Female"], n), "age_group": "20-29"})
    flagged = np.where(labels["race"] == "A", rng.random(n) < 0.3, rng.random(n) < 0.05)
    scored = pd.DataFrame({"path": labels["path"], "task": "race", "is_label_issue": flagged})
    rates = group_rates(scored, labels, n_boot=500).set_index(["task", "attribute", "group"])
    a, b = rates.loc[("race", "race", "A")], rates.loc[("race", "race", "B")]
    assert a["flagged"] == flagged[labels["race"] == "A"].sum() and a["ci_low"] < a["rate"] < a["ci_high"]
    assert a["ci_low"] > b["ci_high"]  # a 6x difference on 200 rows each is resolved
    assert ("race", "race x gender", "A|Female") in rates.index and ("any", "race", "A") in rates.index
